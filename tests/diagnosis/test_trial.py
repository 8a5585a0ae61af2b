"""The trial end to end: it trains a copy (the model, the optimizer and the RNG are left as
found), its curves are the numbers a plain training loop gives, it names each failing run's
problem with a counterfactual cause, stays quiet on healthy runs, and refuses bad input."""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradmedic
import sick_models as sm
from gradmedic.cli import main
from gradmedic.diagnosis import trial_rules as tr
from gradmedic.diagnosis.findings import Curve, Report, Severity
from gradmedic.diagnosis.trials import SEED, build_optimizer
from gradmedic.errors import ConfigError, ModelError


def relu_mlp(depth: int = 4, width: int = 64) -> nn.Sequential:
    return sm.stack(depth, nn.ReLU, width=width)


def teacher_data(n: int = 128) -> tuple[Tensor, Tensor]:
    """Inputs and labels from a fixed random linear teacher: a task the MLPs here can learn."""
    x = torch.randn(n, sm.N_IN)
    return x, (x @ torch.randn(sm.N_IN, sm.N_OUT)).argmax(1)


def trial_alarms(report: Report) -> list[str]:
    return [f.kind for f in report.findings if f.kind in tr.TRIAL_KINDS and f.severity >= Severity.WARNING]


def plain_losses(model: nn.Module, data: tuple[Tensor, Tensor], optimizer_of, steps: int,
                 scheduler_of=None) -> list[float]:  # fmt: skip
    """The same training as the trial's, written as a plain loop on another copy."""
    torch.manual_seed(SEED)
    model = copy.deepcopy(model).train()
    optimizer = optimizer_of(model)
    scheduler = scheduler_of(optimizer) if scheduler_of else None
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(data[0]), data[1])
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


# -- the model, the optimizer and the RNG are left as found -------------------------------------


def test_model_optimizer_and_rng_left_as_found() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    model.eval()
    model[3].train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()  # the optimizer has state now
    params = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    state = copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()
    report = gradmedic.trial(model, (x, y), optimizer=optimizer, steps=15)
    assert len(report.curves["loss"].steps) == 15
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)
    after = optimizer.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for key, values in state["state"].items():
        assert all(torch.equal(values[name], after["state"][key][name]) for name in values)


def test_error_in_the_users_loss_names_the_step_and_leaves_the_model() -> None:
    model = relu_mlp()
    before = copy.deepcopy(model.state_dict())
    calls = []

    def loss_fn(output: Tensor, targets: Tensor) -> Tensor:
        calls.append(1)
        if len(calls) == 6:  # the checkup's call, then steps 0..4
            raise RuntimeError("boom in the loss")
        return nn.functional.cross_entropy(output, targets)

    with pytest.raises(ModelError, match=r"trial step 4.*boom in the loss") as caught:
        gradmedic.trial(model, teacher_data(), loss_fn, steps=10)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_error_in_the_users_forward_names_the_step() -> None:
    class Flaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.calls = relu_mlp(2), 0

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1  # counted on each copy: the trial copy's third call is step 2
            if self.calls == 3:
                raise ValueError("bad batch")
            return self.net(x)

    model = Flaky()
    with pytest.raises(ModelError, match=r"trial step 2: .*ValueError.*bad batch"):
        gradmedic.trial(model, teacher_data(), steps=5)
    assert model.calls == 0 and not model.net[0]._forward_hooks


# -- the optimizer is rebuilt on the copy --------------------------------------------------------


