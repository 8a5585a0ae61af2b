"""Several processes (DDP): statistics computed on each rank, reduced at flush time, written by rank 0.

Each rank measures its own backprop signal, weight gradients and activations, as in a
single-process run. Every ``flush_every`` steps the ranks exchange one fixed-size buffer (an
``all_reduce`` on a gloo process group of gradmedic's own, launched asynchronously) and every
rank ends up with the same reduced History; only rank 0 writes the log file and the sinks.

How each statistic is combined over the ranks that recorded it on that step
(:data:`REDUCTIONS`):

* norms (``signal_norm``, ``signal_rms``, ``weight_grad_norm``, ``param_grad_norm``,
  ``update_ratio``) and ``act_std``: root-mean-square over ranks, ``sqrt(mean_r(x_r ** 2))``:
  the norm one rank sees on its local batch (weight gradients after DDP's all-reduce are equal
  on every rank, so they come out unchanged);
* fractions (``act_saturated``, ``act_dead``, ``grad_underflow``), ``act_mean`` and ``loss``:
  mean over ranks;
* non-finite values: a value that is NaN or Inf on any rank is NaN or Inf in the result (the
  flag is the max over ranks), so a non-finite event on one rank is reported;
* "not recorded" (a rank that recorded nothing for a layer or a step): left out of the mean; a
  value no rank recorded stays missing.

Metrics without a rule in :data:`REDUCTIONS` (added by later versions) are rank 0's own values.

A model sharded by FSDP2's ``fully_shard`` is reduced the same way, after its weight-gradient
norms, update ratios and underflow fractions were made exact (the same on every rank) by
summing the shards' sums of squares over the mesh (:mod:`gradmedic.monitor.fsdp`).

No deadlock when a rank skips a step: the exchange is driven by each rank's own step count, on
a process group separate from DDP's, and is asynchronous, so a rank that is one step behind
(it skipped ``optimizer.step()``) joins the exchange one step later while the others go on
training; a rank that recorded nothing on a step still sends its (empty) slots. At the end,
``Monitor.detach()`` (or ``flush()``) is a collective: every rank calls it, and the ranks keep
exchanging buffers until every rank has sent its last steps.

Example:
    >>> REDUCTIONS["signal_rms"], REDUCTIONS["act_dead"]
    ('rms', 'mean')
    >>> combine(np.array([3.0 ** 2 + 4.0 ** 2]), np.array([2.0]), "rms").round(4).tolist()
    [3.5355]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, UnsupportedError
from ..metrics import METRICS

#: How each metric is combined over ranks: ``"rms"`` (root-mean-square) or ``"mean"`` (read from
#: :data:`gradmedic.metrics.METRICS`, in its order: the order of the packed buffer on every rank).
REDUCTIONS: dict[str, str] = {name: m.reduction for name, m in METRICS.items() if m.reduction is not None}

#: A step's values as the monitor keeps them: step, metric -> values, metric -> observed mask.
StepValues = tuple[int, dict[str, Tensor], dict[str, np.ndarray]]


def refuse_sharded(model: nn.Module) -> None:
    """Raise :class:`UnsupportedError` if ``model`` is sharded in a way gradmedic cannot measure exactly.

    FSDP2 (``fully_shard``, parameters that are DTensors sharded on a 1-D device mesh) is
    supported: each rank's sums of squares over its shards are summed over the mesh (see
    :mod:`gradmedic.monitor.fsdp`). Refused: FSDP1 (``FullyShardedDataParallel``, which flattens
    the parameters, so their names and per-layer norms are lost), other DTensor layouts (tensor
    parallelism, HSDP's 2-D mesh), and a model with some parameters sharded and others not.

    Example:
        >>> refuse_sharded(nn.Linear(2, 2)) is None
        True
    """
    fsdp1 = next(
        (
            name
            for name, module in model.named_modules()
            if any(cls.__name__ == "FullyShardedDataParallel" for cls in type(module).__mro__)
        ),
        None,
    )
    if fsdp1 is not None:
        where = f"module {fsdp1!r} of {type(model).__name__}" if fsdp1 else type(model).__name__
        raise UnsupportedError(
            f"gradmedic does not support FSDP1 ({where} is a FullyShardedDataParallel): it flattens "
            "the parameters, so per-layer gradient norms are lost. Shard the model with FSDP2 "
            "instead (torch.distributed.fsdp.fully_shard on each block, then on the root) and watch "
            "it on every rank; DistributedDataParallel is supported too. Or run gradmedic.checkup "
            "on the unsharded model before wrapping it"
        )
    dtensors = [(name, p) for name, p in model.named_parameters() if is_dtensor(p)]
    if not dtensors:
        return
    plain = next((name for name, p in model.named_parameters() if not is_dtensor(p)), None)
    if plain is not None:
        raise UnsupportedError(
            f"parameter {plain!r} of {type(model).__name__} is not sharded while "
            f"{dtensors[0][0]!r} is: call fully_shard(model) on the root module too (after its "
            "blocks), so that every parameter is sharded, then watch the model"
        )
    mesh: Any = dtensors[0][1].device_mesh  # type: ignore[attr-defined]
    for name, param in dtensors:
        p: Any = param
        if p.device_mesh != mesh or p.device_mesh.ndim != 1 or not all(x.is_shard() for x in p.placements):
            raise UnsupportedError(
                f"parameter {name!r} is a DTensor placed {tuple(p.placements)} on a "
                f"{p.device_mesh.ndim}-D mesh: gradmedic measures FSDP2 (fully_shard) on one 1-D "
                "mesh only, where every parameter is sharded over all of its ranks. Watch a model "
                "sharded that way, or run gradmedic.checkup on the unsharded model"
            )


def is_dtensor(tensor: object) -> bool:
    """Whether ``tensor`` is a DTensor (by class name: no import of ``torch.distributed.tensor``).

    Example:
        >>> is_dtensor(torch.ones(1))
        False
    """
    return any(cls.__name__ == "DTensor" for cls in type(tensor).__mro__)


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is a DTensor (FSDP2's ``fully_shard``).

    Example:
        >>> is_sharded(nn.Linear(2, 2))
        False
    """
    return any(is_dtensor(p) for p in model.parameters())


def combine(sums: np.ndarray, counts: np.ndarray, how: str) -> np.ndarray:
    """Reduced values from summed contributions: RMS (``sums`` of squares) or mean; NaN where count is 0.

    Example:
        >>> combine(np.array([2.0, 0.0]), np.array([2.0, 0.0]), "mean").tolist()
        [1.0, nan]
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return np.sqrt(mean) if how == "rms" else mean


def wants_reduction(model: nn.Module, option: object) -> bool:
    """Whether a monitor should reduce over ranks, from the ``distributed`` option of ``watch()``.

    ``"auto"``: when ``model`` is a ``DistributedDataParallel`` or sharded by ``fully_shard``
    (FSDP2) and the process group has more than one rank. ``True``: always (the process group
    must be initialised). ``False``: never; refused for a sharded model, whose ranks must exchange
    their shards' sums (see :mod:`gradmedic.monitor.fsdp`).

    Example:
        >>> wants_reduction(nn.Linear(1, 1), "auto")
        False
    """
    if option is False:
        if is_sharded(model):
            raise ConfigError(
                f"distributed=False: {type(model).__name__} is sharded by fully_shard, so its "
                "statistics need every rank. Leave distributed at 'auto' (or True) and watch the "
                "model on every rank"
            )
        return False
    available = torch.distributed.is_available() and torch.distributed.is_initialized()
    if option is True:
        if not available:
            raise ConfigError(
                "distributed=True needs an initialised process group: call "
                "torch.distributed.init_process_group(...) on every rank before watch()"
            )
        return torch.distributed.get_world_size() > 1
    if option != "auto":
        raise ConfigError(f"distributed={option!r}: choose 'auto', True or False")
    ddp = isinstance(model, nn.parallel.DistributedDataParallel) or is_sharded(model)
    return ddp and available and torch.distributed.get_world_size() > 1


@dataclass
class _Launched:
    work: Any
    buffer: Tensor
    start: int


class Reducer:
    """Exchanges a monitor's pending steps over the ranks, one window of ``flush_every`` steps at a time.

    Creating one calls ``torch.distributed.new_group``, a collective: every rank must create it
    (every rank calls ``watch()``).

    Args:
        widths: the metrics to reduce and their number of columns.
        flush_every: steps per window (the buffer has this many slots).
    """

    def __init__(self, widths: dict[str, int], flush_every: int) -> None:
        dist = torch.distributed
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.group = dist.new_group(backend="gloo")
        self.window = flush_every
        self.metrics = [m for m in REDUCTIONS if m in widths]
        self.offsets: dict[str, tuple[int, int]] = {}
        width = 0
        for metric in self.metrics:
            self.offsets[metric] = (width, width + widths[metric])
            width += widths[metric]
        self.width = width
        self.start = 0  # first step of the next window
        self._launched: _Launched | None = None
        self._warned = False

    # -- driven by the monitor --------------------------------------------------------------

    def due(self, next_step: int) -> bool:
        """Whether the window is complete: its steps are closed, and so is the step after it.

        The step after it must be closed too, because a step's loss (given after
        ``optimizer.step()``) and its update ratio (without an optimizer) arrive one step late.
        """
        return next_step > self.start + self.window

    def launch(self, pending: Sequence[StepValues]) -> tuple[list[StepValues], list[StepValues]]:
        """Send the complete window (asynchronously); return (results ready now, steps still pending).

        The results are those of the previous window, if it has completed by now, and steps too
        old for any window (kept as this rank's own values).
        """
        ready = self._wait()
        end = self.start + self.window
        window = [r for r in pending if self.start <= r[0] < end]
        keep = [r for r in pending if r[0] >= end]
        ready += [r for r in pending if r[0] < self.start]
        window = self._own_metrics_apart(window, ready)
        buffer = self._pack(window, final=False)
        work = torch.distributed.all_reduce(buffer, group=self.group, async_op=True)
        self._launched = _Launched(work, buffer, self.start)
        self.start = end
        return ready, keep

    def poll(self) -> list[StepValues]:
        """Results of the window in flight if it has completed (never blocks)."""
        launched = self._launched
        if launched is None or not launched.work.is_completed():
            return []
        return self._wait()

    def finish(self, pending: Sequence[StepValues], next_step: int) -> list[StepValues]:
        """Collective: exchange every pending step, until every rank has sent its last one.

        Afterwards the next window starts at ``next_step``.
        """
        results = self._wait()
        results += [r for r in pending if r[0] < self.start]
        rest = [r for r in pending if r[0] >= self.start]
        while True:
            end = self.start + self.window
            window, rest = [r for r in rest if r[0] < end], [r for r in rest if r[0] >= end]
            window = self._own_metrics_apart(window, results)
            buffer = self._pack(window, final=not rest)
            torch.distributed.all_reduce(buffer, group=self.group)
            results += self._unpack(buffer, self.start)
            self.start = end
            if round(float(buffer[0])) >= self.world:
                break
        self.start = next_step
        return results

    def _own_metrics_apart(self, window: Sequence[StepValues], local: list[StepValues]) -> list[StepValues]:
        """The window's reduced metrics; the values of other metrics go to ``local`` as they are."""
        reduced = []
        for record in window:
            mine, other = split_metrics(record, self.metrics)
            reduced.append(mine)
            if other[1]:
                local.append(other)
        return reduced

    # -- the buffer -------------------------------------------------------------------------
    # [final flag, sum of window starts, ranks with data] + values (slots x width)
    # + counts (slots x width) + presence (slots x metrics); float64, summed over ranks.

    def _size(self) -> int:
        return 3 + self.window * (2 * self.width + len(self.metrics))

    def _pack(self, window: Sequence[StepValues], final: bool) -> Tensor:
        n, w, m = self.window, self.width, len(self.metrics)
        values, counts, present = np.zeros((n, w)), np.zeros((n, w)), np.zeros((n, m))
        for k, metric in enumerate(self.metrics):
            group = [r for r in window if metric in r[1]]
            if not group:
                continue
            lo, hi = self.offsets[metric]
            rows = torch.stack([r[1][metric].detach().reshape(-1) for r in group]).to("cpu", torch.float64)
            data = rows.numpy()
            for (step, _, observed), row in zip(group, data):
                slot = step - self.start
                seen = np.asarray(observed[metric], dtype=bool)
                part = row**2 if REDUCTIONS[metric] == "rms" else row
                values[slot, lo:hi] = np.where(seen, part, 0.0)
                counts[slot, lo:hi] = seen
                present[slot, k] = 1.0
        header = [float(final), float(self.start) if window else 0.0, 1.0 if window else 0.0]
        flat = np.concatenate([header, values.ravel(), counts.ravel(), present.ravel()])
        return torch.from_numpy(flat)

    def _unpack(self, buffer: Tensor, own_start: int) -> list[StepValues]:
        n, w, m = self.window, self.width, len(self.metrics)
        flat = buffer.numpy()
        if flat[2] == 0:
            return []
        start = round(flat[1] / flat[2])
        if start != own_start and not self._warned:
            self._warned = True
            warnings.warn(
                f"gradmedic: the ranks are out of step (this rank's window starts at step {own_start}, "
                f"the others' at {start}): a rank skipped optimizer.step(); statistics of neighbouring "
                "steps are combined",
                RuntimeWarning,
                stacklevel=2,
            )
        values = flat[3 : 3 + n * w].reshape(n, w)
        counts = flat[3 + n * w : 3 + 2 * n * w].reshape(n, w)
        present = flat[3 + 2 * n * w :].reshape(n, m)
        out: list[StepValues] = []
        for slot in range(n):
            if not present[slot].any():
                continue
            tensors: dict[str, Tensor] = {}
            observed: dict[str, np.ndarray] = {}
            for k, metric in enumerate(self.metrics):
                if present[slot, k] == 0:
                    continue
                lo, hi = self.offsets[metric]
                reduced = combine(values[slot, lo:hi], counts[slot, lo:hi], REDUCTIONS[metric])
                tensors[metric] = torch.from_numpy(reduced)
                observed[metric] = counts[slot, lo:hi] > 0
            out.append((start + slot, tensors, observed))
        return out

    def _wait(self) -> list[StepValues]:
        launched, self._launched = self._launched, None
        if launched is None:
            return []
        launched.work.wait()
        return self._unpack(launched.buffer, launched.start)


def split_metrics(record: StepValues, reduced: Sequence[str]) -> tuple[StepValues, StepValues]:
    """Split one step's values into the metrics that are reduced and the others.

    Example:
        >>> both, other = split_metrics((0, {"loss": torch.ones(1), "x": torch.ones(1)}, {}), ["loss"])
        >>> list(both[1]), list(other[1])
        (['loss'], ['x'])
    """
    step, values, observed = record
    mine = {k: v for k, v in values.items() if k in reduced}
    rest = {k: v for k, v in values.items() if k not in reduced}
    return (
        (step, mine, {k: observed[k] for k in mine if k in observed}),
        (step, rest, {k: observed[k] for k in rest if k in observed}),
    )


__all__ = [
    "REDUCTIONS",
    "Reducer",
    "combine",
    "is_dtensor",
    "is_sharded",
    "refuse_sharded",
    "split_metrics",
    "wants_reduction",
]
