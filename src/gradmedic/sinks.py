"""Sinks: where the monitor's numbers go at each flush (files, dashboards, trainer logs).

A *sink* is anything with ``write(step, scalars)`` and ``close()`` (the :class:`Sink`
protocol). The monitor writes its sinks at flush time (``watch(..., sinks=[...])``), so no value
is copied to the host on the other steps; in a distributed run only rank 0 writes.

A run is not logged column by column: :func:`summarize` turns the History rows of a flush into
a handful of summary series per step (:data:`SUMMARY_SERIES`), and adds per-layer series only
for a sink created with ``per_layer=True``:

==================== =======================================================================
series               meaning
==================== =======================================================================
``signal_first``     backprop signal (RMS of d loss / d output) at the first layer
``signal_last``      the same at the last layer (the one next to the loss)
``signal_ratio_min`` smallest ratio of a layer's signal to the last layer's (vanishing < 1e-3)
``signal_ratio_median`` median of those ratios
``dead_max``         largest dead fraction of a ReLU-family activation (sampled steps)
``saturated_max``    largest saturated fraction of a sigmoid/tanh-like activation (sampled)
``underflow_max``    largest fraction of a layer's gradient values below the smallest normal of
                     the low-precision dtype (mixed-precision runs only, sampled)
``loss``             the loss given to the monitor
``grad_norm``        total weight-gradient norm (all parameters)
==================== =======================================================================

Per-layer series are named ``"<metric>/<layer>"`` for ``signal_rms``, ``weight_grad_norm``,
``update_ratio``, ``act_saturated``, ``act_dead`` and ``grad_underflow``.

Sinks without dependencies: :class:`CSVSink` (one ``step,series,value`` row per number) and
:class:`JSONLinesSink` (one ``{"step", "scalars"}`` object per step). The integrations add sinks
for TensorBoard, Weights & Biases, Lightning loggers and the Hugging Face ``Trainer``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import gradmedic
    >>> from gradmedic.sinks import ListSink
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> sink = ListSink()
    >>> with gradmedic.watch(model, sinks=[sink], flush_every=2) as monitor:
    ...     for _ in range(2):
    ...         model(torch.randn(16, 4)).pow(2).mean().backward()
    ...         monitor.step(1.0)
    >>> [step for step, _ in sink.rows]
    [0, 1]
    >>> sorted(sink.rows[0][1])  # doctest: +NORMALIZE_WHITESPACE
    ['grad_norm', 'loss', 'saturated_max', 'signal_first', 'signal_last', 'signal_ratio_median',
     'signal_ratio_min']
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .errors import ConfigError
from .history import History, encode_float
from .metrics import METRICS

if TYPE_CHECKING:
    from .diagnosis import Report

#: Names of the summary series, in the order sinks receive them.
SUMMARY_SERIES = (
    "signal_first",
    "signal_last",
    "signal_ratio_min",
    "signal_ratio_median",
    "dead_max",
    "saturated_max",
    "underflow_max",
    "loss",
    "grad_norm",
)

#: Metrics written per layer by a sink with ``per_layer=True``.
PER_LAYER_METRICS = tuple(name for name, metric in METRICS.items() if metric.per_layer_sink)

#: One flushed History row: (metric, step, values with one entry per column).
Row = tuple[str, int, np.ndarray]


@runtime_checkable
class Sink(Protocol):
    """Where a monitor writes numbers at each flush.

    A sink may also have a ``per_layer`` attribute (True: also receive the per-layer series)
    and a ``write_diagnosis(step, history, report)`` method, which ``Monitor.diagnose()``
    calls with each report (the TensorBoard and W&B sinks draw the gradient flow there).
    """

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record ``scalars`` (series name -> value) at training step ``step``."""

    def close(self) -> None:
        """Flush and release what the sink holds; writing again later reopens it."""


def check_sinks(sinks: object) -> list[Sink]:
    """Validate the ``sinks`` option of :func:`gradmedic.watch` and return it as a list.

    Raises:
        ConfigError: if it is not a sequence of objects with ``write`` and ``close`` methods.

    Example:
        >>> check_sinks(None)
        []
        >>> check_sinks([object()])
        Traceback (most recent call last):
        ...
        gradmedic.errors.ConfigError: sinks[0] (object) has no write(step, scalars)/close() methods: ...
    """
    if sinks is None:
        return []
    if not isinstance(sinks, Sequence) or isinstance(sinks, (str, bytes)):
        raise ConfigError(f"sinks={sinks!r}: give a list of sinks, e.g. sinks=[CSVSink('run.csv')]")
    for index, sink in enumerate(sinks):
        if not isinstance(sink, Sink):
            raise ConfigError(
                f"sinks[{index}] ({type(sink).__name__}) has no write(step, scalars)/close() methods: "
                "use a sink from gradmedic.sinks or gradmedic.integrations, or write a class with both"
            )
    return list(sinks)


# -- from History rows to series ---------------------------------------------------------------