def test_optimizer_rebuilt_with_groups_settings_and_state() -> None:
    model = relu_mlp(2)
    groups = [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[2].parameters(), "lr": 0.01}]
    user = torch.optim.SGD(groups, lr=0.5, momentum=0.9, weight_decay=1e-4)
    model(torch.randn(4, sm.N_IN)).sum().backward()
    user.step()  # momentum buffers exist for groups 0 and 1
    copied = copy.deepcopy(model)
    from gradmedic.diagnosis.trials import _Setup

    built = build_optimizer(_Setup(model, None, None, user, None), copied)
    assert type(built) is torch.optim.SGD
    assert [g["lr"] for g in built.param_groups] == [0.1, 0.01]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in built.param_groups)
    mine = {id(p) for p in copied.parameters()}
    assert all(id(p) in mine for g in built.param_groups for p in g["params"])
    for old, new in zip(model[0].parameters(), copied[0].parameters()):
        assert torch.equal(user.state[old]["momentum_buffer"], built.state[new]["momentum_buffer"])
        assert built.state[new]["momentum_buffer"] is not user.state[old]["momentum_buffer"]


# -- the curves are the numbers of a plain loop ---------------------------------------------------


def test_loss_curve_equals_a_plain_training_loop() -> None:
    """With the scheduler too: observing does not change what is observed."""
    model, data = relu_mlp(), teacher_data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    report = gradmedic.trial(model, data, optimizer=optimizer, steps=20, scheduler=scheduler)
    expected = plain_losses(
        model, data, lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), 20,
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5),
    )  # fmt: skip
    assert report.curves["loss"].values[:, 0].tolist() == expected
    assert scheduler.last_epoch == 0


def test_signal_and_dead_curves_match_autograd_at_step_zero() -> None:
    model, (x, y) = relu_mlp(3, 32), teacher_data(64)
    with torch.no_grad():
        model[2].bias.fill_(-0.4)  # some units of layer 2 are dead on this batch
    report = gradmedic.trial(model, (x, y), steps=5)
    reference = copy.deepcopy(model).train()
    outputs, h = [], x
    for module in reference:
        h = module(h)
        h.retain_grad()
        outputs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    signal = report.curves["signal_rms"]
    for column, name in enumerate(signal.columns):
        grad = outputs[int(name)].grad
        assert signal.values[0, column] == pytest.approx(
            float(grad.norm() / math.sqrt(grad.numel())), rel=1e-5
        )
    dead = report.curves["dead"]
    assert dead.steps[0] == 0
    for column, name in enumerate(dead.columns[:-1]):  # the head has no activation after it
        relu_out = outputs[int(name) + 1]
        assert dead.values[0, column] == pytest.approx(float((relu_out == 0).all(dim=0).float().mean()))
    assert np.isnan(dead.values[0, -1])


def test_data_loader_is_cycled_and_dict_batches_are_keyword_inputs() -> None:
    x, y = teacher_data(48)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    assert len(gradmedic.trial(relu_mlp(), loader, steps=7).curves["loss"].steps) == 7

    class Keyword(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = relu_mlp(2)

        def forward(self, features: Tensor, labels: Tensor) -> dict[str, Tensor]:
            return {"loss": nn.functional.cross_entropy(self.net(features), labels)}

    report = gradmedic.trial(Keyword(), [{"features": x, "labels": y}] * 2, steps=6)
    assert len(report.curves["loss"].steps) == 6 and "loss: the model's own output.loss" in report.notes


def test_report_with_curves_round_trips_through_json() -> None:
    report = gradmedic.trial(relu_mlp(), teacher_data(), steps=8)
    again = Report.from_json(report.to_json())
    assert again.source == "trial" and again.kinds == report.kinds and set(again.curves) == set(report.curves)
    for name, curve in report.curves.items():
        assert again.curves[name].steps == curve.steps
        np.testing.assert_array_equal(again.curves[name].values, curve.values)


# -- failing runs are named, with a counterfactual cause -----------------------------------------


def test_sgd_rate_too_high_diverges_and_a_tenth_of_it_converges() -> None:
    model, data = relu_mlp(), teacher_data()
    report = gradmedic.trial(model, data, optimizer=torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9))
    found = report.get("divergence")
    assert found is not None and found.severity is Severity.CRITICAL, report.render()
    assert "learning rate too high" in found.cause and "lr=0.05" in found.cause
    assert (
        found.remedies[0].family in ("optimizer", "clipping")
        and "lr=0.05" in found.remedies[0].code + found.cause
    )
    assert report.score == 0.0
    losses = report.curves["loss"].values[:, 0]
    assert found.numbers["step"] == tr.divergence_step(losses)


