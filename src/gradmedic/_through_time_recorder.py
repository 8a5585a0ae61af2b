"""The monitor's bookkeeping for recurrent layers: per-step signal and gate statistics.

A :class:`ThroughTimeRecorder` is created by the :class:`~gradmedic.monitor.Monitor` only when the model
has recurrent layers, and its forward hook is registered on those layers only, so other models
pay nothing. On the steps its own schedule selects (the monitor's ``through_time_every``, every 200 steps by
default: the replay below costs about one more training step of the layer) it:

* for an ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` call, keeps the input and initial state and the
  gradients that reach ``out``, ``h_n`` and ``c_n``; at the end of the backward pass it replays
  the recurrence (:func:`gradmedic.recurrent_stats.bptt_squared_norms`) to get the gradient at
  every hidden state of the top layer, and the memory-gate statistics of every layer;
* for a cell, counts its calls (call ``k`` of a forward pass is step ``k``), keeps the squared
  norm of the gradient that reaches the ``h`` of each call, and the gate statistics of each call;
* likewise for an op layer (:mod:`gradmedic.op_layers`) called several times in a forward pass:
  the gradient at the output of each call.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import gradmedic
    >>> model = nn.GRU(2, 4, batch_first=True)
    >>> with gradmedic.watch(model) as monitor:
    ...     out, _ = model(torch.randn(3, 7, 2))
    ...     out[:, -1].sum().backward()
    ...     monitor.step()
    >>> monitor.history.time_rows("")[1].shape
    (1, 7)
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from . import stats
from .history import MAX_TIME_STEPS
from .recurrent_stats import GATE_FIELDS, bptt_squared_norms, cell_memory_gate, gate_stats


@dataclass
class _Call:
    """One call of an ``nn.RNN``-family layer, waiting for the gradients of its outputs."""

    module: nn.RNNBase
    input: Tensor
    hx: object
    versions: tuple[int, ...]
    output: Tensor  #: the output sequence, detached (no cycle through its node): the top layer's states
    output_version: int
    grads: list[Tensor | None] = field(default_factory=lambda: [None, None, None])  # out, h_n, c_n


def _versions(module: nn.Module, input: Tensor) -> tuple[int, ...]:
    """Version counters of the weights and the input: they change with every in-place update."""
    return (*(p._version for p in module.parameters()), input._version)


def _keep_grad(call: _Call, slot: int, output_nr: int, grad_outputs: tuple[Tensor | None, ...]) -> None:
    grad = grad_outputs[output_nr]
    if grad is not None:
        kept = call.grads[slot]
        call.grads[slot] = grad if kept is None else kept + grad


def _sum_aligned(parts: list[Tensor]) -> Tensor:
    """Sum profiles indexed by steps back (aligned at the last step) of different lengths."""
    total = torch.zeros(max(len(p) for p in parts), dtype=torch.float64, device=parts[0].device)
    for part in parts:
        total[: len(part)] += part
    return total


class ThroughTimeRecorder:
    """Per-step signal and gate statistics of the recurrent layers of one monitor.

    Args:
        layers: columns (in the monitor's layers) of the recurrent layers, in History order.
        n_layers: number of layers the monitor observes.
    """

    def __init__(self, layers: list[int], n_layers: int) -> None:
        self.layers = layers
        self._n_layers = n_layers
        self._warned = False
        self.reset()

    def reset(self) -> None:
        """Forget this step's calls (and every reference to the model they hold)."""
        self._calls: dict[int, list[_Call]] = {}
        self._cell_steps: dict[int, int] = {}
        self._cell_sq: dict[int, dict[int, Tensor]] = {}
        self._gates: dict[int, list[Tensor]] = {}

    def on_forward(self, index: int, module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object],
                   output: object) -> None:  # fmt: skip
        """Hook body for one call of recurrent layer ``index`` (schedule and grad mode checked)."""
        input = args[0] if args else kwargs.get("input")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        with torch._C.DisableTorchFunction():  # invisible to torch function modes (the checkup's tracer)
            if isinstance(module, nn.RNNCellBase):
                self._cell_call(index, module, input, hx, output)
            elif isinstance(module, nn.RNNBase) and isinstance(input, Tensor) and isinstance(output, tuple):
                self._layer_call(index, module, input, hx, output)

    def _layer_call(self, index: int, module: nn.RNNBase, input: Tensor, hx: object, output: tuple) -> None:
        out, state = output
        h_n, c_n = state if isinstance(state, tuple) else (state, None)
        call = _Call(module, input, hx, _versions(module, input), out.detach(), out._version)
        hooked = False
        for slot, tensor in enumerate((out, h_n, c_n)):
            if isinstance(tensor, Tensor) and tensor.grad_fn is not None:
                tensor.grad_fn.register_prehook(functools.partial(_keep_grad, call, slot, tensor.output_nr))
                hooked = True
        if hooked:
            self._calls.setdefault(index, []).append(call)

    def _cell_call(self, index: int, module: nn.RNNCellBase, input: object, hx: object,
                   output: object) -> None:  # fmt: skip
        step = self._cell_steps.get(index, 0)
        self._cell_steps[index] = step + 1
        h = output[0] if isinstance(output, tuple) else output
        if isinstance(h, Tensor) and h.grad_fn is not None:
            h.grad_fn.register_prehook(functools.partial(self._on_cell_grad, index, step, h.output_nr))
        gate = cell_memory_gate(module, (input, hx))
        if gate is not None:
            self._gates.setdefault(index, []).append(gate_stats(gate))

    def op_call(self, index: int, output: Tensor) -> None:
        """One call of an op layer called several times in a forward pass (a recurrence written by
        hand, ``h = torch.tanh(x[:, t] @ W_x + h @ W_h)``): call ``k`` is step ``k``, as for a cell."""
        step = self._cell_steps.get(index, 0)
        self._cell_steps[index] = step + 1
        if output.grad_fn is not None:
            output.grad_fn.register_prehook(
                functools.partial(self._on_cell_grad, index, step, output.output_nr)
            )

    def _on_cell_grad(self, index: int, step: int, output_nr: int,
                      grad_outputs: tuple[Tensor | None, ...]) -> None:  # fmt: skip
        grad = grad_outputs[output_nr]
        if grad is not None:
            kept = self._cell_sq.setdefault(index, {})
            kept[step] = stats.squared_norm(grad) + kept.get(step, 0.0)

    def collect(self, unscale: Callable[[Tensor], Tensor]) -> dict[str, tuple[Tensor, np.ndarray]]:
        """This step's rows (``time_signal``, ``time_length``, ``gate_*``) and observed masks.

        ``unscale`` divides squared norms by a loss scale (mixed precision). The step's calls
        are forgotten afterwards.
        """
        with torch._C.DisableTorchFunction():
            profiles = self._layer_profiles()
            profiles.update(self._cell_profiles())
        rows: dict[str, tuple[Tensor, np.ndarray]] = {}
        if profiles:
            rows.update(self._time_rows({i: unscale(p) for i, p in profiles.items()}))
        if self._gates:
            rows.update(self._gate_rows())
        self.reset()
        return rows

    def _layer_profiles(self) -> dict[int, Tensor]:
        profiles = {}
        for index, calls in self._calls.items():
            parts = []
            for call in calls:
                if all(g is None for g in call.grads) or not self._unchanged(call):
                    continue
                output = call.output if call.output._version == call.output_version else None
                out, h_n, c_n = call.grads
                squared, gates = bptt_squared_norms(call.module, call.input, call.hx, out, h_n, c_n, output)
                parts.append(squared.flip(0))
                if gates is not None:
                    self._gates.setdefault(index, []).append(gates)
            if parts:
                profiles[index] = _sum_aligned(parts)
        return profiles

    def _unchanged(self, call: _Call) -> bool:
        if _versions(call.module, call.input) == call.versions:
            return True
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"gradmedic: the weights (or input) of {type(call.module).__name__} changed between the "
                "forward pass and monitor.step(), so its per-step signal was not recorded: call "
                "monitor.step() before optimizer.step(), or pass the optimizer to gradmedic.watch",
                RuntimeWarning,
                stacklevel=4,
            )
        return False

    def _cell_profiles(self) -> dict[int, Tensor]:
        profiles = {}
        for index, kept in self._cell_sq.items():
            zero = torch.zeros((), dtype=torch.float64, device=next(iter(kept.values())).device)
            calls = self._cell_steps.get(index, 0)
            profiles[index] = torch.stack([kept.get(k, zero) for k in range(calls)]).flip(0)
        return profiles

    def _time_rows(self, profiles: dict[int, Tensor]) -> dict[str, tuple[Tensor, np.ndarray]]:
        width = min(max(len(p) for p in profiles.values()), MAX_TIME_STEPS)
        device = next(iter(profiles.values())).device
        block = torch.full((len(self.layers), width), float("nan"), dtype=torch.float64, device=device)
        lengths = torch.full((self._n_layers,), float("nan"), dtype=torch.float64)
        for position, index in enumerate(self.layers):
            if index in profiles:
                shown = profiles[index][:width]
                block[position, : len(shown)] = shown.sqrt()
                lengths[index] = len(profiles[index])
        return {
            "time_signal": (block.reshape(-1), np.ones(block.numel(), dtype=bool)),
            "time_length": (lengths, lengths.isfinite().numpy()),
        }

    def _gate_rows(self) -> dict[str, tuple[Tensor, np.ndarray]]:
        device = next(iter(self._gates.values()))[0].device
        values = torch.full((self._n_layers, 2), float("nan"), device=device)
        observed = np.zeros(self._n_layers, dtype=bool)
        for index, calls in self._gates.items():
            values[index] = torch.stack(calls).mean(dim=0)
            observed[index] = True
        return {metric: (values[:, k], observed) for k, metric in enumerate(GATE_FIELDS)}
