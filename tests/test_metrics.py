"""The one table of metrics: every metric the monitor writes is in it and every row is written;
the History, the flush, the reducer, the sinks and the pictures read it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import torch
from torch import nn

import gradmedic
from gradmedic import metrics, plots, sinks, stats
from gradmedic.history import History
from gradmedic.layers import LayerInfo
from gradmedic.metrics import METRICS, names
from gradmedic.monitor import ALL_STATS
from gradmedic.monitor.distributed import REDUCTIONS
from gradmedic.recurrent_stats import GATE_FIELDS


class _Tagger(nn.Module):
    """An LSTM, a ReLU and a Tanh head: every kind of layer statistic applies."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 8, batch_first=True)
        self.relu = nn.ReLU()
        self.head = nn.Linear(8, 2)
        self.out = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence, _ = self.lstm(x)
        return self.out(self.head(self.relu(sequence[:, -1])))


def test_every_metric_the_monitor_writes_is_in_the_table_and_every_row_is_written():
    torch.manual_seed(0)
    model = _Tagger()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 5, 3), torch.randn(4, 2)
    with gradmedic.watch(model, optimizer, **ALL_STATS) as monitor:
        for _ in range(2):
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):  # the gradient underflow needs low precision
                loss = (model(x).float() - y).pow(2).mean()
            loss.backward()
            monitor.step(loss)
            optimizer.step()
    assert set(monitor.history.metrics) == set(METRICS)


def test_the_history_s_widths_follow_the_table_s_columns():
    history = History([LayerInfo("a", "Linear", "param"), LayerInfo("b", "Tanh", "activation")], ["a.weight"])
    history.time_layers, history.time_steps = [0], 3
    expected = {"layer": 2, "parameter": 1, "scalar": 1, "time": 3}
    for name, metric in METRICS.items():
        assert history.width(name) == expected[metric.columns], name


def test_the_readers_take_their_lists_from_the_table():
    assert (
        set(REDUCTIONS) == {n for n, m in METRICS.items() if m.reduction} and next(iter(REDUCTIONS)) == "loss"
    )
    assert set(REDUCTIONS.values()) <= {"mean", "rms"}
    assert set(sinks.PER_LAYER_METRICS) == {n for n, m in METRICS.items() if m.per_layer_sink}
    assert plots.TITLES.keys() == plots.UNITS.keys() == {n for n, m in METRICS.items() if m.drawn}
    assert names(phase="forward") == stats.ACTIVATION_FIELDS  # the column order of the activation rows
    assert set(GATE_FIELDS) < set(names(phase="time"))
    for metric in METRICS.values():
        assert metric.columns in {"layer", "parameter", "scalar", "time"}
        assert metric.phase in {"forward", "backward", "update", "step", "time"}
        assert metric.title and metric.unit


def test_the_table_imports_nothing_of_gradmedic():
    tree = ast.parse(Path(metrics.__file__).read_text(encoding="utf-8"))
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imported  # the walk finds imports (the check below can fail)
    assert all(isinstance(n, ast.ImportFrom) and n.level == 0 and n.module != "gradmedic" for n in imported)
    assert all(
        not (n.module or "").startswith("gradmedic") for n in imported if isinstance(n, ast.ImportFrom)
    )


def test_a_nan_is_an_event_only_for_the_metrics_the_table_checks():
    from gradmedic.monitor.flush import StepRecord, flush_records

    layers = [LayerInfo("a", "Linear", "param")]
    for name, metric in METRICS.items():
        if metric.columns != "layer" or metric.phase == "time":
            continue
        history = History(layers, ["a.weight"])
        record = StepRecord(0)
        record.put(name, torch.tensor([float("nan")]), np.ones(1, dtype=bool))
        _, events = flush_records([record], history)
        assert bool(events) == metric.finite_checked, name
