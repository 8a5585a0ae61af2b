"""History: columns, bounded memory, JSON Lines save/load, and the monitor's streamed log file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradmedic
from gradmedic.errors import ConfigError
from gradmedic.history import History, NonFiniteEvent
from gradmedic.layers import LayerInfo
from gradmedic.monitor import ALL_STATS
from models import mlp, nan_gradient


def _history(max_rows: int = 4096) -> History:
    layers = [
        LayerInfo("0", "Linear", "param", ["0.weight", "0.bias"], 0),
        LayerInfo("1", "Tanh", "activation", [], 1),
        LayerInfo("2", "Linear", "param", ["2.weight"], 2),
    ]
    return History(
        layers, ["0.weight", "0.bias", "2.weight"], max_rows=max_rows, meta={"model": "Sequential"}
    )


# -- columns ---------------------------------------------------------------------------------


def test_array_shapes_follow_the_metric_columns():
    history = _history()
    history.append("signal_norm", [0, 1], np.arange(6.0).reshape(2, 3))
    history.append("param_grad_norm", [0], np.array([[1.0, 2.0, 3.0]]))
    history.append("loss", [0, 1, 2], np.array([[3.0], [2.0], [1.0]]))
    steps, values = history.array("signal_norm")
    assert steps.dtype == np.int64 and steps.tolist() == [0, 1]
    assert values.shape == (2, 3) and values.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert history.array("param_grad_norm")[1].shape == (1, 3)
    assert history.array("loss")[1].shape == (3, 1)
    assert history.last("loss").tolist() == [1.0]
    assert history.metrics == ["signal_norm", "param_grad_norm", "loss"]
    assert len(history) == 3


def test_array_of_unrecorded_metric_names_the_recorded_ones():
    history = _history()
    history.append("loss", [0], np.array([[1.0]]))
    with pytest.raises(KeyError, match=r"'act_mean' was not recorded; recorded: \['loss'\]"):
        history.array("act_mean")


def test_width_of_each_metric():
    history = _history()
    assert {m: history.width(m) for m in ("signal_rms", "act_dead", "update_ratio")} == dict.fromkeys(
        ("signal_rms", "act_dead", "update_ratio"), 3
    )
    assert history.width("param_grad_norm") == 3 and history.width("loss") == 1


def test_forward_order_puts_unseen_layers_last():
    layers = [
        LayerInfo("late", "Linear", "param", [], 2),
        LayerInfo("never", "Linear", "param", [], -1),
        LayerInfo("early", "Linear", "param", [], 0),
        LayerInfo("act", "Tanh", "activation", [], 1),
    ]
    assert History(layers, []).forward_order() == [2, 3, 0, 1]


def test_max_rows_below_two_is_refused():
    with pytest.raises(ConfigError, match="max_rows=1: keep at least 2"):
        _history(max_rows=1)


# -- bounded memory --------------------------------------------------------------------------


def _check_bounded(history: History, appended: list[int]) -> None:
    steps = history.array("loss")[0].tolist()
    m = history.max_rows
    assert len(steps) <= m + 1, (len(steps), m)
    assert steps == sorted(set(steps))
    assert steps[0] == appended[0]  # the oldest step is kept
    recent = appended[-max(1, m // 4) :]
    assert steps[-len(recent) :] == recent  # recent steps are dense
    values = history.array("loss")[1][:, 0]
    assert values.tolist() == [float(s) for s in steps]  # rows stay with their steps


@pytest.mark.parametrize("max_rows", [2, 3, 10, 64])
def test_rows_stay_bounded_when_appended_one_by_one(max_rows):
    history = _history(max_rows)
    for step in range(1000):
        history.append("loss", [step], np.array([[float(step)]]))
        _check_bounded(history, list(range(step + 1)))
    assert len(history.array("loss")[0]) >= max_rows // 2


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40), st.lists(st.integers(1, 120), min_size=1, max_size=20))
def test_rows_stay_bounded_when_appended_in_chunks(max_rows, chunks):
    """Regression: a flush appends many rows at once; one thinning pass used to be not enough."""
    history = _history(max_rows)
    step = 0
    for size in chunks:
        steps = list(range(step, step + size))
        history.append("loss", steps, np.array(steps, dtype=float)[:, None])
        step += size
        _check_bounded(history, list(range(step)))


def _retention_holds(steps: np.ndarray, n: int, max_rows: int) -> None:
    """The guarantee of History's docstring, for rows recorded at steps 0 .. n-1."""
    tail = max(1, max_rows // 4)
    assert len(steps) <= max_rows
    assert steps[0] == 0 and steps[-min(tail, n) :].tolist() == list(range(max(n - tail, 0), n))
    gaps = np.diff(steps)
    assert gaps.max() <= max(1.0, 2 * (n - tail) / (max_rows - tail)), (gaps.max(), n, max_rows)
    assert (np.diff(gaps) <= 0).all()  # the resolution only falls going back in time


@pytest.mark.parametrize("max_rows", [2, 3, 8, 200, 4096])
def test_a_long_run_keeps_its_beginning_its_end_and_everything_between(max_rows):
    """Issue 16: a 4,000-step run with max_rows=200 used to keep nothing between step 0 and 3591."""
    history = _history(max_rows)
    n, checked = 100_000, {10, 4000, 20_000, 100_000}
    for start in range(0, n, 1000):  # as flushes append them: 1,000 rows at a time
        steps = list(range(start, start + 1000))
        history.append("loss", steps, np.array(steps, dtype=float)[:, None])
        if start + 1000 in checked:
            _retention_holds(history.array("loss")[0], start + 1000, max_rows)
    for small in (10,):
        history = _history(max_rows)
        history.append("loss", list(range(small)), np.arange(small, dtype=float)[:, None])
        _retention_holds(history.array("loss")[0], small, max_rows)


def test_default_rows_cover_a_20000_step_run_with_every_part_present():
    history = _history()
    for step in range(20_000):
        history.append("loss", [step], np.array([[float(step)]]))
    steps = history.array("loss")[0]
    assert len(steps) <= 4096 and steps[0] == 0 and steps[-1] == 19_999
    assert np.diff(steps).max() <= 12  # the docstring's figure
    assert ((steps >= 1) & (steps <= 7176)).sum() >= 7176 // 12  # the part the old thinning lost


def test_monitor_history_stays_bounded_with_long_flushes():
    """Regression: with flush_every > max_rows the monitor's history grew past max_rows."""
    case = mlp(depth=2, width=4, batch=4)
    with gradmedic.watch(case.model, gradients_every=1, flush_every=32, max_rows=4) as monitor:
        for _ in range(100):
            case.model.zero_grad()
            loss = case.loss()
            loss.backward()
            monitor.step(loss)
    for metric in ("loss", "signal_norm", "param_grad_norm"):
        steps = monitor.history.array(metric)[0].tolist()
        assert len(steps) <= 5, (metric, steps)
        assert steps[0] == 0 and steps[-1] == 99


# -- save / load -----------------------------------------------------------------------------


def test_save_load_round_trip_keeps_values_nan_inf_events_and_header(tmp_path):
    history = _history()
    history.append("signal_norm", [0, 5], np.array([[1.5, math.nan, math.inf], [-math.inf, 0.0, 1e-30]]))
    history.append("param_grad_norm", [5], np.array([[0.1, 0.2, math.nan]]))
    history.append("loss", [0, 5], np.array([[2.0], [math.nan]]))
    history.add_event(NonFiniteEvent(5, "loss", "loss"))
    history.add_event(NonFiniteEvent(5, "signal_norm", "0"))
    path = history.save(tmp_path / "run.jsonl")

    loaded = History.load(path)
    assert loaded.metrics == history.metrics
    for metric in history.metrics:
        steps, values = history.array(metric)
        loaded_steps, loaded_values = loaded.array(metric)
        np.testing.assert_array_equal(loaded_steps, steps)
        np.testing.assert_array_equal(loaded_values, values)  # NaN == NaN, inf == inf here
    assert loaded.non_finite == history.non_finite
    assert [layer.to_dict() for layer in loaded.layers] == [layer.to_dict() for layer in history.layers]
    assert loaded.params == history.params
    assert loaded.meta == {"model": "Sequential"}


def test_saved_file_is_json_lines_with_null_and_inf_strings(tmp_path):
    history = _history()
    history.append("signal_norm", [3], np.array([[math.nan, math.inf, -math.inf]]))
    history.add_event(NonFiniteEvent(3, "signal_norm", "1"))
    lines = history.save(tmp_path / "run.jsonl").read_text().splitlines()
    header, row, event = (json.loads(line) for line in lines)
    assert header["format"] == "gradmedic.history" and header["version"] == 1
    assert header["params"] == ["0.weight", "0.bias", "2.weight"]
    assert header["layers"][1] == {
        "name": "1",
        "type": "Tanh",
        "kind": "activation",
        "params": [],
        "forward_index": 1,
    }
    assert row == {"step": 3, "metric": "signal_norm", "values": [None, "inf", "-inf"]}
    assert event == {"event": "non_finite", "step": 3, "metric": "signal_norm", "layer": "1"}


@pytest.mark.parametrize(
    ("content", "found"),
    [
        ("", "None"),
        ('{"format": "something.else"}\n', "'something.else'"),
        ("step,loss\n0,1.0\n", None),
        ("[1, 2, 3]\n", None),
        ('"gradmedic.history"\n', None),
    ],
    ids=["empty", "other-format", "csv", "json-list", "json-string"],
)
def test_load_of_a_file_that_is_not_a_history_is_a_config_error(tmp_path, content, found):
    path = tmp_path / "other.txt"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        History.load(path)
    message = str(info.value)
    assert str(path) in message and "is not a gradmedic history" in message
    assert "History.save" in message and "log_path" in message
    if found is not None:
        assert f"format={found}" in message


def test_load_of_a_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.randn(3)}, path)
    with pytest.raises(ConfigError, match="is not a gradmedic history"):
        History.load(path)


