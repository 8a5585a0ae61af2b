"""Remedy 6 (and its helpers): gated recurrent units, forget-gate bias, recurrent weights.

PyTorch stacks the gates of a recurrent layer in its weights and biases: LSTM ``(i, f, g, o)``,
GRU ``(r, z, n)``; the forget gate of an LSTM and the update gate ``z`` of a GRU decide how much
of the state (and of its gradient) survives one step.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential()
    >>> model.add_module("rnn", nn.RNN(3, 8, batch_first=True))
    >>> [c.action for c in swap_recurrent(model, to="gru")]
    ['RNN -> GRU (same inputs and outputs)']
    >>> out, h = model.rnn(torch.randn(2, 5, 3))
    >>> tuple(out.shape), tuple(h.shape)
    ((2, 5, 8), (1, 2, 8))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import registry
from .._deprecation import module_getattr
from ..diagnosis.findings import Family
from ..errors import ConfigError
from .changes import Change, set_submodule

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
#: Index of the gate that keeps the state: LSTM forget gate, GRU update gate.
MEMORY_GATE = {"LSTM": 1, "GRU": 1}
ROOT_SKIP = "the model itself is an RNN and cannot replace itself: put it in a module, or build an LSTM/GRU"


class GatedRecurrent(nn.Module):
    """A drop-in for ``nn.RNN`` with an LSTM or GRU inside: same call, same ``(output, h_n)``.

    With an LSTM, a given ``h_0`` starts the hidden state and the cell state starts at zero.
    """

    def __init__(self, kind: str, rnn: nn.RNN) -> None:
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.kind = kind
        self.inner = cls(rnn.input_size, rnn.hidden_size, rnn.num_layers, bias=rnn.bias,
                         batch_first=rnn.batch_first, dropout=rnn.dropout,
                         bidirectional=rnn.bidirectional)  # fmt: skip

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.kind == "lstm":
            state = None if hx is None else (hx, torch.zeros_like(hx))
            output, (h, _) = self.inner(input, state)
            return output, h
        output, h = self.inner(input, hx)
        return output, h


def swap_recurrent(model: nn.Module, to: str = "lstm") -> list[Change]:
    """Replace each ``nn.RNN`` by an LSTM or GRU, and each ``nn.RNNCell`` by a ``nn.GRUCell``,
    keeping the caller's interface (an LSTM returns ``(h, c)``: the wrapper returns ``h``).

    A hand-written loop passes only ``h`` from step to step, so an ``LSTMCell`` would lose its cell
    state between calls: cells become GRU cells (the same interface as ``RNNCell``) either way.
    """
    if to not in ("lstm", "gru"):
        raise ConfigError(f"to={to!r}: choose 'lstm' or 'gru'")
    changes = []
    for name, module in list(model.named_modules()):
        if not name and type(module) in (nn.RNN, nn.RNNCell):
            changes.append(Change(Family.RECURRENT, name, ROOT_SKIP, skipped=True))
        elif type(module) is nn.RNN:
            new: nn.Module = GatedRecurrent("lstm", module) if to == "lstm" else _gru_like(module)
            _init_new(new)
            set_submodule(model, name, _like(new, module))
            changes.append(Change(Family.RECURRENT, name, f"RNN -> {to.upper()} (same inputs and outputs)"))
        elif type(module) is nn.RNNCell:
            cell = nn.GRUCell(module.input_size, module.hidden_size, bias=module.bias)
            _init_new(cell)
            set_submodule(model, name, _like(cell, module))
            note = " (an LSTMCell would lose its cell state in your loop)" if to == "lstm" else ""
            changes.append(Change(Family.RECURRENT, name, f"RNNCell -> GRUCell{note}"))
    if not changes:
        changes.append(Change(Family.RECURRENT, "", "no nn.RNN or nn.RNNCell to replace", skipped=True))
    return changes


def _like(new: nn.Module, old: nn.Module) -> nn.Module:
    """``new`` on the device, in the dtype and in the train/eval mode of ``old``."""
    return new.to(next(old.parameters())).train(old.training)


def _gru_like(rnn: nn.RNN) -> nn.GRU:
    return nn.GRU(rnn.input_size, rnn.hidden_size, rnn.num_layers, bias=rnn.bias, batch_first=rnn.batch_first,
                  dropout=rnn.dropout, bidirectional=rnn.bidirectional)  # fmt: skip


def _init_new(module: nn.Module) -> None:
    for inner in module.modules():
        if registry.is_recurrent(inner):
            init_recurrent("", inner, "orthogonal")


def _mode(module: nn.Module) -> str:
    if isinstance(module, nn.RNNBase):
        return module.mode
    return {nn.LSTMCell: "LSTM", nn.GRUCell: "GRU"}.get(type(module), "RNN_TANH")  # type: ignore[arg-type]


def _weights(module: nn.Module, prefix: str) -> list[tuple[str, Tensor]]:
    return [(n, p) for n, p in module.named_parameters(recurse=False) if n.startswith(prefix)]


@torch.no_grad()
def init_recurrent(name: str, module: nn.Module, scheme: str = "orthogonal") -> Change:
    """Input weights Xavier, recurrent weights orthogonal (or identity) per gate, biases zero;
    an LSTM's forget-gate bias 1."""
    if scheme not in ("orthogonal", "identity"):
        raise ConfigError(f"scheme={scheme!r}: choose 'orthogonal' or 'identity'")
    mode = _mode(module)
    gates = GATES[mode]
    for _, weight in _weights(module, "weight_ih"):
        for chunk in weight.chunk(gates, 0):
            nn.init.xavier_uniform_(chunk)
    for _, weight in _weights(module, "weight_hh"):
        for chunk in weight.chunk(gates, 0):
            nn.init.orthogonal_(chunk) if scheme == "orthogonal" else chunk.copy_(torch.eye(*chunk.shape))
    for _, bias in _weights(module, "bias"):
        bias.zero_()
    if mode == "LSTM":
        _set_memory_bias(module, lambda size: torch.ones(size))
    extra = ", forget-gate bias 1" if mode == "LSTM" else ""
    return Change(Family.INIT, name, f"recurrent weights {scheme}, input weights xavier{extra}")


