"""The backprop signal through time: per-step norms, decay, memory horizon and gate statistics.

Backpropagation through time multiplies one factor per step, so the gradient of a loss at the
end of a sequence shrinks (or grows) geometrically on its way back to the first steps. The
**per-step signal** of a recurrent layer is the norm, at each step ``t``, of the gradient of the
loss with respect to the hidden state ``h_t``: the *total* derivative, which includes every
path from ``h_t`` to the loss (through the output at ``t`` and through all later states).

How it is measured:

* a cell (``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell``) looped by hand: call ``k`` of one
  forward pass is step ``k``, and the ``h`` it returns is a real tensor of the graph, so the
  gradient that reaches it is the total derivative (of an ``LSTMCell``, ``h`` only, not ``c``);
* ``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` run the recurrence inside one fused kernel and expose only
  the output sequence. The gradient with respect to ``out[:, t]`` is *not* the signal: it holds
  only the loss's direct dependence on step ``t`` (zero before the last step when the loss reads
  ``out[:, -1]``). :func:`bptt_squared_norms` therefore runs the backward recurrence of the
  **top layer** by hand and returns the total gradient at each of its hidden states, given the
  gradients that reached ``out``, ``h_n`` (and ``c_n``): the states come from PyTorch's fused
  kernel (or from the module's own output), every gate of every step from them in two matrix
  products, and then one small product per step goes back, ``dh_{t-1} = g_{t-1} + dh_t
  dh_t/dh_{t-1}``, with no autograd graph of ``T`` steps (:func:`replay` builds that graph, for
  tests and users who want it). Lower layers are run without a graph only to feed the top layer;
  dropout between layers is not replayed (the signal is measured as if it were off). For a
  bidirectional layer the value at position ``t`` covers both directions (the reverse
  direction carries its memory the other way, from the first position to the last).

With a loss at every step (a sequence labeller, a language model), the gradient at ``h_t``
includes step ``t``'s own loss, so the profile stays high whatever the memory and the horizon
reads the whole sequence. To see the memory, check the model up with the part of the loss that
needs it: the last step of a classifier, the recall steps of the copy task
(``loss_fn=lambda out: copy_memory_loss(out[:, -10:], y[:, -10:])``).

From a profile (the per-step signal indexed by *steps back*: 0 is the last step):

* :func:`memory_horizon`: how many steps back the signal stays at or above
  :data:`HORIZON_FRACTION` (1e-3) of its value at the last step (the whole span when it never
  falls below);
* :func:`decay_per_step`: the factor of a geometric fit over the steps with signal;
* :func:`reach`: the signal at the first step over the signal at the last step.

Example:
    >>> import numpy as np
    >>> profile = 0.9 ** np.arange(150)
    >>> memory_horizon(profile), round(decay_per_step(profile), 2)
    (66, 0.9)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import stats
from .errors import UnsupportedError

#: The memory horizon counts the steps whose signal is at least this fraction of the signal at
#: the last step: the same 1e-3 that marks a layer as starved in the depth rules (a weight fed
#: by 1e-3 of the signal needs a thousand times more steps to move).
HORIZON_FRACTION = 1e-3
#: Gate pre-activations of each mode, and the index of the gate that keeps the state: the LSTM's
#: forget gate (``i, f, g, o``) and the GRU's update gate ``z`` (``r, z, n``; ``z`` near 1 keeps).
GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
MEMORY_GATE = {"LSTM": 1, "GRU": 1}
#: Order of the values returned by :func:`gate_stats`.
GATE_FIELDS = ("gate_mean", "gate_saturated")
_SIGMOID_BAND = stats.saturation_band(nn.Sigmoid())


# -- per-step norms and gates (tensors) ------------------------------------------------------


def step_squared_norms(grad: Tensor, time_dim: int) -> Tensor:
    """Squared L2 norm of ``grad`` at each index of ``time_dim`` (float64, accumulated exactly).

    Example:
        >>> step_squared_norms(torch.tensor([[3.0, 0.0], [4.0, 1.0]]), time_dim=1).tolist()
        [25.0, 1.0]
    """
    moved = grad.movedim(time_dim, 0)
    return torch.linalg.vector_norm(moved.reshape(len(moved), -1), dim=1, dtype=torch.float64).square()


def gate_stats(gates: Tensor) -> Tensor:
    """Mean of memory-gate activations (in (0, 1)) and the fraction saturated, as float32 ``[2]``.

    Saturated means the sigmoid's slope is below :data:`gradmedic.stats.SATURATION_SLOPE` of its
    maximum (activations below 0.013 or above 0.987): such a gate no longer learns. Saturated
    open (near 1) keeps the state and its gradient; saturated shut (near 0) forgets every step.

    Example:
        >>> [round(v, 3) for v in gate_stats(torch.tensor([0.5, 0.999, 0.3, 0.001])).tolist()]
        [0.45, 0.5]
    """
    values = gates.detach().float()
    saturated = stats.saturated_fraction(values, _SIGMOID_BAND)  # type: ignore[arg-type]
    return torch.stack([values.mean(), saturated])


def recurrent_mode(module: nn.Module) -> str:
    """``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"`` for a recurrent layer or cell.

    Example:
        >>> recurrent_mode(nn.GRUCell(2, 3)), recurrent_mode(nn.RNN(2, 3, nonlinearity="relu"))
        ('GRU', 'RNN_RELU')
    """
    if isinstance(module, nn.RNNBase):
        return module.mode
    if isinstance(module, nn.LSTMCell):
        return "LSTM"
    if isinstance(module, nn.GRUCell):
        return "GRU"
    if isinstance(module, nn.RNNCell):
        return "RNN_RELU" if module.nonlinearity == "relu" else "RNN_TANH"
    raise UnsupportedError(f"{type(module).__name__} is not a recurrent layer or cell of torch.nn")


@torch.no_grad()
def cell_memory_gate(module: nn.RNNCellBase, args: Sequence[object]) -> Tensor | None:
    """Memory-gate activations of one call of an ``LSTMCell`` / ``GRUCell`` (None for others).

    ``args`` are the call's positional arguments: the input and, optionally, the state.

    Example:
        >>> cell = nn.LSTMCell(3, 4)
        >>> cell_memory_gate(cell, (torch.randn(2, 3),)).shape
        torch.Size([2, 4])
    """
    mode = recurrent_mode(module)
    if mode not in MEMORY_GATE or not args or not isinstance(args[0], Tensor):
        return None
    state = args[1] if len(args) > 1 else None
    h = state[0] if isinstance(state, (tuple, list)) else state
    gate = MEMORY_GATE[mode]
    pre = F.linear(args[0], module.weight_ih, module.bias_ih).chunk(GATES[mode], -1)[gate]
    if isinstance(h, Tensor):
        pre = pre + F.linear(h, module.weight_hh, module.bias_hh).chunk(GATES[mode], -1)[gate]
    elif module.bias_hh is not None:
        pre = pre + module.bias_hh.chunk(GATES[mode], -1)[gate]
    return pre.sigmoid()


# -- replaying the recurrence of nn.RNN / nn.LSTM / nn.GRU -----------------------------------


@dataclass
class _Weights:
    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None
    b_hh: Tensor | None
    w_hr: Tensor | None


def _weights(module: nn.RNNBase, layer: int, direction: int) -> _Weights:
    suffix = f"_l{layer}" + ("_reverse" if direction else "")

    def get(name: str) -> Tensor | None:
        value = getattr(module, name + suffix, None)
        return value.detach() if isinstance(value, Tensor) else None

    w_ih, w_hh = get("weight_ih"), get("weight_hh")
    assert w_ih is not None and w_hh is not None
    return _Weights(w_ih, w_hh, get("bias_ih"), get("bias_hh"), get("weight_hr"))


def _step(
    mode: str, xw: Tensor, h: Tensor, c: Tensor | None, w: _Weights
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """One step of the recurrence as PyTorch defines it: new ``h``, new ``c``, memory gate."""
    hw = F.linear(h, w.w_hh, w.b_hh)
    if mode == "LSTM":
        i, f, g, o = (xw + hw).chunk(4, -1)
        f = torch.sigmoid(f)
        c = f * c + torch.sigmoid(i) * torch.tanh(g)  # type: ignore[operator]
        h = torch.sigmoid(o) * torch.tanh(c)
        return (F.linear(h, w.w_hr) if w.w_hr is not None else h), c, f
    if mode == "GRU":
        xr, xz, xn = xw.chunk(3, -1)
        hr, hz, hn = hw.chunk(3, -1)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + torch.sigmoid(xr + hr) * hn)
        return (1 - z) * n + z * h, None, z
    pre = xw + hw
    return (torch.tanh(pre) if mode == "RNN_TANH" else torch.relu(pre)), None, None


@dataclass
class Direction:
    """One direction of a replayed layer: ``h`` at each position (in position order, whichever
    way the direction runs), and its final ``h`` and ``c`` (``c`` for an LSTM only)."""

    states: list[Tensor]
    last_h: Tensor
    last_c: Tensor | None


def _run(mode: str, x: Tensor, h: Tensor, c: Tensor | None, w: _Weights, reverse: bool,
         gates: list[Tensor]) -> Direction:  # fmt: skip
    xw = F.linear(x, w.w_ih, w.b_ih)  # every step's input projection in one product
    states: list[Tensor] = [h] * len(x)
    for t in range(len(x) - 1, -1, -1) if reverse else range(len(x)):
        h, c, gate = _step(mode, xw[t], h, c, w)
        states[t] = h
        if gate is not None:
            gates.append(gate.detach())
    return Direction(states, h, c)


def _initial_state(module: nn.RNNBase, x: Tensor, hx: object) -> tuple[Tensor, Tensor | None]:
    """``h_0`` (and ``c_0``) as ``[layers * directions, batch, size]``, zeros when not given."""
    count = module.num_layers * (2 if module.bidirectional else 1)
    out_size = module.proj_size or module.hidden_size
    h0, c0 = (hx if isinstance(hx, (tuple, list)) else (hx, None)) if hx is not None else (None, None)
    if h0 is None:
        h0 = x.new_zeros(count, x.shape[1], out_size)
    if module.mode == "LSTM" and c0 is None:
        c0 = x.new_zeros(count, x.shape[1], module.hidden_size)
    return h0.detach(), (c0.detach() if c0 is not None else None)


def _as_time_major(module: nn.RNNBase, tensor: Tensor, unbatched: bool) -> Tensor:
    if unbatched:
        return tensor.unsqueeze(1)
    return tensor.transpose(0, 1) if module.batch_first else tensor


def _unbatch_state(state: Tensor | None, unbatched: bool) -> Tensor | None:
    return state.unsqueeze(1) if state is not None and unbatched else state


def _require_tensor(module: nn.RNNBase, input: object) -> None:
    if not isinstance(input, Tensor):
        raise UnsupportedError(
            f"the per-step signal of {type(module).__name__} needs a padded tensor input, not "
            f"{type(input).__name__} (a PackedSequence is not replayed)"
        )


@dataclass
class Replay:
    """The top layer of a replayed recurrent module: its states per direction, with a graph."""

    directions: list[Direction]
    gates: Tensor | None  # every memory-gate activation of every layer, flattened (None: not gated)


def replay(module: nn.RNNBase, input: Tensor, hx: object = None) -> Replay:
    """Run ``module``'s recurrence step by step on ``input`` (as the module would be called).

    The top layer's states are built with a graph that starts at its initial state (the weights
    and the input are constants), so gradients can be taken with respect to each of them.

    Raises:
        UnsupportedError: for a ``PackedSequence`` input.

    Example:
        >>> rnn = nn.GRU(3, 4, num_layers=2, batch_first=True)
        >>> x = torch.randn(2, 5, 3)
        >>> run = replay(rnn, x)
        >>> out, _ = rnn(x)
        >>> torch.allclose(torch.stack(run.directions[0].states, 1), out, atol=1e-6)
        True
    """
    _require_tensor(module, input)
    unbatched = input.dim() == 2
    x = _as_time_major(module, input.detach(), unbatched)
    h0, c0 = _initial_state(module, x, _unbatched_hx(hx, unbatched))
    mode, sides = module.mode, 2 if module.bidirectional else 1
    gates: list[Tensor] = []
    directions: list[Direction] = []
    for layer in range(module.num_layers):
        top = layer == module.num_layers - 1
        directions = []
        with torch.set_grad_enabled(top):
            for side in range(sides):
                k = layer * sides + side
                h = h0[k].clone().requires_grad_(top)
                c = c0[k] if c0 is not None else None
                directions.append(_run(mode, x, h, c, _weights(module, layer, side), bool(side), gates))
        if not top:
            x = torch.cat([torch.stack(d.states) for d in directions], dim=-1)
    flat = torch.cat([g.reshape(-1) for g in gates]) if gates else None
    return Replay(directions, flat)


def bptt_squared_norms(
    module: nn.RNNBase,
    input: Tensor,
    hx: object,
    grad_output: Tensor | None,
    grad_h: Tensor | None = None,
    grad_c: Tensor | None = None,
    output: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Per position, the squared norm of the total gradient w.r.t. the top layer's hidden state.

    Args:
        module: the ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (its current weights are used: call
            this before the optimizer changes them).
        input, hx: the arguments the module was called with.
        grad_output: gradient of the loss w.r.t. the module's output sequence (None: zero).
        grad_h, grad_c: gradients w.r.t. ``h_n`` (and an LSTM's ``c_n``), or None.
        output: the output sequence the module returned, if at hand: the top layer's states are
            read from it instead of computed again (when no dropout between layers changed it).

    Returns:
        ``(squared_norms, gate_stats)``: float64 ``[T]`` in position order (summed over the batch
        and the directions), and :func:`gate_stats` of every layer's memory gates (None for a
        vanilla RNN).

    Example:
        >>> rnn = nn.RNN(2, 8, batch_first=True)
        >>> x = torch.randn(4, 30, 2)
        >>> out, h_n = rnn(x)
        >>> grad = torch.zeros_like(out)
        >>> grad[:, -1] = 1.0  # a loss on the last output only
        >>> norms, _ = bptt_squared_norms(rnn, x, None, grad)
        >>> bool(norms[0] < 1e-3 * norms[-1])  # the signal has faded by the first step
        True
    """
    _require_tensor(module, input)
    with torch._C.DisableTorchFunction(), torch.no_grad():  # invisible to the checkup's tracer
        return _bptt(module, input, hx, (grad_output, grad_h, grad_c), output)


