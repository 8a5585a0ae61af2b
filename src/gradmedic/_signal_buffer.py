"""The monitor's gradients at layer outputs, held in the backward pass until their norms are taken together.

On a GPU, taking the norm of each layer's output gradient as it arrives costs one kernel launch
per layer, more than the norms themselves. The monitor's backward hooks therefore append each
gradient to a :class:`SignalBuffer`, and the norms are taken by one fused ``torch._foreach_norm``
call (:func:`gradmedic.stats.norms`) after the backward pass, together with the weight
gradients' norms. The memory held stays bounded: as soon as the gradients held reach
:func:`hold_bytes` (64 MiB), their norms are taken and the gradients let go. On CPU, where a
kernel costs no launch, each norm is taken at once, while the gradient is still in cache
(reading them all again after the backward pass measured 2-3 % slower on a 20-layer MLP).

Holding a gradient must not change what is measured: a backward function that writes into its
``grad_output`` in place (custom ``autograd.Function`` code can) would change a held gradient
before its norm is taken. Each gradient's version counter is kept and compared when the norm is
taken; a changed one is left out of that step (the layer is then not observed, rather than
observed wrongly), a warning says so, and the buffer takes each norm at once from then on.

Example:
    >>> import torch
    >>> buffer = SignalBuffer()  # on CPU: each norm at once
    >>> buffer.add(0, torch.full((4,), 2.0))
    >>> buffer.add(1, torch.ones(9))
    >>> taken = buffer.take(extra=[torch.tensor([3.0, 4.0])])
    >>> taken.layers, taken.numels, taken.norms.tolist()
    ([0, 1], [4, 9], [4.0, 3.0, 5.0])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from . import stats

#: Bytes of gradients held before their norms are taken on CPU: none, each is taken at once.
CPU_HOLD_BYTES = 0
#: The same on an accelerator, where each norm taken separately costs a kernel launch.
DEVICE_HOLD_BYTES = 64 << 20


def hold_bytes(device: torch.device) -> int:
    """How many bytes of gradients a buffer holds on ``device`` before it takes their norms.

    Example:
        >>> hold_bytes(torch.device("cpu")), hold_bytes(torch.device("cuda"))
        (0, 67108864)
    """
    return CPU_HOLD_BYTES if device.type == "cpu" else DEVICE_HOLD_BYTES


class SignalNorms(NamedTuple):
    """What :meth:`SignalBuffer.take` returns: per signal norm its layer and element count, and
    the norms (float64, on the gradients' device), the signal's first, then the extra ones'."""

    layers: list[int]
    numels: list[int]
    norms: Tensor | None


class SignalBuffer:
    """Gradients at layer outputs and the norms taken of them so far in this step."""

    def __init__(self) -> None:
        self.at_once = False
        self.clear()

    def clear(self) -> None:
        """Forget everything held and taken (a new step starts)."""
        self._layers: list[int] = []  # the layer and size of each norm taken, in order
        self._numels: list[int] = []
        self._norms: list[Tensor] = []  # 0-d (taken at once) or 1-D (taken together), in order
        self._held_layers: list[int] = []
        self._held: list[Tensor] = []
        self._versions: list[int] = []
        self._bytes = 0
        self._budget: int | None = None  # bytes; set by the step's first gradient (its device)

    def add(self, layer: int, grad: Tensor) -> None:
        """Hold ``grad``, the gradient at an output of ``layer``, or take its norm at once."""
        if self._budget is None:
            self._budget = hold_bytes(grad.device)
        if self._budget == 0 or self.at_once:
            if self._held:  # only on the step the buffer turned to taking norms at once
                self._take_held()
            self._layers.append(layer)
            self._numels.append(grad.numel())
            self._norms.append(stats.norm(grad))
            return
        self._held_layers.append(layer)
        self._held.append(grad)
        self._versions.append(grad._version)
        self._bytes += grad.numel() * grad.element_size()
        if self._bytes >= self._budget:
            self._take_held()

    def take(self, extra: Sequence[Tensor] = ()) -> SignalNorms:
        """The norms of this step's gradients followed by those of ``extra`` (with the gradients
        still held, in one fused call; norms ``None`` when there is none at all). The buffer is
        empty afterwards."""
        self._take_held(extra)
        layers, numels, norms = self._layers, self._numels, self._norms
        self.clear()
        if not norms:
            return SignalNorms(layers, numels, None)
        return SignalNorms(layers, numels, _concatenated(norms))

    def _take_held(self, extra: Sequence[Tensor] = ()) -> None:
        held, layers = self._held, self._held_layers
        versions = zip(held, self._versions)
        changed = {k for k, (grad, version) in enumerate(versions) if grad._version != version}
        if changed:
            self._warn_changed(len(changed))
            held = [grad for k, grad in enumerate(held) if k not in changed]
            layers = [layer for k, layer in enumerate(layers) if k not in changed]
        tensors = [*held, *extra]
        if tensors:
            self._norms.append(stats.norms(tensors))
            self._layers.extend(layers)
            self._numels.extend(grad.numel() for grad in held)
        self._held_layers, self._held, self._versions, self._bytes = [], [], [], 0

    def _warn_changed(self, count: int) -> None:
        self.at_once = True
        warnings.warn(
            f"{count} gradient(s) at layer outputs were changed in place by a backward function "
            "after gradmedic's hook saw them; those layers are left out of this step's backprop "
            "signal, and gradmedic now takes each norm as the gradient arrives (slower, exact)",
            RuntimeWarning,
            stacklevel=3,
        )


def _concatenated(norms: list[Tensor]) -> Tensor:
    """One float64 1-D tensor of ``norms`` (0-d and 1-D tensors, in order): each run of 0-d ones
    is stacked once."""
    if len(norms) == 1 and norms[0].dim() == 1:
        return norms[0]
    parts: list[Tensor] = []
    run: list[Tensor] = []
    for norm in norms:
        if norm.dim() == 0:
            run.append(norm)
            continue
        if run:
            parts.append(torch.stack(run).double())
            run = []
        parts.append(norm)
    if run:
        parts.append(torch.stack(run).double())
    return parts[0] if len(parts) == 1 else torch.cat(parts)