def _set_memory_bias(module: nn.Module, values: object) -> None:
    """Put ``values(size)`` in the memory gate's bias of ``bias_ih*`` and zero it in ``bias_hh*``."""
    gates = GATES[_mode(module)]
    for pname, bias in _weights(module, "bias"):
        chunk = bias.chunk(gates, 0)[MEMORY_GATE[_mode(module)]]
        chunk.copy_(values(chunk.numel()) if pname.startswith("bias_ih") else torch.zeros(chunk.numel()))  # type: ignore[operator]


@torch.no_grad()
def set_forget_gate_bias(
    model: nn.Module, value: float | str = 1.0, max_len: int | None = None
) -> list[Change]:
    """Set the LSTM forget-gate (GRU update-gate) bias: a constant, or ``"chrono"`` (Tallec &
    Ollivier, 2018: ``log(U(1, max_len - 1))``, and the LSTM input gate its negative), so the
    state is kept over about ``max_len`` steps at the start of training.
    """
    if value == "chrono" and (max_len is None or max_len < 3):
        raise ConfigError("value='chrono' needs max_len=the longest dependency in steps (at least 3)")
    changes = []
    for name, module in model.named_modules():
        mode = _mode(module) if registry.is_recurrent(module) else ""
        if mode not in MEMORY_GATE:
            continue
        if value == "chrono":
            _chrono(module, mode, int(max_len or 0))
            changes.append(Change(Family.RECURRENT, name, f"chrono gate bias for {max_len} steps"))
        else:
            _set_memory_bias(module, lambda size, v=float(value): torch.full((size,), v))
            changes.append(
                Change(
                    Family.RECURRENT, name, f"{'forget' if mode == 'LSTM' else 'update'}-gate bias {value}"
                )
            )
    if not changes:
        changes.append(Change(Family.RECURRENT, "", "no LSTM or GRU: no gate bias to set", skipped=True))
    return changes


def _chrono(module: nn.RNNBase | nn.RNNCellBase, mode: str, max_len: int) -> None:
    def draw(size: int) -> Tensor:
        return torch.log(torch.empty(size).uniform_(1, max_len - 1))

    values = draw(module.hidden_size)
    _set_memory_bias(module, lambda size: values[:size])
    if mode == "LSTM":  # the input gate's total bias (bias_ih + bias_hh) is minus the forget gate's
        for _, bias in _weights(module, "bias_ih"):
            bias.chunk(4, 0)[0].copy_(-values[: bias.numel() // 4])
        for _, bias in _weights(module, "bias_hh"):
            bias.chunk(4, 0)[0].zero_()


@torch.no_grad()
def recurrent_weights(model: nn.Module, scheme: str = "orthogonal") -> list[Change]:
    """Re-initialise every recurrent layer: orthogonal (or identity) recurrent weights per gate."""
    changes = [init_recurrent(n, m, scheme) for n, m in model.named_modules() if registry.is_recurrent(m)]
    return changes or [Change(Family.INIT, "", "no recurrent layer to re-initialise", skipped=True)]


# Old names, kept for one release (see gradmedic._deprecation).
__getattr__ = module_getattr(
    __name__,
    {
        "forget_gate_bias": ("set_forget_gate_bias", lambda: set_forget_gate_bias),
    },
)
