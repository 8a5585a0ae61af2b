"""The per-step signal of recurrent layers against plain autograd, and the profile statistics.

The reference for ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` is a twin built from ``nn.RNNCell`` /
``nn.LSTMCell`` / ``nn.GRUCell`` with the same weights, unrolled in Python with every hidden state
retained: ``torch.autograd.grad(loss, states)`` gives the total gradient at each of them. The
monitor measures the fused module (by replaying its recurrence), so the two computations share
nothing but the weights and the loss.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

import gradmedic
from gradmedic.diagnosis import checkup
from gradmedic.history import MAX_TIME_STEPS, History
from gradmedic.hooks import count_module_hooks
from gradmedic.recurrent_stats import (
    HORIZON_FRACTION,
    bptt_squared_norms,
    decay_per_step,
    gate_stats,
    median_profile,
    memory_horizon,
    reach,
    recurrent_mode,
    replay,
    span,
    step_squared_norms,
)
from gradmedic.stats import SATURATION_SLOPE

CELLS = {"RNN": nn.RNNCell, "LSTM": nn.LSTMCell, "GRU": nn.GRUCell}
SATURATED = math.sqrt(1 - SATURATION_SLOPE) / 2  # |gate - 0.5| beyond this: sigmoid slope < 5 %


# -- the reference: cells with the module's weights, every state retained -----------------------


def cell_twin(module: nn.RNNBase, layer: int, side: int, inputs: int) -> nn.RNNCellBase:
    suffix = f"_l{layer}" + ("_reverse" if side else "")
    kind = module.mode.split("_")[0]
    extra = {"nonlinearity": module.nonlinearity} if kind == "RNN" else {}
    cell = CELLS[kind](inputs, module.hidden_size, bias=module.bias, **extra)
    with torch.no_grad():
        for name, param in cell.named_parameters():
            param.copy_(getattr(module, name + suffix))
    return cell


def memory_gate(cell: nn.RNNCellBase, x: Tensor, h: Tensor) -> Tensor:
    """The forget (LSTM) / update (GRU) gate of one step, from the cell's weights."""
    chunks = 4 if isinstance(cell, nn.LSTMCell) else 3
    pre = nn.functional.linear(x, cell.weight_ih, cell.bias_ih) + nn.functional.linear(
        h, cell.weight_hh, cell.bias_hh
    )
    return torch.sigmoid(pre.chunk(chunks, -1)[1])


def unrolled(module: nn.RNNBase, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None):
    """``(out, h_n, c_n, top-layer states per direction, every memory gate)``, time-major ``x``."""
    sides = 2 if module.bidirectional else 1
    h0, c0 = hx if isinstance(hx, tuple) else (hx, None)
    layer_input, finals_h, finals_c, gates = x, [], [], []
    for layer in range(module.num_layers):
        outputs, tops = [], []
        for side in range(sides):
            cell = cell_twin(module, layer, side, layer_input.shape[-1])
            k = layer * sides + side
            h = h0[k] if h0 is not None else x.new_zeros(x.shape[1], module.hidden_size)
            c = c0[k] if c0 is not None else x.new_zeros(x.shape[1], module.hidden_size)
            states: list[Tensor] = [h] * len(x)
            for t in reversed(range(len(x))) if side else range(len(x)):
                if module.mode != "RNN_TANH" and module.mode != "RNN_RELU":
                    gates.append(memory_gate(cell, layer_input[t], h).detach())
                if module.mode == "LSTM":
                    h, c = cell(layer_input[t], (h, c))
                else:
                    h = cell(layer_input[t], h)
                states[t] = h
            finals_h.append(h)
            finals_c.append(c)
            tops.append(states)
            outputs.append(torch.stack(states))
        layer_input = torch.cat(outputs, dim=-1)
    return layer_input, torch.stack(finals_h), torch.stack(finals_c), tops, gates


def reference_profile(loss: Tensor, tops: list[list[Tensor]]) -> np.ndarray:
    """Norm of d loss / d h_t per position (both directions), by steps back."""
    states = [h for side in tops for h in side]
    grads = torch.autograd.grad(loss, states, allow_unused=True)
    steps = len(tops[0])
    squared = np.zeros(steps)
    for k, grad in enumerate(grads):
        if grad is not None:
            squared[k % steps] += grad.double().pow(2).sum().item()
    return np.sqrt(squared)[::-1]


