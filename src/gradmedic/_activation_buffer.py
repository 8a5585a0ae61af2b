"""The monitor's copies of layer outputs on an accelerator, their statistics taken together.

On a GPU each statistic of each layer's output is a kernel launch, and launches, not arithmetic,
are what a small step pays for. On the steps that record activation statistics, the monitor's
forward hooks therefore copy each output (one kernel: a later in-place operation, such as an
``nn.ReLU(inplace=True)`` after a Linear, cannot change the copy) into an
:class:`ActivationBuffer`; the copies of one shape, dtype and kind of activation are then stacked
and measured together by :func:`gradmedic.stats.device_activation_rows`, a handful of kernels
per group instead of five per layer. Only outputs below :data:`COPY_BELOW_BYTES` are copied: a
larger one is measured in the hook, since copying and stacking it would read it twice more
(on an H100 at batch x64, where the GPU and not the launches set the pace, copying every output
cost the CNN 1.19x against 1.13x for every statistic on every step). The copies held are bounded by
:data:`gradmedic._signal_buffer.DEVICE_HOLD_BYTES`: past that, the statistics of those held so
far are taken and the copies let go. On CPU the monitor does not use it (each output's
statistics are summed in host memory in the hook).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from gradmedic.stats import activation_kind
    >>> buffer = ActivationBuffer()
    >>> relu = activation_kind(nn.ReLU())
    >>> buffer.add(0, torch.tensor([[0.0, 2.0], [0.0, 4.0]]), relu)
    >>> buffer.add(3, torch.ones(2, 2), relu)
    >>> [(layer, [round(v, 3) for v in row.tolist()]) for layer, row in buffer.take()]
    [(0, [1.5, 1.658, nan, 0.5]), (3, [1.0, 0.0, nan, 0.0])]
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _signal_buffer, stats

#: Outputs smaller than this are copied and measured together; larger ones at once.
COPY_BELOW_BYTES = 4 << 20

#: What the outputs measured together share: shape, dtype, device, kind of activation.
_Group = tuple[torch.Size, torch.dtype, torch.device, stats.ActivationKind]


class ActivationBuffer:
    """Copies of layer outputs waiting for their statistics, grouped by shape, dtype and kind."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget every copy and every row (a new step starts)."""
        self._groups: dict[_Group, list[tuple[int, Tensor]]] = {}
        self._rows: list[tuple[int, Tensor]] = []
        self._bytes = 0

    def add(self, layer: int, output: Tensor, kind: stats.ActivationKind) -> None:
        """Keep a copy of ``output``, an output of ``layer`` whose activation is of ``kind``."""
        copy = output.detach().clone()
        self._groups.setdefault((copy.shape, copy.dtype, copy.device, kind), []).append((layer, copy))
        self._bytes += copy.numel() * copy.element_size()
        if self._bytes >= _signal_buffer.DEVICE_HOLD_BYTES:
            self._measure()

    def take(self) -> list[tuple[int, Tensor]]:
        """``(layer, row)`` for every output added this step (rows as in
        :func:`gradmedic.stats.activation_stats`); the buffer is empty afterwards."""
        self._measure()
        rows = self._rows
        self.clear()
        return rows

    def _measure(self) -> None:
        for (_, _, _, kind), members in self._groups.items():
            copies = [copy for _, copy in members]
            stacked = torch.stack(copies) if len(copies) > 1 else copies[0].unsqueeze(0)
            rows = stats.device_activation_rows(stacked, kind)
            self._rows.extend((layer, rows[k]) for k, (layer, _) in enumerate(members))
        self._groups, self._bytes = {}, 0
