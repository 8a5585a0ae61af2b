"""Sinks: the summary series against the History they come from, written only at flush time,
CSV and JSON Lines files read back, and optimizers that take a closure (Lightning, LBFGS)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import gradmedic
from gradmedic.errors import ConfigError
from gradmedic.sinks import (
    PER_LAYER_METRICS,
    SUMMARY_SERIES,
    CSVSink,
    JSONLinesSink,
    ListSink,
    read_csv,
    summarize,
)


def _mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2)
    )


def _train(model: nn.Module, steps: int, closure: bool = False, **options) -> gradmedic.Monitor:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    with gradmedic.watch(model, opt, **options) as monitor:
        for _ in range(steps):
            x, y = torch.randn(16, 5, generator=gen), torch.randn(16, 2, generator=gen)

            def loss_of_batch(x=x, y=y) -> torch.Tensor:
                opt.zero_grad()
                loss = nn.functional.mse_loss(model(x), y)
                loss.backward()
                return loss

            if closure:
                loss = opt.step(loss_of_batch)
            else:
                loss = loss_of_batch()
                opt.step()
            monitor.step(loss)
    return monitor


def test_summary_series_are_computed_from_the_history_rows():
    sink = ListSink(per_layer=True)
    monitor = _train(_mlp(), 6, sinks=[sink], flush_every=4, activations_every=2)
    history = monitor.history
    params = [i for i in history.forward_order() if history.layers[i].kind == "param"]
    steps, signal = history.array("signal_rms")
    written = dict(sink.rows[:0])
    for step, scalars in sink.rows:
        written.setdefault(step, {}).update(scalars)
    assert sorted(written) == steps.tolist()
    for row, step in enumerate(steps.tolist()):
        got = written[step]
        layer_signal = signal[row, params]
        assert got["signal_first"] == pytest.approx(layer_signal[0])
        assert got["signal_last"] == pytest.approx(layer_signal[-1])
        ratios = layer_signal[:-1] / layer_signal[-1]
        assert got["signal_ratio_min"] == pytest.approx(ratios.min())
        assert got["signal_ratio_median"] == pytest.approx(np.median(ratios))
        grads = history.array("weight_grad_norm")[1][row]
        assert got["grad_norm"] == pytest.approx(math.sqrt(np.nansum(grads**2)))
        assert got["loss"] == pytest.approx(history.array("loss")[1][row, 0])
        for i, layer in enumerate(history.layers):
            assert got.get(f"signal_rms/{layer.name}", math.nan) == pytest.approx(signal[row, i], nan_ok=True)
    act_steps, dead = history.array("act_dead")
    assert act_steps.tolist() == [0, 2, 4]
    for row, step in enumerate(act_steps.tolist()):
        assert written[step]["dead_max"] == pytest.approx(np.nanmax(dead[row]))
        assert written[step]["saturated_max"] == pytest.approx(
            np.nanmax(history.array("act_saturated")[1][row])
        )
    assert "dead_max" not in written[1]  # activation statistics only where sampled


def test_summary_only_by_default_per_layer_when_asked():
    summary, full = ListSink(), ListSink(per_layer=True)
    _train(_mlp(), 3, sinks=[summary, full], flush_every=3)
    names = {name for _, scalars in summary.rows for name in scalars}
    assert names <= set(SUMMARY_SERIES) and len(names) <= 9
    per_layer = {name for _, scalars in full.rows for name in scalars} - names
    assert {name.split("/")[0] for name in per_layer} <= set(PER_LAYER_METRICS)
    assert "signal_rms/0" in per_layer and "weight_grad_norm/6" in per_layer and "act_dead/3" in per_layer


def test_sinks_are_written_at_flush_time_only():
    sink = ListSink()
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = gradmedic.watch(model, opt, sinks=[sink], flush_every=4)
    for step in range(6):
        opt.zero_grad()
        model(torch.randn(4, 5)).pow(2).mean().backward()
        opt.step()
        assert len({s for s, _ in sink.rows}) == (4 if step >= 3 else 0)
    monitor.detach()  # the last flush
    assert sorted({s for s, _ in sink.rows}) == list(range(6))


def test_csv_and_json_lines_sinks_read_back_what_was_written(tmp_path):
    memory = ListSink()
    csv_path, jsonl_path = tmp_path / "run.csv", tmp_path / "run.jsonl"
    _train(_mlp(), 5, sinks=[memory, CSVSink(csv_path), JSONLinesSink(jsonl_path)], flush_every=2)
    expected: dict[str, tuple[list[int], list[float]]] = {}
    for step, scalars in memory.rows:
        for name, value in scalars.items():
            expected.setdefault(name, ([], []))[0].append(step)
            expected[name][1].append(value)
    assert read_csv(csv_path) == expected  # repr() of a float round-trips exactly
    lines = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert [(r["step"], r["scalars"]) for r in lines] == memory.rows
    assert csv_path.read_text().count("step,series,value") == 1


def test_a_sink_file_is_appended_to_after_close(tmp_path):
    sink = CSVSink(tmp_path / "sub" / "run.csv")
    sink.write(0, {"loss": 1.0})
    sink.close()
    sink.write(1, {"loss": float("nan")})
    sink.close()
    steps, values = read_csv(sink.path)["loss"]
    assert steps == [0, 1] and values[0] == 1.0 and math.isnan(values[1])


def test_diagnose_hands_the_report_to_sinks_that_take_one():
    class Reports(ListSink):
        def __init__(self) -> None:
            super().__init__()
            self.reports: list[tuple[int, gradmedic.Report]] = []

        def write_diagnosis(self, step, history, report) -> None:
            self.reports.append((step, report))

    sink = Reports()
    model = _mlp()
    with gradmedic.watch(model, sinks=[sink]) as monitor:
        for _ in range(3):
            model(torch.randn(4, 5)).pow(2).mean().backward()
            monitor.step()
        report = monitor.diagnose()
    assert sink.reports == [(2, report)]


def test_bad_sinks_are_refused_with_advice():
    with pytest.raises(ConfigError, match="write"):
        gradmedic.watch(nn.Linear(2, 2), sinks=[object()])
    with pytest.raises(ConfigError, match="list of sinks"):
        gradmedic.watch(nn.Linear(2, 2), sinks=CSVSink("x.csv"))


def test_summarize_skips_what_was_not_recorded():
    history = _train(_mlp(), 1).history
    rows = [("signal_rms", 7, np.full(len(history.layers), np.nan)), ("loss", 7, np.array([0.5]))]
    assert summarize(history, rows) == [(7, {"loss": 0.5})]


@pytest.mark.parametrize("optimizer", ["sgd", "lbfgs"])
def test_an_optimizer_step_that_takes_a_closure_is_recorded(optimizer):
    """Lightning and LBFGS run forward and backward inside optimizer.step(closure)."""
    torch.manual_seed(0)
    plain = _train(_mlp(), 3, updates_every=1).history
    torch.manual_seed(0)
    if optimizer == "sgd":
        closed = _train(_mlp(), 3, closure=True, updates_every=1).history
        for metric in ("signal_norm", "weight_grad_norm", "update_ratio", "loss"):
            np.testing.assert_allclose(
                closed.array(metric)[1], plain.array(metric)[1], rtol=1e-6, equal_nan=True
            )
        return
    model = _mlp()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=1)
    x, y = torch.randn(8, 5), torch.randn(8, 2)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    with gradmedic.watch(model, opt, updates_every=1) as monitor:
        for _ in range(2):
            monitor.step(opt.step(closure))
    history = monitor.history
    assert history.array("signal_norm")[0].tolist() == [0, 1]
    assert np.isfinite(history.array("update_ratio")[1][:, history.forward_order()[0]]).all()
