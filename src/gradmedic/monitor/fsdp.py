"""Sharded models (FSDP2's ``fully_shard``): exact per-layer norms from the ranks' local shards.

Under ``fully_shard`` each parameter is a DTensor of which a rank holds one shard (rows of dim 0,
uneven when the size does not divide), and its ``.grad`` is a DTensor sharded the same way. A
norm over a whole parameter (or layer) is the square root of the sum, over the ranks, of each
rank's sum of squares over its shard. The monitor therefore computes, on each rank and on its
local shards only (``to_local()``: no full parameter is ever gathered), the sums of squares it
needs, and :class:`ShardSums` adds them up over the mesh in **one** ``all_reduce`` (SUM) per
recorded step, when the step closes:

* weight-gradient norms (per parameter and per layer): the squared norms of the gradients' shards;
* update ratios ``||w_after - w_before|| / ||w_before||``: the squared norms of the weights' and
  the updates' shards (both summed, then divided);
* the underflow fraction of mixed precision: the counts of tiny and non-zero gradient values.

The reduced values are the same on every rank; the backprop signal, activation statistics and
loss, measured on each rank's own batch, are then combined over the ranks as under DDP by
:mod:`gradmedic.monitor.distributed`. The non-finite check of unrecorded steps runs on each
rank's local shards; at a flush (a collective) the ranks take the minimum, per parameter, of the
first step at which it went non-finite, so a NaN in one rank's shard is reported by all.

The ranks must record the same steps (the default schedules do; a schedule function must not
depend on the rank): every rank joins the exchange of each recorded step.

Example:
    >>> import torch
    >>> sums = ShardSums(group=None)  # no process group: the sums are the local ones
    >>> seen = []
    >>> sums.queue(seen.append, torch.tensor([9.0, 16.0]))
    >>> sums.exchange()
    >>> seen[0].tolist()
    [9.0, 16.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .distributed import is_dtensor, is_sharded, refuse_sharded


def local(tensor: Tensor) -> Tensor:
    """The shard of ``tensor`` held by this rank (``tensor`` itself when it is not a DTensor).

    Example:
        >>> local(torch.ones(2)).tolist()
        [1.0, 1.0]
    """
    return tensor.to_local() if is_dtensor(tensor) else tensor  # type: ignore[attr-defined]


def local_grads(params: Sequence[Tensor]) -> list[Tensor | None]:
    """Each parameter's gradient as this rank holds it (its local shard), ``None`` where there is none.

    Example:
        >>> p = torch.ones(2, requires_grad=True)
        >>> p.sum().backward()
        >>> [g.tolist() for g in local_grads([p])]
        [[1.0, 1.0]]
    """
    return [None if p.grad is None else local(p.grad) for p in params]


def local_params(params: Sequence[Tensor]) -> list[Tensor]:
    """Each parameter's local shard, detached (the optimizer updates it in place).

    Example:
        >>> local_params([torch.ones(1, requires_grad=True)])[0].requires_grad
        False
    """
    return [local(p.detach()) for p in params]


class ShardSums:
    """Sums over local shards, queued while a step runs and added up over the mesh when it closes.

    Args:
        group: the process group of the mesh the parameters are sharded on (``None``: no
            reduction, the local sums are the totals, e.g. one process).
        device: where the exchanged buffer lives (the parameters' device: gloo on CPU, NCCL on a GPU).
    """

    def __init__(self, group: Any, device: torch.device | None = None) -> None:
        self.group = group
        self.device = device
        self._queued: list[tuple[Callable[..., None], list[Tensor]]] = []

    def queue(self, then: Callable[..., None], *sums: Tensor) -> None:
        """Call ``then(*totals)`` at the next :meth:`exchange`, with ``sums`` summed over the ranks."""
        self._queued.append((then, list(sums)))

    def exchange(self) -> None:
        """One ``all_reduce`` (SUM) of everything queued since the last exchange, then the callbacks.

        A collective when the group has several ranks: every rank calls it on the same steps.
        """
        queued, self._queued = self._queued, []
        if not queued:
            return
        parts = [t.reshape(-1).double() for _, sums in queued for t in sums]
        flat = torch.cat([p.to(self.device) if self.device is not None else p for p in parts])
        if self.group is not None:
            torch.distributed.all_reduce(flat, group=self.group)
        offset = 0
        for then, sums in queued:
            totals = []
            for t in sums:
                totals.append(flat[offset : offset + t.numel()].view(t.shape).to(t.device))
                offset += t.numel()
            then(*totals)

    def min_over_ranks(self, values: Tensor) -> Tensor:
        """``values`` (integers) replaced by their minimum over the ranks, elementwise: a collective."""
        if self.group is None:
            return values
        here = values.to(self.device) if self.device is not None else values
        torch.distributed.all_reduce(here, op=torch.distributed.ReduceOp.MIN, group=self.group)
        return here


def shard_sums(model: nn.Module) -> ShardSums | None:
    """The :class:`ShardSums` of a model sharded by ``fully_shard``, ``None`` for a model that is not.

    Raises:
        UnsupportedError: for FSDP1 and sharding layouts gradmedic cannot measure exactly
            (see :func:`~gradmedic.monitor.distributed.refuse_sharded`).

    Example:
        >>> shard_sums(nn.Linear(2, 2)) is None
        True
    """
    refuse_sharded(model)
    if not is_sharded(model):
        return None
    first = next(iter(model.parameters()))
    mesh = first.device_mesh  # type: ignore[attr-defined]
    group = mesh.get_group() if mesh.size() > 1 else None
    return ShardSums(group, local(first).device)


__all__ = ["ShardSums", "local", "local_grads", "local_params", "shard_sums"]