def _bptt(
    module: nn.RNNBase,
    input: Tensor,
    hx: object,
    grads: tuple[Tensor | None, Tensor | None, Tensor | None],
    output: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """Each layer's states by PyTorch's fused kernel (no graph), then the top layer's backward
    recurrence written out (:meth:`_Layer.backward`): no autograd graph of ``T`` steps is built."""
    unbatched = input.dim() == 2
    x = _as_time_major(module, input.detach(), unbatched)
    h0, c0 = _initial_state(module, x, _unbatched_hx(hx, unbatched))
    sides, top = 2 if module.bidirectional else 1, module.num_layers - 1
    g_out, g_h, g_c = grads
    g_out = _as_time_major(module, g_out, unbatched) if g_out is not None else None
    g_h, g_c = _unbatch_state(g_h, unbatched), _unbatch_state(g_c, unbatched)
    top_states = (
        _as_time_major(module, output.detach(), unbatched)
        if output is not None and _reusable(module)
        else None
    )
    norms = torch.zeros(len(x), dtype=torch.float64, device=input.device)
    gates: list[Tensor] = []
    for layer in range(module.num_layers):
        outputs = []
        for side in range(sides):
            k = layer * sides + side
            c = c0[k] if c0 is not None else None
            known = (
                _run_order(_side(top_states, side, sides), side)
                if layer == top and top_states is not None
                else None
            )
            run = _Layer(module.mode, _run_order(x, side), h0[k], c, _weights(module, layer, side), known)
            gates += [run.memory_gate] if run.memory_gate is not None else []
            outputs.append(_run_order(run.states, side))
            if layer == top and any(g is not None for g in grads):
                g = _run_order(_side(g_out, side, sides), side) if g_out is not None else None
                at_states = run.backward(g, _at(g_h, k), _at(g_c, k))
                norms += _run_order(step_squared_norms(at_states, 0), side)
        if layer < top:
            x = torch.cat(outputs, dim=-1)
    flat = torch.cat([g.reshape(-1) for g in gates]) if gates else None
    return norms, (gate_stats(flat) if flat is not None else None)


def _reusable(module: nn.RNNBase) -> bool:
    """Whether the module's output holds the top layer's states as the replay computes them: not
    when dropout between layers changed the top layer's input (the replay runs without it)."""
    return not (module.num_layers > 1 and module.dropout > 0 and module.training)


def _side(tensor: Tensor, side: int, sides: int) -> Tensor:
    """One direction's half of a bidirectional layer's output (the whole output of a one-way layer)."""
    if sides == 1:
        return tensor
    size = tensor.shape[-1] // 2
    return tensor[..., side * size : (side + 1) * size]


def _run_order(tensor: Tensor, side: int) -> Tensor:
    """A time-major tensor in the order its direction runs (the reverse direction: flipped)."""
    return tensor.flip(0) if side else tensor


def _at(state: Tensor | None, k: int) -> Tensor | None:
    return state[k] if state is not None else None


def _unbatched_hx(hx: object, unbatched: bool) -> object:
    if isinstance(hx, (tuple, list)):
        return tuple(_unbatch_state(s, unbatched) for s in hx)
    return _unbatch_state(hx, unbatched) if isinstance(hx, Tensor) else hx


class _Layer:
    """One direction of one layer: its states by PyTorch's fused kernel (or as given), then the
    factors of every step at once, for the backward recurrence of :meth:`backward`.

    Each step's state is known after the fused pass, so the gates need no loop: with ``H_prev``
    the states shifted by one, ``pre = x W_ih^T + b_ih + H_prev W_hh^T + b_hh`` for all steps in
    two products. The LSTM's cell state ``c_t = f_t c_{t-1} + i_t g_t`` is a loop of one
    element-wise op per step.
    """

    def __init__(self, mode: str, seq: Tensor, h0: Tensor, c0: Tensor | None, w: _Weights,
                 states: Tensor | None = None) -> None:  # fmt: skip
        self.mode, self.w = mode, w
        self.states = states if states is not None else _fused_states(mode, seq, h0, c0, w)
        previous = torch.cat([h0.unsqueeze(0), self.states[:-1]])
        pre_x, pre_h = F.linear(seq, w.w_ih, w.b_ih), F.linear(previous, w.w_hh, w.b_hh)
        self.memory_gate: Tensor | None = None
        if mode == "LSTM":
            assert c0 is not None
            self._lstm_factors(pre_x.add_(pre_h), c0)
        elif mode == "GRU":
            self._gru_factors(pre_x, pre_h, previous)
        else:
            h = self.states
            self.factor = 1 - h * h if mode == "RNN_TANH" else (h > 0).to(h.dtype)

    def _lstm_factors(self, pre: Tensor, c0: Tensor) -> None:
        """The factors of each step: d pre / d c for the input, forget and cell gates, d pre / d m
        for the output gate (``m_t = o_t tanh(c_t)``, before any projection), d c / d m."""
        size = pre.shape[-1] // 4
        pre[..., 2 * size : 3 * size].mul_(2)
        i, f, g, o = pre.sigmoid_().chunk(4, -1)  # the gates, activated (g: by _tanh_from_sigmoid)
        _tanh_from_sigmoid(g)
        cells = torch.empty((len(pre) + 1, *c0.shape), dtype=pre.dtype, device=pre.device)
        cells[0] = c0
        for t in range(len(pre)):
            torch.addcmul(f[t] * cells[t], i[t], g[t], out=cells[t + 1])
        tanh_c = _tanh_from_sigmoid(cells[1:].mul(2).sigmoid_())
        self.memory_gate = self.forget = f
        self.to_cell = o * (1 - tanh_c * tanh_c)
        self.factor = torch.empty_like(pre)
        d_i, d_f, d_g, d_o = self.factor.chunk(4, -1)
        torch.mul(g, i * (1 - i), out=d_i)
        torch.mul(cells[:-1], f * (1 - f), out=d_f)
        torch.mul(i, 1 - g * g, out=d_g)
        torch.mul(tanh_c, o * (1 - o), out=d_o)

    def _gru_factors(self, pre_x: Tensor, pre_h: Tensor, previous: Tensor) -> None:
        xr, xz, xn = pre_x.chunk(3, -1)
        hr, hz, hn = pre_h.chunk(3, -1)
        r, z = (xr + hr).sigmoid_(), (xz + hz).sigmoid_()
        n = _tanh_from_sigmoid(xn.addcmul_(r, hn).mul_(2).sigmoid_())
        self.memory_gate = self.keep = z
        to_n = (1 - z) * (1 - n * n)  # d h_t / d (the pre-activation of n)
        self.factor = torch.cat([to_n * hn * r * (1 - r), (previous - n) * z * (1 - z), to_n * r], -1)

    def backward(self, g_out: Tensor | None, g_h: Tensor | None, g_c: Tensor | None) -> Tensor:
        """The total gradient at each state (in run order), given those reaching ``out``, the
        final ``h`` and (LSTM) the final ``c``: ``dh_t = g_t + dh_{t+1} d h_{t+1} / d h_t``."""
        steps = len(self.states)
        grads = torch.empty_like(self.states)
        carry = torch.zeros_like(self.states[0])
        carry_c = g_c.clone() if g_c is not None else None
        if self.mode == "LSTM" and carry_c is None:
            carry_c = torch.zeros_like(self.to_cell[0])
        for t in range(steps - 1, -1, -1):
            dh = torch.add(carry, g_out[t], out=grads[t]) if g_out is not None else grads[t].copy_(carry)
            if g_h is not None and t == steps - 1:
                dh.add_(g_h)
            carry, carry_c = self._back_step(t, dh, carry_c)
        return grads

    def _back_step(self, t: int, dh: Tensor, carry_c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One step back: the gradient reaching ``h_{t-1}`` (and ``c_{t-1}``) through step ``t``."""
        w = self.w
        if self.mode == "LSTM":
            assert carry_c is not None
            dm = dh @ w.w_hr if w.w_hr is not None else dh
            dc = torch.addcmul(carry_c, dm, self.to_cell[t])
            d_pre = torch.cat([dc, dc, dc, dm], -1).mul_(self.factor[t])
            return d_pre @ w.w_hh, dc.mul_(self.forget[t])
        if self.mode == "GRU":
            d_pre = torch.cat([dh, dh, dh], -1).mul_(self.factor[t])
            return torch.addmm(dh * self.keep[t], d_pre, w.w_hh), None
        return (dh * self.factor[t]) @ w.w_hh, None


def _tanh_from_sigmoid(sigmoid_of_twice: Tensor) -> Tensor:
    """``tanh(x) = 2 sigmoid(2x) - 1``, in place on ``sigmoid(2x)``: on CPU ``torch.tanh`` of the
    replay's 400k values costs 6x ``torch.sigmoid`` (0.5 ms against 0.09 ms on this project's
    machine); the identity is exact to float32 rounding (1e-7 absolute).

    Example:
        >>> x = torch.linspace(-5, 5, 11)
        >>> torch.allclose(_tanh_from_sigmoid(torch.sigmoid(2 * x)), torch.tanh(x), rtol=0, atol=3e-7)
        True
    """
    return sigmoid_of_twice.mul_(2).sub_(1)


def _fused_states(mode: str, seq: Tensor, h0: Tensor, c0: Tensor | None, w: _Weights) -> Tensor:
    """The states of one direction of one layer, ``[T, batch, size]``, by PyTorch's own kernel."""
    params = [w.w_ih, w.w_hh] + ([w.b_ih, w.b_hh] if w.b_ih is not None and w.b_hh is not None else [])
    has_bias = w.b_ih is not None
    if mode == "LSTM":
        params += [w.w_hr] if w.w_hr is not None else []
        assert c0 is not None
        hx = (h0.unsqueeze(0), c0.unsqueeze(0))
        return torch._VF.lstm(seq, hx, params, has_bias, 1, 0.0, False, False, False)[0]
    kernel = {"GRU": torch._VF.gru, "RNN_TANH": torch._VF.rnn_tanh, "RNN_RELU": torch._VF.rnn_relu}[mode]
    return kernel(seq, h0.unsqueeze(0), params, has_bias, 1, 0.0, False, False, False)[0]


# -- profiles (NumPy): horizon, decay, reach -------------------------------------------------


def span(profile: Sequence[float] | np.ndarray) -> np.ndarray:
    """The recorded part of a profile: trailing NaNs (steps a shorter sequence did not have) cut.

    Example:
        >>> span([1.0, 0.5, np.nan]).tolist()
        [1.0, 0.5]
    """
    values = np.asarray(profile, dtype=np.float64).ravel()
    finite = np.flatnonzero(~np.isnan(values))
    return values[: finite[-1] + 1] if len(finite) else values[:0]


def memory_horizon(profile: Sequence[float] | np.ndarray, fraction: float = HORIZON_FRACTION) -> int:
    """How many steps, counting back from the last one, the signal stays at or above
    ``fraction`` times its value at the last step (``profile[0]``).

    Args:
        profile: the per-step signal by steps back (0 = the last step), NaN-padded at the end.
        fraction: the threshold relative to the last step (:data:`HORIZON_FRACTION`).

    Returns:
        The number of steps before the first one that falls below; the whole recorded span when
        none does; 0 when the last step has no signal.

    Example:
        >>> memory_horizon([1.0, 0.1, 0.01, 1e-4, 1e-5])
        3
        >>> memory_horizon([1.0, 0.5, 0.2])
        3
    """
    values = span(profile)
    if len(values) == 0 or not values[0] > 0:
        return 0
    below = np.flatnonzero(values[1:] < fraction * values[0])
    return int(below[0] + 1) if len(below) else len(values)


def decay_per_step(profile: Sequence[float] | np.ndarray) -> float:
    """Factor by which the signal changes per step back: a geometric least-squares fit of
    ``log(signal)`` against steps back, over the steps with signal (finite and above zero).

    Returns NaN with fewer than two such steps. Below 1 the signal vanishes going back in time,
    above 1 it explodes.

    Example:
        >>> round(decay_per_step([8.0, 4.0, 2.0, 1.0, 0.0]), 3)
        0.5
    """
    values = span(profile)
    steps = np.arange(len(values))
    usable = np.isfinite(values) & (values > 0)
    if usable.sum() < 2:
        return math.nan
    slope = np.polyfit(steps[usable], np.log(values[usable]), 1)[0]
    return float(np.exp(slope))


def reach(profile: Sequence[float] | np.ndarray) -> float:
    """The signal at the first step of the sequence over the signal at the last step.

    Example:
        >>> reach([2.0, 1.0, 0.002])
        0.001
    """
    values = span(profile)
    if len(values) == 0 or not values[0] > 0:
        return math.nan
    return float(values[-1] / values[0])


def median_profile(rows: np.ndarray) -> np.ndarray:
    """Per step back, the median over recorded rows (``[n_rows, steps]``) of the finite values.

    Example:
        >>> median_profile(np.array([[1.0, 0.5, np.nan], [3.0, 0.1, 0.01]])).tolist()
        [2.0, 0.3, 0.01]
    """
    rows = np.where(np.isfinite(rows), rows, np.nan)
    if rows.size == 0:
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(rows, axis=0)


__all__ = [
    "GATE_FIELDS",
    "Direction",
    "HORIZON_FRACTION",
    "Replay",
    "bptt_squared_norms",
    "cell_memory_gate",
    "decay_per_step",
    "gate_stats",
    "median_profile",
    "memory_horizon",
    "reach",
    "recurrent_mode",
    "replay",
    "span",
    "step_squared_norms",
]
