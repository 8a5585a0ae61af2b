"""The training monitor: hooks on a model (and optimizer) that fill a :class:`History`.

A package split by job; :class:`Monitor` (in :mod:`.core`) is the facade users build with :func:`watch`.

Per observed layer and per step selected by its schedule, the monitor records the backprop
signal (the gradient of the loss with respect to the layer's output), the weight-gradient
norms, activation statistics, the update-to-weight ratio and the loss. Values stay on the
model's device until a flush (every ``flush_every`` steps, or when the history is read): no
host copy and no synchronisation happen on the other steps.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import gradmedic
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> with gradmedic.watch(model, opt) as monitor:
    ...     for _ in range(3):
    ...         opt.zero_grad()
    ...         loss = model(torch.randn(16, 4)).pow(2).mean()
    ...         loss.backward()
    ...         monitor.step(loss)
    ...         opt.step()
    >>> monitor.history.array("signal_norm")[1].shape
    (3, 3)
"""

from __future__ import annotations

from ..history import FORWARD_METRICS
from .core import Monitor, watch
from .options import ALL_STATS, DEFAULT_OPTIONS

__all__ = ["ALL_STATS", "DEFAULT_OPTIONS", "FORWARD_METRICS", "Monitor", "watch"]
