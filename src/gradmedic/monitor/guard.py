"""The one check of an unrecorded step: is any gradient non-finite? Kept on the device.

On a step its schedules do not record, the monitor leaves the model without any hook and calls
:meth:`GradientGuard.check` once, when the step closes (``optimizer.step()`` or
``monitor.step()``): the norm of every gradient (one fused ``torch._foreach_norm`` on an
accelerator, BLAS norms on CPU), stacked into a row of a device buffer. Nothing is copied to
the host and the host never waits. Every ``fold_every`` rows the buffer is folded, on the
device, into one number per parameter: the first step at which its gradient norm was NaN or
infinite. :meth:`GradientGuard.first_non_finite` (called by
the monitor's flush, which synchronises anyway) reads that back: the earliest such step and the
parameters whose gradient went non-finite at it.

Example:
    >>> import torch
    >>> guard = GradientGuard()
    >>> guard.check(3, [torch.ones(2), torch.ones(3)])
    >>> guard.check(4, [torch.tensor([1.0, float("nan")]), None])
    >>> guard.check(5, [torch.tensor([float("inf")]), torch.ones(1)])
    >>> guard.first_non_finite()
    (4, [0])
    >>> guard.first_non_finite() is None  # read and cleared
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..stats import native_squared_norm

#: Rows kept on the device before they are folded into the first non-finite step per parameter.
FOLD_EVERY = 32

_NEVER = torch.iinfo(torch.int64).max


class GradientGuard:
    """Per parameter, the first step (since the last read) whose gradient norm was not finite."""

    def __init__(self, fold_every: int = FOLD_EVERY) -> None:
        self._fold_every = fold_every
        self._rows: list[Tensor] = []
        self._steps: list[int] = []
        self._first: Tensor | None = None  # int64 per parameter, _NEVER where none was seen
        self._indices: dict[tuple[tuple[int, ...], torch.device], Tensor] = {}

    def check(self, step: int, grads: Sequence[Tensor | None]) -> None:
        """Queue the gradient norms of ``step`` (``None`` where a parameter has no gradient)."""
        present = [_values(g) for g in grads if g is not None]
        if not present:
            return
        norms = _device_norms(present)
        if len(present) < len(grads):  # a full-width row: a parameter without gradient is finite
            where = tuple(i for i, g in enumerate(grads) if g is not None)
            index = self._indices.get((where, norms.device))
            if index is None:
                if len(self._indices) >= 64:  # gradients present in patterns that keep changing
                    self._indices.clear()
                index = self._indices[(where, norms.device)] = _on_device(list(where), norms.device)
            norms = norms.new_zeros(len(grads)).index_copy_(0, index, norms)
        if self._rows and (self._rows[0].shape != norms.shape or self._rows[0].device != norms.device):
            self._fold()  # the parameters changed (op layers found): fold what was queued first
        self._rows.append(norms)
        self._steps.append(step)
        if len(self._rows) >= self._fold_every:
            self._fold()

    def first_non_finite(
        self, width: int = 0, reduce: Callable[[Tensor], Tensor] | None = None
    ) -> tuple[int, list[int]] | None:
        """The earliest step with a non-finite gradient and the parameters (indices) at fault,
        or None; then start over. Reads one small tensor from the device (a synchronisation).

        ``reduce`` (with the number of parameters, ``width``) combines the per-parameter first
        steps with the other ranks' (their minimum: a collective, called even when this rank
        saw nothing), so that a non-finite gradient shard on one rank is reported by every rank.
        """
        self._fold()
        first, self._first = self._first, None
        if reduce is not None:
            first = reduce(first if first is not None else torch.full((width,), _NEVER, dtype=torch.int64))
        if first is None:
            return None
        steps = first.cpu().tolist()
        earliest = min(steps, default=_NEVER)
        if earliest == _NEVER:
            return None
        return earliest, [i for i, step in enumerate(steps) if step == earliest]

    def _fold(self) -> None:
        """Fold the queued rows into the first non-finite step per parameter, on their device."""
        if not self._rows:
            return
        rows, steps = torch.stack(self._rows), self._steps
        self._rows, self._steps = [], []
        at = _on_device(steps, rows.device)
        never = torch.full_like(at, _NEVER)
        first = torch.where(torch.isfinite(rows), never[:, None], at[:, None]).amin(dim=0)
        if self._first is not None and self._first.shape == first.shape:
            first = torch.minimum(self._first.to(first.device), first)
        elif self._first is not None:  # the width changed: keep the earlier verdict in front
            first = _merge(self._first, first)
        self._first = first


def _on_device(values: list[int], device: torch.device) -> Tensor:
    """``values`` as an int64 tensor on ``device``; to CUDA through pinned memory, without a host sync."""
    host = torch.tensor(values, dtype=torch.int64)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def _values(grad: Tensor) -> Tensor:
    """A gradient, or a sparse one's stored values (non-finite if any duplicate is: no coalescing)."""
    return grad._values() if grad.is_sparse else grad


def _device_norms(tensors: list[Tensor]) -> Tensor:
    """The L2 norm of each tensor (float32 at least, so a half-precision norm does not overflow),
    stacked on the first tensor's device. On CPU, float32/float64 norms by BLAS
    (:func:`~gradmedic.stats.native_squared_norm`; ``_foreach_norm`` is a loop of one-thread
    norms there). This read of every gradient is the whole cost of an unrecorded step."""
    device = tensors[0].device
    native = all(t.dtype in (torch.float32, torch.float64) for t in tensors)
    if native and all(t.is_cpu for t in tensors):
        return torch.stack([native_squared_norm(t) for t in tensors]).sqrt_()
    norms = torch._foreach_norm(tensors, 2, dtype=None if native else torch.float32)
    if all(n.device == device for n in norms):
        return torch.stack(norms)
    return torch.stack([n.to(device, non_blocking=True) for n in norms])


def _merge(old: Tensor, new: Tensor) -> Tensor:
    """Two verdicts of different widths (the parameters grew): the wider one, with the earlier
    verdict's columns folded in."""
    wide, narrow = (old, new) if old.numel() >= new.numel() else (new, old)
    merged = wide.clone()
    head = merged[: narrow.numel()]
    torch.minimum(head, narrow.to(merged.device), out=head)
    return merged
