"""Vanishing and exploding through time: the rule on synthetic evidence, the checkup on real
recurrent models (no false alarm on healthy ones), treat, the picture and the benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradmedic
import sick_models as sm
from gradmedic.diagnosis import Report, Severity, checkup
from gradmedic.diagnosis.evidence import Evidence, TimeEvidence
from gradmedic.diagnosis.rules import health_score, rule_through_time
from gradmedic.errors import ConfigError
from gradmedic.history import History
from gradmedic.tasks import adding_problem, copy_memory, copy_memory_loss

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "recurrent.py"


def time_layer(profile: np.ndarray, type_: str = "RNN", length: int | None = None,
               **gates: float) -> TimeEvidence:  # fmt: skip
    return TimeEvidence("rnn", type_, np.asarray(profile, dtype=float), length or len(profile), **gates)


def through_time(layer: TimeEvidence) -> list:
    return rule_through_time(Evidence([], time=[layer]))


def alarms(report: Report) -> list[str]:
    return [f.kind for f in report.findings if f.severity >= Severity.WARNING]


# -- the rule on synthetic evidence -------------------------------------------------------------


def test_vanishing_through_time_evidence_is_in_steps():
    (finding,) = through_time(time_layer(0.85 ** np.arange(150)))
    assert (finding.kind, finding.severity) == ("vanishing_through_time", Severity.WARNING)
    assert finding.layers == ["rnn"]
    assert finding.evidence.startswith(
        "the signal falls x0.85 per step; after 43 steps it is below 1e-3 of its value at the last step; "
        "the sequence has 150 steps; at the first step it is 3.0e-11 of it"
    )
    assert finding.numbers["horizon"] == 43 and finding.numbers["length"] == 150
    assert finding.numbers["decay"] == pytest.approx(0.85)
    assert "vanilla RNN" in finding.cause
    families = [r.family for r in finding.remedies]
    assert families == ["recurrent", "init", "clipping", "normalization", "optimizer"]
    assert "LSTM or GRU" in finding.remedies[0].name and "find_lr" in finding.remedies[-1].code
    assert "orthogonal" in finding.remedies[1].code.lower() and "LayerNorm" in finding.remedies[3].code


@pytest.mark.parametrize(
    ("profile", "severity"),
    [
        (0.5 ** np.arange(100), Severity.CRITICAL),  # horizon 10 < a quarter of 100
        (np.r_[0.7 ** np.arange(30), np.zeros(70)], Severity.CRITICAL),  # underflowed to 0
        (0.9 ** np.arange(200), Severity.WARNING),  # horizon 66 >= 50, first step 8e-10
    ],
)
def test_vanishing_severity(profile, severity):
    (finding,) = through_time(time_layer(profile))
    assert finding.kind == "vanishing_through_time" and finding.severity == severity


@pytest.mark.parametrize(("type_", "gate"), [("LSTM", "forget"), ("GRUCell", "update")])
def test_gated_layers_get_the_gate_bias_first_and_a_cause_from_their_gates(type_, gate):
    layer = time_layer(0.7 ** np.arange(60), type_, gate_mean=0.5, gate_saturated=0.02)
    (finding,) = through_time(layer)
    assert finding.cause.startswith(f"the {gate} gates average 0.50 (2% saturated)")
    first = finding.remedies[0]
    assert first.name.startswith("Forget-gate bias") and "max_len=60" in first.code
    assert finding.numbers["gate_mean"] == 0.5


def test_a_signal_that_reaches_back_far_enough_is_an_info_with_the_horizon():
    for profile, horizon in ((0.97 ** np.arange(100), 100), (0.8 ** np.arange(50), 31)):
        (finding,) = through_time(time_layer(profile, "LSTM"))
        assert (finding.kind, finding.severity) == ("memory_horizon", Severity.INFO)
        assert finding.numbers["horizon"] == horizon and finding.remedies == []
        assert f"for {horizon} steps back; the sequence has {len(profile)} steps" in finding.evidence


def test_exploding_through_time():
    (finding,) = through_time(time_layer(1.2 ** np.arange(50)))
    assert (finding.kind, finding.severity) == ("exploding_through_time", Severity.WARNING)
    assert finding.evidence.startswith("the signal grows x1.20 per step back and reaches 7.6e+03 times")
    assert finding.remedies[0].family == "clipping" and finding.remedies[-1].family == "recurrent"
    (critical,) = through_time(time_layer(1.5 ** np.arange(50), "GRU"))
    assert critical.severity == Severity.CRITICAL and critical.remedies[-1].family != "recurrent"


def test_short_or_silent_profiles_say_nothing_and_truncated_ones_say_so():
    assert through_time(time_layer([1.0])) == [] and through_time(time_layer([0.0, 0.0])) == []
    (finding,) = through_time(time_layer(0.5 ** np.arange(2048), length=5000))
    assert "the sequence has 5000 steps (the last 2048 recorded)" in finding.evidence


def test_health_score_accounts_for_the_signal_through_time():
    def score(profile: np.ndarray, type_: str = "RNN") -> float:
        return health_score(Evidence([], time=[time_layer(profile, type_)]))

    assert score(0.97 ** np.arange(100)) == 1.0  # falls to 5e-2: within 2 decades
    assert 0.0 < score(0.9 ** np.arange(60)) < 1.0  # 2e-3: between a vanilla RNN's 1e-2 and 1e-5
    assert score(0.8 ** np.arange(70)) == 0.0 and score(1.5 ** np.arange(50)) == 0.0  # 1.7e-7; 1e8
    # a gated cell's scale is twice as wide: it learns to open its gates
    assert score(0.8 ** np.arange(70), "LSTM") == 1.0 and score(0.8 ** np.arange(70), "GRU") == 1.0
    assert 0.0 < score(0.8 ** np.arange(110), "LSTM") < 1.0  # 2.4e-11: between 1e-10 and 1e-20
    assert score(0.5 ** np.arange(100), "LSTM") == 0.0 and score(1.5 ** np.arange(50), "GRU") == 0.0
    assert health_score(Evidence([])) == 1.0


# -- real models: the checkup -------------------------------------------------------------------


class Adding(nn.Module):
    """An RNN/LSTM/GRU and a linear head on the last output, for the adding problem."""

    def __init__(self, kind: str = "RNN", hidden: int = 32, forget_bias: float | None = None) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        if forget_bias is not None:
            gradmedic.set_forget_gate_bias(self, forget_bias)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def biased(kind: str, hidden: int) -> sm.Patient:
    """A gated layer with forget (update) gate bias 1 on the adding problem over 50 steps."""
    return sm.Patient(Adding(kind, hidden, 1.0), *adding_problem(32, 50))


def test_vanilla_tanh_rnn_over_100_steps_is_diagnosed():
    x, y = adding_problem(32, 100, seed=1)
    report = checkup(Adding("RNN"), x, y)
    finding = report.get("vanishing_through_time")
    assert finding is not None, report.render()
    assert finding.severity == Severity.CRITICAL and finding.layers == ["rnn"]
    assert finding.numbers["length"] == 100 and finding.numbers["horizon"] < 25
    assert finding.remedies[0].family == "recurrent" and report.score < 0.1
    assert "vanishing_through_time" in report.render()


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("lstm over 10 steps", lambda: sm.lstm(10)),
        ("lstm, forget bias 1, 50 steps", lambda: biased("LSTM", 32)),
        ("lstm, forget bias 1, 50 steps, 64 units", lambda: biased("LSTM", 64)),
        ("gru, update bias 1, 50 steps", lambda: biased("GRU", 32)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_no_false_alarm_on_healthy_recurrent_models(name, patient, seed):
    torch.manual_seed(seed)
    case = patient()
    report = checkup(case.model, case.inputs, case.targets)
    assert alarms(report) == [], report.render()
    assert report.get("memory_horizon") is not None and report.score > 0.9


def test_a_cell_loop_is_diagnosed_and_treated_with_a_gru_cell():
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.RNNCell(2, 32)
            self.head = nn.Linear(32, 1)

        def forward(self, x: Tensor) -> Tensor:
            h = None
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return self.head(h)

    x, y = adding_problem(32, 80, seed=2)
    treatment = gradmedic.treat(Loop(), x, y, suggest_lr=False)
    finding = treatment.before.get("vanishing_through_time")
    assert finding is not None and finding.layers == ["cell"] and finding.numbers["length"] == 80
    assert isinstance(treatment.model.cell, nn.GRUCell) and treatment.after.healthy, treatment.summary()


def test_exploding_through_time_in_a_relu_rnn():
    rnn = Adding("RNN", 16)
    rnn.rnn = nn.RNN(2, 16, nonlinearity="relu", batch_first=True)
    with torch.no_grad():
        rnn.rnn.weight_hh_l0.copy_(1.3 * torch.eye(16))
        rnn.rnn.bias_hh_l0.fill_(0.1)
    x, y = adding_problem(16, 40, seed=0)
    finding = checkup(rnn, x, y).get("exploding_through_time")
    assert finding is not None and finding.numbers["decay"] == pytest.approx(1.3, rel=0.05)


def test_treat_swaps_a_vanilla_rnn_for_a_gated_one_whose_horizon_covers_the_sequence():
    torch.manual_seed(0)
    x, y = adding_problem(64, 100, seed=3)
    treatment = gradmedic.treat(Adding("RNN", 128), x, y, suggest_lr=False)
    actions = [c.action for c in treatment.applied]
    assert actions[0] == "RNN -> LSTM (same inputs and outputs)" and "forget-gate bias 1.0" in actions
    after = treatment.after.get("memory_horizon")
    assert after is not None and treatment.after.healthy, treatment.summary()
    assert after.numbers["horizon"] >= after.numbers["length"] == 100


def test_a_loss_at_every_step_hides_the_memory_and_the_recall_loss_shows_it():
    """Copy memory: each step's own loss keeps the signal up; the recall steps' loss does not."""

    class EveryStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(10, 32, batch_first=True)
            self.head = nn.Linear(32, 10)

        def forward(self, x: Tensor) -> Tensor:
            return self.head(self.rnn(x)[0])

    model = EveryStep()
    x, y = copy_memory(16, 60)
    every = checkup(model, x, loss_fn=lambda out: copy_memory_loss(out, y))
    recall = checkup(model, x, loss_fn=lambda out: copy_memory_loss(out[:, -10:], y[:, -10:]))
    assert alarms(every) == [] and every.get("memory_horizon").numbers["horizon"] == 80
    assert recall.get("vanishing_through_time") is not None, recall.render()


def test_a_monitored_run_is_diagnosed_from_its_history_alone(tmp_path):
    model = Adding("RNN", 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with gradmedic.watch(model, optimizer, activations_every=1, through_time_every=1) as monitor:
        for step in range(3):
            x, y = adding_problem(16, 60, seed=step)
            optimizer.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            monitor.step(loss)
            optimizer.step()
    loaded = History.load(monitor.history.save(tmp_path / "run.jsonl"))
    for report in (monitor.diagnose(), gradmedic.diagnose(loaded)):
        assert report.source == "monitor" and "vanishing_through_time" in report.kinds, report.render()


# -- the picture --------------------------------------------------------------------------------

matplotlib = pytest.importorskip("matplotlib")


def data_lines(ax) -> list:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_picture_of_profiles_marks_each_horizon():
    from gradmedic import plots

    profiles = {"RNN": 0.6 ** np.arange(100), "LSTM": 0.97 ** np.arange(100)}
    ax = plots.through_time(profiles).axes[0]
    labels = [line.get_label() for line in data_lines(ax)]
    assert labels == ["RNN: horizon 14 of 100 steps", "LSTM: horizon 100 of 100 steps",
                      "memory horizon threshold: 0.001 x the last step"]  # fmt: skip
    assert ax.get_yscale() == "log"
    rnn = data_lines(ax)[0]
    assert rnn.get_ydata()[0] == 1.0 and len(rnn.get_xdata()) == 100  # relative to the last step
    vertical = [ln for ln in ax.get_lines() if ln.get_label().startswith("_") and ln.get_linestyle() == ":"]
    assert [line.get_xdata()[0] for line in vertical] == [14]  # the LSTM never falls below
    assert data_lines(ax)[-1].get_ydata()[0] == pytest.approx(1e-3)


def test_picture_of_histories_before_and_after_treatment(tmp_path):
    from gradmedic import plots

    histories = []
    for kind in ("RNN", "LSTM"):
        model = Adding(kind, 16)
        with gradmedic.watch(model, through_time_every=1) as monitor:
            x, y = adding_problem(8, 30)
            (model(x) - y).pow(2).mean().backward()
            monitor.step()
        histories.append(monitor.history)
    fig = plots.through_time(histories, ["sick", "treated"], relative=False, path=tmp_path / "time.png")
    labels = [line.get_label() for line in data_lines(fig.axes[0])]
    assert labels[0].startswith("sick: rnn (RNN): horizon") and labels[1].startswith("treated: rnn (LSTM)")
    assert len(labels) == 2 and "||dLoss/dh_t||" in fig.axes[0].get_ylabel()  # no threshold when absolute
    assert (tmp_path / "time.png").stat().st_size > 0
    single = plots.through_time(histories[0], path=tmp_path / "time.svg")
    assert data_lines(single.axes[0])[0].get_label().startswith("rnn (RNN): horizon")
    assert (tmp_path / "time.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_picture_edge_cases():
    from gradmedic import plots

    empty = History([], [])
    fig = plots.through_time(empty)
    assert "no time_signal recorded" in " ".join(t.get_text() for t in fig.axes[0].texts)
    zeros = plots.through_time({"flushed": np.r_[0.5 ** np.arange(10), np.zeros(5)]}).axes[0]
    assert any(line.get_marker() == "v" for line in zeros.get_lines())  # exact zeros on the edge
    with pytest.raises(ConfigError, match="one label per history"):
        plots.through_time([empty, empty], ["only one"])
    with pytest.raises(ConfigError, match=r"\.png or \.svg"):
        plots.through_time({"a": [1.0, 0.5]}, path="time.pdf")


# -- the benchmark ------------------------------------------------------------------------------


def test_benchmark_quick_run_prints_the_table_with_horizons():
    done = subprocess.run([sys.executable, str(BENCHMARK), "--quick", "--threads", "1"],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert "checkup horizon / T" in lines[header]
    sick, treated = lines[header + 2], lines[header + 3]
    assert sick.startswith("vanilla tanh nn.RNN") and "/ 40" in sick
    assert treated.startswith("treated (RNN -> LSTM") and "40 / 40" in treated