def summarize(
    history: History, rows: Iterable[Row], per_layer: bool = False
) -> list[tuple[int, dict[str, float]]]:
    """Turn flushed History rows into summary series, one dict per step, steps in order.

    Args:
        history: the History the rows belong to (it names and orders the layers).
        rows: ``(metric, step, values)`` rows, as a flush produces them.
        per_layer: also return ``"<metric>/<layer>"`` series for :data:`PER_LAYER_METRICS`.

    Returns:
        ``[(step, {series: value})]``; a series is left out of a step where it was not recorded.

    Example:
        >>> import numpy as np
        >>> from gradmedic.history import History
        >>> from gradmedic.layers import LayerInfo
        >>> layers = [LayerInfo(str(i), "Linear", "param", forward_index=i) for i in range(3)]
        >>> h = History(layers, [])
        >>> rows = [("signal_rms", 5, np.array([1e-6, 1e-3, 1.0])), ("loss", 5, np.array([2.0]))]
        >>> summarize(h, rows)
        [(5, {'signal_first': 1e-06, 'signal_last': 1.0, 'signal_ratio_min': 1e-06, 'signal_ratio_median': 0.0005005, 'loss': 2.0})]
    """  # noqa: E501
    by_step: dict[int, dict[str, np.ndarray]] = {}
    for metric, step, values in rows:
        by_step.setdefault(int(step), {})[metric] = np.asarray(values, dtype=np.float64)
    params = [i for i in history.forward_order() if history.layers[i].kind == "param"]
    out = []
    for step in sorted(by_step):
        metrics = by_step[step]
        scalars = _summary(metrics, params)
        if per_layer:
            scalars.update(_per_layer(history, metrics))
        out.append((step, scalars))
    return out


def _summary(metrics: dict[str, np.ndarray], params: list[int]) -> dict[str, float]:
    scalars: dict[str, float] = {}
    signal = metrics.get("signal_rms")
    if signal is not None:
        observed = [signal[i] for i in params if np.isfinite(signal[i]) and signal[i] > 0]
        if observed:
            first, last = observed[0], observed[-1]
            scalars["signal_first"], scalars["signal_last"] = float(first), float(last)
            if len(observed) > 1:
                ratios = np.array(observed[:-1]) / last
                scalars["signal_ratio_min"] = float(ratios.min())
                scalars["signal_ratio_median"] = float(np.median(ratios))
    for name, metric in (
        ("dead_max", "act_dead"),
        ("saturated_max", "act_saturated"),
        ("underflow_max", "grad_underflow"),
    ):
        values = metrics.get(metric)
        if values is not None and np.isfinite(values).any():
            scalars[name] = float(np.nanmax(np.where(np.isfinite(values), values, np.nan)))
    if "loss" in metrics:
        scalars["loss"] = float(metrics["loss"][0])
    grads = metrics.get("weight_grad_norm")
    if grads is not None and not np.isnan(grads).all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an infinite norm squares to inf: fine
            scalars["grad_norm"] = float(np.sqrt(np.nansum(grads**2)))
    return {name: scalars[name] for name in SUMMARY_SERIES if name in scalars}


def _per_layer(history: History, metrics: dict[str, np.ndarray]) -> dict[str, float]:
    scalars = {}
    order = history.forward_order()
    for metric in PER_LAYER_METRICS:
        values = metrics.get(metric)
        if values is None:
            continue
        for i in order:
            if not math.isnan(values[i]):
                scalars[f"{metric}/{history.layers[i].name or 'model'}"] = float(values[i])
    return scalars


def write_rows(sinks: Sequence[Sink], history: History, rows: list[Row]) -> None:
    """Summarise ``rows`` (once per ``per_layer`` setting) and write them to every sink.

    Example:
        >>> import numpy as np
        >>> from gradmedic.history import History
        >>> from gradmedic.layers import LayerInfo
        >>> sink = ListSink()
        >>> history = History([LayerInfo("0", "Linear", "param")], [])
        >>> write_rows([sink], history, [("loss", 3, np.array([0.5]))])
        >>> sink.rows
        [(3, {'loss': 0.5})]
    """
    if not sinks or not rows:
        return
    cache: dict[bool, list[tuple[int, dict[str, float]]]] = {}
    for sink in sinks:
        per_layer = bool(getattr(sink, "per_layer", False))
        if per_layer not in cache:
            cache[per_layer] = summarize(history, rows, per_layer)
        for step, scalars in cache[per_layer]:
            if scalars:
                sink.write(step, scalars)


def write_diagnosis(sinks: Sequence[Sink], step: int, history: History, report: Report) -> None:
    """Hand a diagnosis to every sink that has a ``write_diagnosis`` method."""
    for sink in sinks:
        method = getattr(sink, "write_diagnosis", None)
        if callable(method):
            method(step, history, report)


# -- sinks without dependencies ----------------------------------------------------------------