# -- the monitor's streamed log --------------------------------------------------------------


def _train(case, monitor, steps):
    for _ in range(steps):
        case.model.zero_grad()
        loss = case.loss()
        loss.backward()
        monitor.step(loss)


def test_streamed_log_loads_to_the_same_arrays_as_the_history(tmp_path):
    path = tmp_path / "log.jsonl"
    case = mlp(depth=3, width=4, batch=4)
    opt = torch.optim.SGD(case.model.parameters(), lr=0.1)
    options = {"gradients_every": 1, "activations_every": 2, "updates_every": 3, "flush_every": 3}
    with gradmedic.watch(case.model, opt, **options, log_path=path) as monitor:
        for _ in range(10):
            opt.zero_grad()
            loss = case.loss()
            loss.backward()
            monitor.step(loss)
            opt.step()
        assert path.exists()
    history = monitor.history
    loaded = History.load(path)
    assert sorted(loaded.metrics) == sorted(history.metrics)
    assert "update_ratio" in loaded.metrics and "act_mean" in loaded.metrics
    for metric in history.metrics:
        np.testing.assert_array_equal(loaded.array(metric)[0], history.array(metric)[0], err_msg=metric)
        np.testing.assert_array_equal(loaded.array(metric)[1], history.array(metric)[1], err_msg=metric)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in history.layers]
    assert loaded.params == history.params


def test_streamed_log_keeps_non_finite_events(tmp_path):
    path = tmp_path / "log.jsonl"
    case = nan_gradient()
    with gradmedic.watch(case.model, **ALL_STATS, flush_every=2, log_path=path) as monitor:
        _train(case, monitor, 3)
    assert monitor.history.non_finite
    assert History.load(path).non_finite == monitor.history.non_finite


def test_history_save_of_a_monitored_run_round_trips(tmp_path):
    case = mlp(depth=2, width=4, batch=4)
    with gradmedic.watch(case.model, **ALL_STATS) as monitor:
        _train(case, monitor, 4)
    history = monitor.history
    loaded = History.load(history.save(tmp_path / "saved.jsonl"))
    for metric in history.metrics:
        np.testing.assert_array_equal(loaded.array(metric)[1], history.array(metric)[1], err_msg=metric)
    assert [layer.forward_index for layer in loaded.layers] == [0, 1, 2]
