"""Per-layer profiles: one robust number per layer, read from a History.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import gradmedic
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
    >>> with gradmedic.watch(model) as monitor:
    ...     model(torch.randn(8, 4)).sum().backward()
    ...     monitor.step()
    >>> profile = layer_profile(monitor.history, "signal_rms")
    >>> profile.names
    ['0', '2']
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .history import History
from .layers import LayerInfo


@dataclass(frozen=True)
class Profile:
    """Layers in forward order and one value each (NaN where never observed)."""

    layers: list[LayerInfo]
    values: np.ndarray

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def observed(self) -> Profile:
        """The same profile without the layers that have no finite value."""
        keep = np.isfinite(self.values)
        return Profile([layer for layer, k in zip(self.layers, keep) if k], self.values[keep])


def layer_profile(history: History, metric: str, last: int = 20, kind: str | None = "param") -> Profile:
    """Median of ``metric`` over its last ``last`` recorded rows, per layer, in forward order.

    Args:
        history: the record to read.
        metric: a per-layer metric (``signal_rms``, ``weight_grad_norm``, ``act_saturated``...).
        last: how many recent rows to summarise (the median resists one noisy batch).
        kind: keep only layers of this kind (``"param"``, ``"activation"``), or all with None.
    """
    order = [i for i in history.forward_order() if kind is None or history.layers[i].kind == kind]
    layers = [history.layers[i] for i in order]
    if metric not in history.metrics:
        return Profile(layers, np.full(len(layers), np.nan))
    rows = history.array(metric)[1][-last:, order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected
        values = np.nanmedian(rows, axis=0) if len(rows) else np.full(len(order), np.nan)
    return Profile(layers, values)
