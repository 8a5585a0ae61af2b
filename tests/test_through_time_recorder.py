"""Unit tests of :mod:`gradmedic._through_time_recorder`: the per-step backprop signal of recurrent layers.

The recorder is driven directly (a forward hook calls it, as the monitor does), and each profile
is checked against the gradient autograd gives at every hidden state of a hand-unrolled loop.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from gradmedic._through_time_recorder import ThroughTimeRecorder

STEPS, BATCH, IN, HIDDEN = 6, 3, 2, 4


def recording(module: nn.Module) -> tuple[ThroughTimeRecorder, torch.utils.hooks.RemovableHandle]:
    recorder = ThroughTimeRecorder([0], 1)

    def hook(m: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        recorder.on_forward(0, m, args, kwargs, output)

    return recorder, module.register_forward_hook(hook, with_kwargs=True)


def profile_of(rows: dict[str, tuple[Tensor, np.ndarray]]) -> np.ndarray:
    """The time_signal row, steps back from the last, without the NaN padding."""
    values = rows["time_signal"][0].numpy()
    return values[np.isfinite(values)]


def reference_profile(hidden: list[Tensor]) -> np.ndarray:
    """||d loss / d h_t|| for each retained hidden state, last step first."""
    return np.array([h.grad.double().norm().item() for h in reversed(hidden)])


def test_rnn_layer_profile_is_the_gradient_at_every_hidden_state() -> None:
    rnn = nn.RNN(IN, HIDDEN, batch_first=True)
    x, weights_out, weights_last = (
        torch.randn(BATCH, STEPS, IN),
        torch.randn(STEPS, HIDDEN),
        torch.randn(HIDDEN),
    )
    recorder, handle = recording(rnn)
    out, h_n = rnn(x)
    ((out * weights_out).sum() + (h_n * weights_last).sum()).backward()
    handle.remove()
    rows = recorder.collect(lambda squared: squared)

    h = torch.zeros(BATCH, HIDDEN)  # the same recurrence, unrolled by hand
    hidden = []
    for t in range(STEPS):
        h = torch.tanh(
            x[:, t] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        )
        h.retain_grad()
        hidden.append(h)
    out_ref = torch.stack(hidden, dim=1)
    ((out_ref * weights_out).sum() + (hidden[-1] * weights_last).sum()).backward()
    np.testing.assert_allclose(profile_of(rows), reference_profile(hidden), rtol=1e-4)
    assert rows["time_length"][0].tolist() == [STEPS]
    assert "gate_mean" not in rows  # a vanilla RNN has no memory gate


def test_lstm_cell_loop_profile_and_forget_gate_statistics() -> None:
    cell = nn.LSTMCell(IN, HIDDEN)
    with torch.no_grad():
        cell.bias_ih[HIDDEN : 2 * HIDDEN] += 4.0  # a forget gate partly saturated open
    x = torch.randn(STEPS, BATCH, IN)
    recorder, handle = recording(cell)
    state = None
    hidden, gates = [], []
    for t in range(STEPS):
        h_prev = state[0] if state is not None else torch.zeros(BATCH, HIDDEN)
        pre = x[t] @ cell.weight_ih.T + cell.bias_ih + h_prev @ cell.weight_hh.T + cell.bias_hh
        gates.append(torch.sigmoid(pre[:, HIDDEN : 2 * HIDDEN]).detach())  # PyTorch order: i, f, g, o
        state = cell(x[t], state)
        state[0].retain_grad()
        hidden.append(state[0])
    torch.stack(hidden).pow(2).sum().backward()
    handle.remove()
    rows = recorder.collect(lambda squared: squared)
    np.testing.assert_allclose(profile_of(rows), reference_profile(hidden), rtol=1e-5)
    forget = torch.stack(gates).double()
    slope = forget * (1 - forget)
    assert rows["gate_mean"][0].item() == pytest.approx(forget.mean().item(), rel=1e-5)
    expected = (slope < 0.05 * 0.25).double().mean().item()  # slope below 5 % of its maximum 1/4
    assert 0 < expected < 1
    assert rows["gate_saturated"][0].item() == pytest.approx(expected, abs=1e-6)
    assert rows["gate_mean"][1].all()  # observed


def test_a_hand_written_recurrence_reported_per_op_call() -> None:
    w, u = torch.randn(IN, HIDDEN, requires_grad=True), torch.randn(HIDDEN, HIDDEN, requires_grad=True)
    x = torch.randn(BATCH, STEPS, IN)
    recorder = ThroughTimeRecorder([0], 1)
    h = torch.zeros(BATCH, HIDDEN)
    hidden = []
    for t in range(STEPS):
        h = torch.tanh(x[:, t] @ w + h @ u)
        recorder.op_call(0, h)
        h.retain_grad()
        hidden.append(h)
    h.sum().backward()
    rows = recorder.collect(lambda squared: squared)
    np.testing.assert_allclose(profile_of(rows), reference_profile(hidden), rtol=1e-5)


def gru_profile(rnn: nn.GRU, x: Tensor, scale: float) -> np.ndarray:
    """The profile of one backward of ``scale`` times a loss, unscaled by ``scale**2``."""
    recorder, handle = recording(rnn)
    out, _ = rnn(x)
    (scale * out[-1].sum()).backward()
    handle.remove()
    return profile_of(recorder.collect(lambda squared: squared / scale**2))


def test_unscale_divides_the_squared_norms() -> None:
    rnn, x = nn.GRU(IN, HIDDEN), torch.randn(STEPS, BATCH, IN)
    plain = gru_profile(rnn, x, 1.0)
    assert len(plain) == STEPS and np.all(plain > 0)
    np.testing.assert_allclose(gru_profile(rnn, x, 1024.0), plain, rtol=1e-6)


def step_then_collect(rnn: nn.RNN, recorder: ThroughTimeRecorder) -> dict[str, tuple[Tensor, np.ndarray]]:
    out, _ = rnn(torch.randn(STEPS, BATCH, IN))
    out.sum().backward()
    with torch.no_grad():
        rnn.weight_hh_l0.add_(0.1)  # optimizer.step() before monitor.step()
    return recorder.collect(lambda squared: squared)


def test_weights_changed_before_collect_warn_once_and_record_nothing() -> None:
    rnn = nn.RNN(IN, HIDDEN)
    recorder, handle = recording(rnn)
    with pytest.warns(RuntimeWarning, match=r"weights \(or input\) of RNN changed.*before optimizer.step"):
        assert step_then_collect(rnn, recorder) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not at every step
        assert step_then_collect(rnn, recorder) == {}
    handle.remove()


def test_collect_forgets_the_step() -> None:
    rnn = nn.LSTM(IN, HIDDEN)
    recorder, handle = recording(rnn)
    out, _ = rnn(torch.randn(STEPS, BATCH, IN))
    out.sum().backward()
    handle.remove()
    first = recorder.collect(lambda s: s)
    assert set(first) == {"time_signal", "time_length", "gate_mean", "gate_saturated"}
    assert recorder.collect(lambda s: s) == {}