def test_adam_rate_too_high_diverges() -> None:
    model, data = relu_mlp(), teacher_data()
    report = gradmedic.trial(model, data, optimizer=torch.optim.Adam(model.parameters(), lr=0.5))
    found = report.get("divergence")
    assert found is not None and "lr=0.05" in found.cause, report.render()
    assert found.layers  # where it exploded


def test_rmsprop_rate_too_high_is_not_called_healthy() -> None:
    model, data = relu_mlp(6), teacher_data()
    report = gradmedic.trial(model, data, optimizer=torch.optim.RMSprop(model.parameters(), lr=0.1))
    alarms = [f for f in report.findings if f.kind in tr.TRIAL_KINDS and f.severity >= Severity.WARNING]
    assert alarms and "learning rate" in alarms[0].cause, report.render()


def test_forward_overflow_at_init_is_an_exploding_forward_pass_in_its_layer() -> None:
    class Exp(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.exp(x)

    model = nn.Sequential(nn.Linear(sm.N_IN, 64), Exp(), nn.Linear(64, sm.N_OUT))
    with torch.no_grad():
        model[0].weight.mul_(100)
    report = gradmedic.trial(model, teacher_data(), steps=50)
    found = report.get("exploding_forward")
    assert found is not None and found.layers == ["2"], report.render()
    assert len(report.curves["loss"].steps) == 1  # the verdict was certain at once


def test_units_dying_under_a_high_rate_with_negative_drift() -> None:
    model, data = relu_mlp(6), teacher_data()
    report = gradmedic.trial(model, data, optimizer=torch.optim.SGD(model.parameters(), lr=5.0))
    found = report.get("dying_units")
    assert found is not None, report.render()
    assert "learning rate" in found.cause and found.numbers["newly_dead"] >= tr.NEWLY_DEAD
    assert found.remedies[0].family == "optimizer"


def test_tiny_rate_gives_loss_not_decreasing() -> None:
    model = relu_mlp()
    report = gradmedic.trial(model, teacher_data(), optimizer=torch.optim.SGD(model.parameters(), lr=1e-7))
    assert report.get("loss_not_decreasing") is not None, report.render()
    assert report.score < gradmedic.checkup(model, *teacher_data()).score


# -- healthy runs stay quiet ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(sm.HEALTHY))
def test_healthy_models_give_no_trial_warning(name: str) -> None:
    patient = sm.HEALTHY[name]()
    report = gradmedic.trial(patient.model, (patient.inputs, patient.targets), patient.loss_fn, steps=60)
    assert trial_alarms(report) == [], report.render()


def test_healthy_sgd_run_gives_no_trial_warning() -> None:
    model = relu_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    assert trial_alarms(gradmedic.trial(model, teacher_data(), optimizer=optimizer)) == []


# -- the rules on synthetic curves --------------------------------------------------------------------


def curve(values: list[list[float]], columns: list[str]) -> Curve:
    return Curve(list(range(len(values))), columns, np.array(values, dtype=float))


def test_divergence_step_and_loss_decreased() -> None:
    assert tr.divergence_step(np.array([2.0, 2.1, 1.9, 2.0, 2.2])) is None
    assert tr.divergence_step(np.array([2.0, 3.0, 4.5, 5.0, 6.0])) == 3  # median of 3.0, 4.5, 5.0 > 4
    assert tr.divergence_step(np.array([2.0, 2.1, np.nan])) == 2
    assert tr.divergence_step(np.array([2.0, 2.0, 9.0, 9.0, 9.0, 1.5, 1.4, 1.3])) is None  # recovered
    assert tr.divergence_step(np.array([2.0, 2.0, 9.0, 9.0, 9.0, 2.2, 2.3, 2.2])) == 3  # not back
    noisy = 2.0 + 0.3 * np.random.default_rng(0).standard_normal(100)
    assert not tr.loss_decreased(noisy)
    assert tr.loss_decreased(noisy - np.linspace(0, 1.5, 100))


def test_rule_saturation_growing_on_synthetic_curves() -> None:
    rows = [[0.05, 0.0]] * 3 + [[0.3, 0.0]] * 3 + [[0.55, 0.1]] * 3
    evidence = tr.TrialEvidence({"saturated": curve(rows, ["0", "2"])}, activations={"0": "tanh"})
    found = tr.rule_saturation_growing(evidence)
    assert [(f.kind, f.layers) for f in found] == [("saturation_growing", ["0"])]
    rows = [[0.45, 0.0]] * 9  # saturated from the start: the checkup's finding, not growth
    assert tr.rule_saturation_growing(tr.TrialEvidence({"saturated": curve(rows, ["0", "2"])})) == []


def test_rule_dying_units_on_synthetic_curves() -> None:
    rows = [[0.1]] * 3 + [[0.3]] * 3 + [[0.5], [0.45], [0.5]]
    found = tr.rule_dying_units(tr.TrialEvidence({"dead": curve(rows, ["1"])}, batch_size=64))
    assert found[0].kind == "dying_units" and found[0].numbers["newly_dead"] == pytest.approx(0.35)
    assert found[0].numbers["step"] == 3.0
    rows = [[0.1]] * 6 + [[0.5], [0.1], [0.5]]  # not dead in every one of the last batches
    assert tr.rule_dying_units(tr.TrialEvidence({"dead": curve(rows, ["1"])}, batch_size=64)) == []


def test_a_lower_rate_that_keeps_units_alive_but_stalls_is_not_called_converged() -> None:
    rows = [[0.1]] * 3 + [[0.3]] * 3 + [[0.5], [0.45], [0.5]]
    stalled = tr.Counterfactual("lr", "learning rate 0.05 (x0.1)", {"lr": 0.05, "factor": 0.1},
                                np.full(60, 2.3), newly_dead=0.02)  # fmt: skip
    evidence = tr.TrialEvidence({"dead": curve(rows, ["1"])}, batch_size=64, counterfactuals=[stalled])
    evidence.optimizer = "SGD(lr=0.5)"
    remedy = tr.rule_dying_units(evidence)[0].remedies[0]
    assert not stalled.fixed and remedy.name == "Learning rate 0.05"
    assert "kept the units alive" in remedy.why and "converged" not in remedy.why


def test_units_that_die_in_the_first_updates_count_from_step_zero() -> None:
    # Alive at step 0, most of the layer dead from the second update on: a median of the first
    # steps as the baseline would call them dead "from the start" and see no dying.
    rows = [[0.0], [0.6], [0.8], [0.85], [0.86], [0.86], [0.86], [0.86], [0.86]]
    found = tr.rule_dying_units(tr.TrialEvidence({"dead": curve(rows, ["2"])}, batch_size=64))
    assert [f.kind for f in found] == ["dying_units"]
    assert found[0].numbers["newly_dead"] == pytest.approx(0.86) and found[0].numbers["step"] == 1.0
    means = curve([[0.0]] + [[-5.0 * k] for k in range(1, 9)], ["2"])
    spreads = curve([[0.2]] + [[8.0]] * 8, ["2"])  # the spread grows with the drift: the start is step 0
    evidence = tr.TrialEvidence(
        {"dead": curve(rows, ["2"]), "pre_mean": means, "pre_std": spreads}, batch_size=64
    )
    assert "drifted negative (mean 0 -> -40" in tr.rule_dying_units(evidence)[0].cause


def test_rule_signal_developing_on_synthetic_curves() -> None:
    falling = [[10.0 ** (-k / 2), 1.0] for k in range(12)]  # from 1 to 3e-6
    found = tr.rule_signal_developing(tr.TrialEvidence({"signal_rms": curve(falling, ["0", "4"])}))
    assert [f.kind for f in found] == ["vanishing_developing"]
    steady = [[1e-4, 1.0]] * 12  # vanishing from the start: the checkup's finding
    assert tr.rule_signal_developing(tr.TrialEvidence({"signal_rms": curve(steady, ["0", "4"])})) == []


# -- bad input ----------------------------------------------------------------------------------------


@pytest.fixture
def model() -> Iterator[nn.Module]:
    yield relu_mlp(2)


@pytest.mark.parametrize("steps", [0, -3, True, 2.5])
def test_bad_steps(model: nn.Module, steps: object) -> None:
    with pytest.raises(ConfigError, match="positive number of steps"):
        gradmedic.trial(model, teacher_data(), steps=steps)  # type: ignore[arg-type]


def test_no_data_and_empty_data(model: nn.Module) -> None:
    with pytest.raises(ConfigError, match="trial needs data"):
        gradmedic.trial(model, None)
    with pytest.raises(ConfigError, match="yielded no batch"):
        gradmedic.trial(model, [])


def test_optimizer_of_another_model(model: nn.Module) -> None:
    other = torch.optim.SGD(relu_mlp(2).parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"model\.parameters"):
        gradmedic.trial(model, teacher_data(), optimizer=other)


def test_scheduler_without_its_optimizer(model: nn.Module) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 5)
    with pytest.raises(ConfigError, match="without its optimizer"):
        gradmedic.trial(model, teacher_data(), scheduler=scheduler)
    another = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="does not drive the optimizer"):
        gradmedic.trial(model, teacher_data(), optimizer=another, scheduler=scheduler)