class ListSink:
    """Keeps every written step in memory, in :attr:`rows` (for tests and notebooks).

    Args:
        per_layer: also receive the per-layer series.

    Example:
        >>> sink = ListSink()
        >>> sink.write(0, {"loss": 1.0})
        >>> sink.rows
        [(0, {'loss': 1.0})]
    """

    def __init__(self, per_layer: bool = False) -> None:
        self.per_layer = per_layer
        self.rows: list[tuple[int, dict[str, float]]] = []

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        self.rows.append((int(step), dict(scalars)))

    def close(self) -> None:
        """Nothing to release: the rows stay available."""

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """Steps and values of one series."""
        pairs = [(step, scalars[name]) for step, scalars in self.rows if name in scalars]
        return [s for s, _ in pairs], [v for _, v in pairs]


class _FileSink:
    """A sink that appends to a text file, opened on first write and after :meth:`close`."""

    def __init__(self, path: str | Path, per_layer: bool) -> None:
        self.path = Path(path)
        self.per_layer = per_layer
        self._file: IO[str] | None = None

    def _out(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self._file = self.path.open("a", encoding="utf-8", newline="")
            if fresh:
                self._start(self._file)
        return self._file

    def _start(self, out: IO[str]) -> None:
        """Write the header of a new file."""

    def close(self) -> None:
        """Close the file (a later write appends to it)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class CSVSink(_FileSink):
    """Appends ``step,series,value`` rows to a CSV file (long format: one number per row).

    Long format keeps the file valid when a series appears only on some steps (activation
    statistics are sampled); ``pandas.read_csv(path).pivot(index="step", columns="series",
    values="value")`` gives one column per series.

    Args:
        path: the CSV file; created with its header if missing, appended to otherwise.
        per_layer: also write the per-layer series.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.csv"
        >>> sink = CSVSink(path)
        >>> sink.write(3, {"loss": 0.5})
        >>> sink.close()
        >>> path.read_text().splitlines()
        ['step,series,value', '3,loss,0.5']
    """

    def __init__(self, path: str | Path, per_layer: bool = False) -> None:
        super().__init__(path, per_layer)

    def _start(self, out: IO[str]) -> None:
        csv.writer(out).writerow(["step", "series", "value"])

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        out = self._out()
        csv.writer(out).writerows((int(step), name, repr(float(value))) for name, value in scalars.items())
        out.flush()


class JSONLinesSink(_FileSink):
    """Appends one ``{"step": 12, "scalars": {...}}`` object per step to a JSON Lines file.

    NaN is written as ``null`` and infinities as ``"inf"``/``"-inf"`` (as in History files).
    For the full per-layer record of a run, use ``watch(..., log_path=...)`` instead.

    Args:
        path: the file; appended to.
        per_layer: also write the per-layer series.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
        >>> sink = JSONLinesSink(path)
        >>> sink.write(3, {"loss": float("inf")})
        >>> sink.close()
        >>> path.read_text()
        '{"step": 3, "scalars": {"loss": "inf"}}\\n'
    """

    def __init__(self, path: str | Path, per_layer: bool = False) -> None:
        super().__init__(path, per_layer)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        record: dict[str, Any] = {
            "step": int(step),
            "scalars": {k: encode_float(float(v)) for k, v in scalars.items()},
        }
        out = self._out()
        out.write(json.dumps(record, allow_nan=False) + "\n")
        out.flush()


def read_csv(path: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """Read a :class:`CSVSink` file back: series name -> (steps, values).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.csv"
        >>> sink = CSVSink(path)
        >>> sink.write(0, {"loss": 2.0}); sink.write(1, {"loss": 1.5}); sink.close()
        >>> read_csv(path)
        {'loss': ([0, 1], [2.0, 1.5])}
    """
    series: dict[str, tuple[list[int], list[float]]] = {}
    try:
        with Path(path).open(encoding="utf-8", newline="") as lines:
            reader = csv.DictReader(lines)
            for row in reader:
                _read_csv_row(series, row, path, reader.line_num)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    return series


def _read_csv_row(
    series: dict[str, tuple[list[int], list[float]]], row: dict[str, str], path: str | Path, line: int
) -> None:
    """Add one ``step,series,value`` row, or raise a ConfigError naming the file and the line."""
    try:
        step, value = int(row["step"]), float(row["value"])
        name = row["series"]
    except (KeyError, TypeError, ValueError) as error:
        what = f"the column {error.args[0]!r} is missing" if isinstance(error, KeyError) else str(error)
        raise ConfigError(
            f"{path}, line {line}: not a CSVSink row step,series,value ({what}); write it with CSVSink"
        ) from None
    steps, values = series.setdefault(name, ([], []))
    steps.append(step)
    values.append(value)


__all__ = [
    "PER_LAYER_METRICS",
    "SUMMARY_SERIES",
    "CSVSink",
    "JSONLinesSink",
    "ListSink",
    "Sink",
    "check_sinks",
    "read_csv",
    "summarize",
    "write_diagnosis",
    "write_rows",
]