def gate_reference(gates: list[Tensor]) -> tuple[float, float]:
    values = torch.cat([g.reshape(-1) for g in gates])
    return values.mean().item(), ((values - 0.5).abs() > SATURATED).float().mean().item()


def monitored(model: nn.Module, run) -> History:
    """One step of ``run()`` (forward and loss) under a monitor that records everything."""
    with gradmedic.watch(model, through_time_every=1) as monitor:
        run().backward()
        monitor.step()
    return monitor.history


def time_profile(history: History, layer: str = "") -> np.ndarray:
    return span(history.time_rows(layer)[1][-1])


def column(history: History, metric: str, layer: str = "") -> float:
    names = [layer.name for layer in history.layers]
    return float(history.last(metric)[names.index(layer)])


# -- nn.RNN / nn.LSTM / nn.GRU against the unrolled twin ------------------------------------------

CONFIGS = list(itertools.product(["RNN", "LSTM", "GRU"], [True, False], [1, 2], [False, True]))


@pytest.mark.parametrize(("mode", "batch_first", "layers", "bidirectional"), CONFIGS)
def test_per_step_signal_matches_autograd_on_the_unrolled_twin(mode, batch_first, layers, bidirectional):
    module = getattr(nn, mode)(3, 5, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
    steps, batch, sides = 7, 4, 2 if bidirectional else 1
    x = torch.randn(batch, steps, 3) if batch_first else torch.randn(steps, batch, 3)
    weights = torch.randn(steps, batch, 5 * sides)

    def loss_of(out: Tensor, h_n: Tensor) -> Tensor:  # every step, and the final states
        out = out.transpose(0, 1) if batch_first else out
        return (out * weights).sum() + out[-1].pow(2).sum() + 0.5 * h_n.sum()

    out, h_n, _, tops, gates = unrolled(module, x.transpose(0, 1) if batch_first else x)
    expected = reference_profile(loss_of(out.transpose(0, 1) if batch_first else out, h_n), tops)

    def run() -> Tensor:
        output, state = module(x)
        return loss_of(output, state[0] if mode == "LSTM" else state)

    history = monitored(module, run)
    np.testing.assert_allclose(time_profile(history), expected, rtol=2e-5)
    assert column(history, "time_length") == steps
    if mode == "RNN":
        assert "gate_mean" not in history.metrics  # no gate to measure
    else:
        mean, saturated = gate_reference(gates)
        assert column(history, "gate_mean") == pytest.approx(mean, rel=1e-5)
        assert column(history, "gate_saturated") == pytest.approx(saturated, abs=1e-6)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_loss_on_the_last_output_only_still_reaches_every_step(mode):
    """d loss / d out[:, t] is zero before the last step; the signal through time is not."""
    module = getattr(nn, mode)(2, 6, batch_first=True)
    x = torch.randn(3, 9, 2)
    out, _, _, tops, _ = unrolled(module, x.transpose(0, 1))
    expected = reference_profile(out[-1].sum(), tops)
    history = monitored(module, lambda: module(x)[0][:, -1].sum())
    got = time_profile(history)
    np.testing.assert_allclose(got, expected, rtol=2e-5)
    assert np.all(got > 0) and got[-1] < got[0]


def test_initial_state_c_n_and_relu_rnn():
    lstm = nn.LSTM(3, 4, num_layers=2)
    x, h0, c0 = torch.randn(5, 2, 3), torch.randn(2, 2, 4), torch.randn(2, 2, 4)
    out, _, c_n, tops, _ = unrolled(lstm, x, (h0, c0))
    expected = reference_profile(out.sum() + c_n[-1].pow(2).sum(), tops)

    def run() -> Tensor:
        output, (_, cell) = lstm(x, (h0, c0))
        return output.sum() + cell[-1].pow(2).sum()

    np.testing.assert_allclose(time_profile(monitored(lstm, run)), expected, rtol=2e-5)
    rnn = nn.RNN(3, 4, nonlinearity="relu")
    h0 = torch.randn(1, 2, 4)
    out, _, _, tops, _ = unrolled(rnn, x, h0)
    expected = reference_profile(out.pow(2).sum(), tops)
    np.testing.assert_allclose(
        time_profile(monitored(rnn, lambda: rnn(x, hx=h0)[0].pow(2).sum())), expected, rtol=2e-5
    )


def test_unbatched_input():
    gru = nn.GRU(3, 4, batch_first=True)
    x = torch.randn(6, 3)  # no batch dimension: (time, features), batch_first or not
    out, _, _, tops, _ = unrolled(gru, x.unsqueeze(1))
    expected = reference_profile(out[-1].sum(), tops)
    np.testing.assert_allclose(time_profile(monitored(gru, lambda: gru(x)[0][-1].sum())), expected, rtol=2e-5)


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_with_projection_replays_the_module_and_its_gradient():
    lstm = nn.LSTM(3, 6, proj_size=2, batch_first=True)
    x = torch.randn(2, 5, 3)
    run = replay(lstm, x)
    out, (_, c_n) = lstm(x)
    torch.testing.assert_close(torch.stack(run.directions[0].states, 1), out)
    torch.testing.assert_close(run.directions[0].last_c, c_n[0])
    loss = torch.stack(run.directions[0].states).pow(2).sum()
    grads = torch.autograd.grad(loss, run.directions[0].states)
    expected = torch.stack([g.double().pow(2).sum() for g in grads])
    squared, gates = bptt_squared_norms(lstm, x, None, 2 * out.detach())
    torch.testing.assert_close(squared, expected)
    assert gates is not None and 0 < gates[0] < 1


# -- cells looped by hand -----------------------------------------------------------------------


class Loop(nn.Module):
    """A cell called once per step, its ``h`` fed to the next call, a head on the last ``h``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.cell = CELLS[kind](3, 5)
        self.head = nn.Linear(5, 2)
        self.states: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        h = c = None
        self.states = []
        for t in range(x.shape[1]):
            if self.kind == "LSTM":
                h, c = self.cell(x[:, t], None if h is None else (h, c))
            else:
                h = self.cell(x[:, t], h)
            self.states.append(h)
        return self.head(h)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_cells_in_a_hand_loop_match_autograd_on_their_outputs(kind):
    model = Loop(kind)
    x = torch.randn(4, 8, 3)
    loss = model(x).pow(2).sum() + sum(0.1 * h.sum() for h in model.states[::3])
    expected = reference_profile(loss, [model.states])
    gates = []
    h = torch.zeros(4, 5)
    for t in range(8):  # the gates each call sees: its input and the previous h
        if kind != "RNN":
            gates.append(memory_gate(model.cell, x[:, t], h))
        h = model.states[t].detach()

    def run() -> Tensor:
        return model(x).pow(2).sum() + sum(0.1 * h.sum() for h in model.states[::3])

    history = monitored(model, run)
    np.testing.assert_allclose(time_profile(history, "cell"), expected, rtol=2e-5)
    assert column(history, "time_length", "cell") == 8
    assert math.isnan(column(history, "time_length", "head"))
    if kind != "RNN":
        mean, saturated = gate_reference(gates)
        assert column(history, "gate_mean", "cell") == pytest.approx(mean, rel=1e-5)
        assert column(history, "gate_saturated", "cell") == pytest.approx(saturated, abs=1e-6)


class Stacked(nn.Module):
    """A GRU cell loop (4 calls) under an LSTM over 6 steps: two recurrent layers, two lengths."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.cell = nn.GRUCell(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        h = None
        for t in range(2, 6):
            h = self.cell(out[:, t], h)
        return h.sum()


def test_two_recurrent_layers_of_different_lengths_share_one_row():
    model = Stacked()
    history = monitored(model, lambda: model(torch.randn(2, 6, 3)))
    names = [history.layers[i].name for i in history.time_layers]
    assert names == ["lstm", "cell"] and history.time_steps == 6
    assert len(time_profile(history, "lstm")) == 6 and len(time_profile(history, "cell")) == 4
    assert np.all(np.isnan(history.time_rows("cell")[1][-1, 4:]))


# -- the monitor's bookkeeping ------------------------------------------------------------------


def test_time_statistics_follow_their_own_schedule_and_sequences_of_any_length(tmp_path):
    rnn = nn.RNN(2, 4, batch_first=True)
    optimizer = torch.optim.SGD(rnn.parameters(), lr=0.01)
    lengths = [5, 3, 9, 4, 2, 7]
    options = {"activations_every": 3, "through_time_every": 2, "log_path": tmp_path / "run.jsonl"}
    with gradmedic.watch(rnn, optimizer, **options) as monitor:
        for length in lengths:
            optimizer.zero_grad()
            rnn(torch.randn(3, length, 2))[0].sum().backward()
            optimizer.step()
    history = monitor.history
    steps, rows = history.time_rows("")
    assert steps.tolist() == [0, 2, 4] and history.time_steps == 9
    assert history.array("act_mean")[0].tolist() == [0, 3]
    assert [len(span(row)) for row in rows] == [5, 9, 2]  # NaN-padded to the longest
    loaded = History.load(tmp_path / "run.jsonl")  # streamed rows of different widths
    assert loaded.time_layers == history.time_layers
    np.testing.assert_array_equal(loaded.time_rows("")[1], history.time_rows("")[1])
    saved = History.load(history.save(tmp_path / "saved.jsonl"))
    np.testing.assert_array_equal(saved.array("time_signal")[1], history.array("time_signal")[1])


def test_widening_pads_earlier_rows_and_long_sequences_keep_their_last_steps():
    rnn = nn.RNN(1, 2, batch_first=True)
    with gradmedic.watch(rnn, through_time_every=1) as monitor:
        for length in (3, 6, MAX_TIME_STEPS + 5):
            rnn(torch.randn(1, length, 1))[0][:, -1].sum().backward()
            monitor.step()
    rows = monitor.history.time_rows("")[1]
    assert rows.shape == (3, MAX_TIME_STEPS)
    assert [len(span(row)) for row in rows] == [3, 6, MAX_TIME_STEPS]
    assert monitor.history.array("time_length")[1][:, 0].tolist() == [3, 6, MAX_TIME_STEPS + 5]


def test_steps_off_the_schedule_record_nothing_and_plain_models_get_no_recorder():
    rnn = nn.GRU(2, 3)
    with gradmedic.watch(rnn, through_time_every=None) as monitor:
        rnn(torch.randn(4, 2, 2))[0].sum().backward()
        monitor.step()
    assert "time_signal" not in monitor.history.metrics and "signal_norm" in monitor.history.metrics
    mlp = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    plain = gradmedic.watch(mlp)
    assert plain._time is None and plain.history.time_layers == []
    plain.detach()


def test_weights_changed_before_step_are_refused_with_advice():
    rnn = nn.RNN(2, 3)
    optimizer = torch.optim.SGD(rnn.parameters(), lr=0.1)
    with gradmedic.watch(rnn, through_time_every=1) as monitor:  # the optimizer not given
        rnn(torch.randn(4, 2, 2))[0].sum().backward()
        optimizer.step()
        with pytest.warns(RuntimeWarning, match="before optimizer.step"):
            monitor.step()
    assert "time_signal" not in monitor.history.metrics


def test_packed_sequences_are_skipped_and_no_hook_is_left():
    lstm = nn.LSTM(2, 3, batch_first=True)
    packed = pack_padded_sequence(torch.randn(2, 4, 2), torch.tensor([4, 2]), batch_first=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gradmedic.watch(lstm, through_time_every=1) as monitor:
            lstm(packed)[1][0].sum().backward()
            monitor.step()
    assert "time_signal" not in monitor.history.metrics
    assert count_module_hooks(lstm) == 0


def test_the_replay_is_invisible_to_the_checkup_s_activation_tracer():
    """The replay's tanh and sigmoid calls must not be taken for an activation after the head."""
    model = nn.Sequential()
    model.add_module("rnn", nn.RNN(2, 4, batch_first=True))
    model.add_module("last", Last())
    model.add_module("head", nn.Linear(4, 1))
    report = checkup(model, torch.randn(3, 20, 2), torch.randn(3, 1))
    assert {layer.name: layer.activation for layer in report.layers}["head"] is None


class Last(nn.Module):
    def forward(self, output: tuple[Tensor, Tensor]) -> Tensor:
        return output[0][:, -1]


# -- pure functions -----------------------------------------------------------------------------


def test_step_squared_norms_and_gate_stats():
    grad = torch.randn(3, 7, 4)
    expected = [grad[:, t].double().pow(2).sum().item() for t in range(7)]
    assert step_squared_norms(grad, 1).tolist() == pytest.approx(expected)
    tiny = torch.full((2, 3), 1e-30)  # squares underflow float32: accumulated in float64
    assert step_squared_norms(tiny, 0).tolist() == pytest.approx([3e-60, 3e-60])
    gates = torch.tensor([0.01, 0.5, 0.99, 0.2])
    assert gate_stats(gates).tolist() == pytest.approx([0.425, 0.5])
    assert recurrent_mode(nn.LSTM(1, 1)) == "LSTM" and recurrent_mode(nn.RNNCell(1, 1)) == "RNN_TANH"
    with pytest.raises(gradmedic.UnsupportedError):
        recurrent_mode(nn.Linear(1, 1))


@pytest.mark.parametrize("factor", [0.5, 0.9, 0.99])
def test_horizon_and_decay_of_geometric_profiles(factor):
    profile = 3.0 * factor ** np.arange(200)
    expected = math.floor(math.log(HORIZON_FRACTION) / math.log(factor)) + 1
    assert memory_horizon(profile) == min(expected, 200)
    assert decay_per_step(profile) == pytest.approx(factor)
    assert reach(profile) == pytest.approx(factor**199)


def test_profile_edge_cases():
    assert memory_horizon([]) == 0 and math.isnan(decay_per_step([1.0])) and math.isnan(reach([]))
    assert memory_horizon([0.0, 1.0]) == 0  # no signal at the last step: nothing to measure from
    padded = [1.0, 0.5, 0.25, np.nan, np.nan]  # a short sequence in a wide row
    assert memory_horizon(padded) == 3 and reach(padded) == 0.25
    assert decay_per_step([1.0, 0.1, 0.0, 0.001]) == pytest.approx(0.1)  # zeros carry no signal
    assert memory_horizon([1.0, 1e-3, 9.9e-4, 1.0]) == 2  # the first step below 1e-3 ends it
    assert memory_horizon([1.0, 2.0, 50.0]) == 3 and decay_per_step([1.0, 2.0, 4.0]) == pytest.approx(2.0)
    rows = np.array([[1.0, 0.1, np.nan], [3.0, np.inf, 0.2]])
    assert median_profile(rows).tolist() == [2.0, 0.1, 0.2]


def test_history_header_keeps_the_time_layers(tmp_path):
    model = Stacked()
    history = monitored(model, lambda: model(torch.randn(2, 6, 3)))
    header = json.loads(history.save(tmp_path / "h.jsonl").read_text().splitlines()[0])
    assert header["time_layers"] == history.time_layers
    with pytest.raises(KeyError, match="recurrent layers"):
        history.time_rows("nope")


@pytest.mark.parametrize(("mode", "bidirectional"), [("LSTM", False), ("GRU", True), ("RNN", True)])
def test_the_module_s_own_output_gives_the_states_the_kernel_would(mode, bidirectional):
    """The monitor hands the output it saw to the backward recurrence instead of running the top
    layer again: the same profile and gates as when the states are computed afresh."""
    module = getattr(nn, mode)(3, 5, num_layers=2, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(4, 6, 3)
    out, _ = module(x)
    grad = torch.randn_like(out)
    fresh, fresh_gates = bptt_squared_norms(module, x, None, grad)
    reused, reused_gates = bptt_squared_norms(module, x, None, grad, output=out)
    torch.testing.assert_close(reused, fresh)
    if mode != "RNN":
        torch.testing.assert_close(reused_gates, fresh_gates)
