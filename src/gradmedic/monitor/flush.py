"""Pending device values to the host: one copy per device, then the History, and the
non-finite events found on the way.

Example:
    >>> import numpy as np, torch
    >>> record = StepRecord(0)
    >>> record.put("loss", torch.tensor([0.5]), np.ones(1, dtype=bool))
    >>> host_copies([record])[0]["loss"].tolist()
    [0.5]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..history import BACKWARD_METRICS, FORWARD_METRICS, TIME_METRICS, History, NonFiniteEvent
from ..metrics import METRICS


@dataclass
class StepRecord:
    """Device-side values of one closed step, waiting for the next flush."""

    step: int
    values: dict[str, Tensor] = field(default_factory=dict)
    observed: dict[str, np.ndarray] = field(default_factory=dict)

    def put(self, metric: str, value: Tensor, observed: np.ndarray) -> None:
        self.values[metric] = value
        self.observed[metric] = observed


def flush_records(
    records: list[StepRecord], history: History
) -> tuple[list[tuple[str, int, np.ndarray]], list[NonFiniteEvent]]:
    """Move the records' values to the host, append them to ``history``; return rows and events."""
    host = host_copies(records)
    by_metric: dict[str, list[int]] = {}
    for k, record in enumerate(records):
        for metric in record.values:
            by_metric.setdefault(metric, []).append(k)
    written: list[tuple[str, int, np.ndarray]] = []
    events: list[NonFiniteEvent] = []
    for metric, group in by_metric.items():
        group.sort(key=lambda k: records[k].step)
        steps = [records[k].step for k in group]
        if metric in TIME_METRICS:  # rows as wide as each step's longest sequence: History fits them
            for k, step in zip(group, steps):
                row = host[k][metric]
                history.append(metric, [step], row[None])
                written.append((metric, step, row))
            continue
        stacked = np.stack([host[k][metric] for k in group])
        observed = np.stack([records[k].observed[metric] for k in group])
        values = np.where(observed, stacked, np.nan)
        history.append(metric, steps, values)
        events.extend(_find_non_finite(history, metric, steps, values, observed))
        written.extend(zip([metric] * len(steps), steps, values))
    for event in events:
        history.add_event(event)
    return written, events


def host_copies(records: list[StepRecord]) -> list[dict[str, np.ndarray]]:
    """Every value of ``records`` as a float64 NumPy row, in one copy per device.

    The values of a device are concatenated there and copied at once; from CUDA the copy is
    non-blocking (into pinned memory) and followed by the one synchronisation of the flush.
    """
    by_device: dict[torch.device, list[tuple[int, str, Tensor]]] = {}
    for k, record in enumerate(records):
        for metric, value in record.values.items():
            by_device.setdefault(value.device, []).append((k, metric, value))
    host: list[dict[str, np.ndarray]] = [{} for _ in records]
    with torch.no_grad():
        for device, items in by_device.items():
            flat = _to_host(torch.cat([value.reshape(-1) for _, _, value in items]).double(), device)
            offset = 0
            for k, metric, value in items:
                size = value.numel()
                host[k][metric] = flat[offset : offset + size]
                offset += size
    return host


def _to_host(values: Tensor, device: torch.device) -> np.ndarray:
    """A host copy of ``values``: non-blocking from CUDA, then one synchronisation."""
    if device.type == "cpu":
        return values.numpy()
    if device.type == "cuda":
        copy = values.to("cpu", non_blocking=True)  # lands in pinned memory
        torch.cuda.current_stream(device).synchronize()
        return copy.numpy()
    return values.cpu().numpy()


#: Metrics whose non-finite values are reported (see :mod:`gradmedic.metrics`).
_FINITE_CHECKED = frozenset(name for name, metric in METRICS.items() if metric.finite_checked)


def _find_non_finite(
    history: History, metric: str, steps: list[int], values: np.ndarray, observed: np.ndarray
) -> list[NonFiniteEvent]:
    """One event per step: the first column, in the direction values flow, that is NaN/Inf."""
    bad = observed & ~np.isfinite(values)
    if metric not in _FINITE_CHECKED or not bad.any():
        return []
    order = list(range(values.shape[1]))
    if metric in FORWARD_METRICS:
        order = history.forward_order()
    elif metric in BACKWARD_METRICS:
        order = history.forward_order()[::-1]  # the backward pass meets the last layer first
    elif metric == "param_grad_norm":
        order = backward_param_order(history)
    events = []
    for row, step in enumerate(steps):
        first = next((i for i in order if bad[row, i]), None)
        if first is not None:
            events.append(NonFiniteEvent(step, metric, _column_name(history, metric, first)))
    return events


def backward_param_order(history: History) -> list[int]:
    """The parameters' columns in the order the backward pass meets them: those of the layer
    nearest the output first."""
    rank = {layer: r for r, layer in enumerate(history.forward_order()[::-1])}
    owner = {name: rank[i] for i, layer in enumerate(history.layers) for name in layer.params}
    return sorted(range(len(history.params)), key=lambda column: owner.get(history.params[column], len(rank)))


def _column_name(history: History, metric: str, column: int) -> str:
    if metric == "loss":
        return "loss"
    if metric == "param_grad_norm":
        return history.params[column]
    return history.layers[column].name