# -- the command line ----------------------------------------------------------------------------------

CLI_TARGETS = """
import torch
from torch import nn


def healthy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(64, 16)
    return model, x, (x[:, :4]).argmax(1)


def diverging():
    model, x, y = healthy()
    return model, x, y, None, torch.optim.SGD(model.parameters(), lr=20.0)


def as_dict():
    model, x, y = healthy()
    return {"model": model, "inputs": x, "targets": y, "optimizer": torch.optim.Adam(model.parameters())}


def fifth_not_an_optimizer():
    return (*healthy(), None, "adam")
"""


@pytest.fixture
def cli_targets(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "trial_cli_targets.py"
    path.write_text(CLI_TARGETS, encoding="utf-8")
    yield path
    sys.modules.pop(path.stem, None)


def test_cli_trial_healthy_exits_0_and_writes_curves(cli_targets: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "trial.json"
    assert main(["trial", f"{cli_targets}:healthy", "--steps", "30", "--json", str(out)]) == 0
    assert "gradmedic trial: healthy" in capsys.readouterr().out
    assert len(Report.from_json(out.read_text()).curves["loss"].steps) == 30
    assert main(["trial", f"{cli_targets}:as_dict", "--steps", "10"]) == 0


def test_cli_trial_with_the_targets_optimizer_finds_the_divergence(cli_targets: Path, capsys) -> None:
    assert main(["trial", f"{cli_targets}:diverging", "--steps", "40"]) == 1
    assert "divergence" in capsys.readouterr().out


def test_cli_trial_bad_fifth_item_exits_2(cli_targets: Path, capsys) -> None:
    assert main(["trial", f"{cli_targets}:fifth_not_an_optimizer"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("gradmedic: ") and "fifth item is the optimizer" in err and err.count("\n") == 1


# -- treat with a trial ----------------------------------------------------------------------------------


def test_treat_with_trial_proves_the_rate_by_a_second_trial() -> None:
    model, (x, y) = relu_mlp(), teacher_data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    before = copy.deepcopy(model.state_dict())
    treatment = gradmedic.treat(model, x, y, optimizer=optimizer, trial=True)
    assert treatment.trial_before is not None and treatment.trial_after is not None
    assert treatment.trial_before.get("divergence") is not None
    assert treatment.settings == {"optimizer": "SGD", "lr": pytest.approx(0.05)}
    assert treatment.trial_after.healthy and treatment.trial_after.score > treatment.trial_before.score
    again = gradmedic.trial(treatment.model, (x, y), optimizer=torch.optim.SGD(
        treatment.model.parameters(), lr=0.05, momentum=0.9))  # fmt: skip
    assert again.score == treatment.trial_after.score  # the proof is a plain trial with those settings
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "trial after" in treatment.summary()


def test_treat_with_trial_keeps_nothing_that_does_not_make_the_trial_better() -> None:
    model, (x, y) = relu_mlp(2), teacher_data()
    treatment = gradmedic.treat(model, x, y, trial=True, trial_steps=30)
    assert treatment.trial_before is not None and treatment.trial_before.healthy
    assert treatment.settings == {} and treatment.applied == []
    assert treatment.trial_after is treatment.trial_before


def test_cli_treat_trial_writes_both_trials(cli_targets: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "treated"
    status = main(["treat", f"{cli_targets}:diverging", "--trial", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "trial before" in printed and "trial after" in printed
    before = Report.from_json((out / "trial_before.json").read_text())
    after = Report.from_json((out / "trial_after.json").read_text())
    assert "divergence" in before.kinds and after.score > before.score
    assert status == (0 if after.healthy else 1)


# -- the lab's early verdict -----------------------------------------------------------------------------


def test_lab_cell_records_the_early_verdict_from_its_own_first_steps() -> None:
    from gradmedic.lab.cell import run_cell
    from gradmedic.lab.schema import CellResult, CellSpec

    spec = CellSpec("depth", "digits", "mlp", "relu", {"depth": 2, "width": 32, "target": 0.8},
                    seed=0, steps=40, lrs=(3e-3, 30.0), axis="depth")  # fmt: skip
    result = run_cell(spec)
    assert result.status == "ok", result.error
    assert 0.0 < result.early_score <= result.score  # the best of the sweep: the healthy rate
    again = CellResult.from_dict(result.to_dict())
    assert again.early_score == result.early_score and again.early_findings == result.early_findings


def test_lab_early_check_ranks_by_the_early_score() -> None:
    from gradmedic.lab.schema import CellResult, CellSpec
    from gradmedic.lab.scorecheck import early_score, score_check

    spec = CellSpec("depth", "digits", "mlp", "tanh", {}, 0, 1, (0.1,))
    cells = [
        CellResult(spec, score=1.0, early_score=e, metric=m) for e, m in [(0.9, 0.95), (0.0, 0.2), (0.8, 0.9)]
    ]
    assert score_check(cells).auc == 0.5 and score_check(cells, early_score).auc == 1.0


# -- Hugging Face models with small random-init configs stay quiet -------------------------------------------


def hf_case(name: str) -> tuple[nn.Module, dict[str, Tensor]]:
    """A small random-init model from its config (no download) and one batch with its labels."""
    transformers = pytest.importorskip("transformers")
    ids = torch.randint(0, 100, (8, 16))
    text = {"vocab_size": 100, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    image = {"pixel_values": torch.randn(8, 3, 16, 16), "labels": torch.randint(0, 3, (8,))}
    if name == "bert":
        config = transformers.BertConfig(hidden_size=32, num_labels=3, **text)
        return transformers.BertForSequenceClassification(config), {"input_ids": ids, "labels": ids[:, 0] % 3}
    if name == "gpt2":
        config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32)
        return transformers.GPT2LMHeadModel(config), {"input_ids": ids, "labels": ids}
    if name == "llama":
        config = transformers.LlamaConfig(
            hidden_size=32, num_key_value_heads=1, max_position_embeddings=32, **text
        )
        return transformers.LlamaForCausalLM(config), {"input_ids": ids, "labels": ids}
    if name == "resnet":
        config = transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3
        )
        return transformers.ResNetForImageClassification(config), image
    layers = {k: v for k, v in text.items() if k != "vocab_size"}
    config = transformers.ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_labels=3, **layers)
    return transformers.ViTForImageClassification(config), image


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "resnet", "vit"])
def test_hugging_face_models_with_adamw_give_no_trial_warning(name: str) -> None:
    model, batch = hf_case(name)
    report = gradmedic.trial(model, batch, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), steps=40)
    assert "loss: the model's own output.loss" in report.notes
    assert trial_alarms(report) == [], report.render()
