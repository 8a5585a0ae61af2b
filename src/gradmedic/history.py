"""The record of a monitored run: columnar, bounded in memory, saved as JSON Lines.

Each *metric* is a column family: a list of recorded steps and, per step, one value per column
(per layer, per parameter, or a single value for the loss). Missing values (a layer that got no
gradient on that step) are NaN; a value that was observed but not finite is also kept in
:attr:`History.non_finite`, so the two never get confused.

Metrics written by the monitor:

=================== ========== ===========================================================
metric              columns    meaning
=================== ========== ===========================================================
``loss``            one        the loss passed to ``Monitor.step``
``signal_norm``     layers     L2 norm of d loss / d (layer output): the backprop signal
``signal_rms``      layers     the same divided by sqrt(number of output elements)
``weight_grad_norm`` layers    L2 norm of the gradient of all the layer's own parameters
``param_grad_norm`` parameters L2 norm of each parameter's gradient
``act_mean``        layers     mean of the layer's output
``act_std``         layers     population standard deviation of the layer's output
``act_saturated``   layers     fraction of outputs in the flat tails (saturating activations)
``act_dead``        layers     fraction of units zero for the whole batch (ReLU family)
``update_ratio``    layers     ||w_after - w_before|| / ||w_before|| across one update
``grad_underflow``  layers     fraction of non-zero weight-gradient values below the smallest
                               normal of the low-precision dtype (mixed precision only)
``time_signal``     see below  per recurrent layer, the backprop signal at each time step
``time_length``     layers     number of time steps of the sequence (recurrent layers)
``gate_mean``       layers     mean forget (LSTM) / update (GRU) gate activation
``gate_saturated``  layers     fraction of those gates in the sigmoid's flat tails
=================== ========== ===========================================================

``time_signal`` (see :mod:`gradmedic.recurrent_stats`) has one block of columns per recurrent
layer (:attr:`History.time_layers`, in that order), each block indexed by *steps back*: column 0
is the last step of the sequence, column ``k`` the step ``k`` steps before it. The blocks are as
wide as the longest sequence seen so far (:attr:`History.time_steps`): a shorter sequence leaves
NaN beyond its first step, and when a longer one arrives every earlier row is widened with NaN.
Sequences longer than :data:`MAX_TIME_STEPS` keep their last ``MAX_TIME_STEPS`` steps (the ones
nearest the loss); ``time_length`` still records their full length. :meth:`History.time_rows`
reads one layer's block.

The JSON Lines file starts with a header line (``{"format": "gradmedic.history", "version": 1,
"layers": [...], "params": [...], "meta": {...}, "time_layers": [...]}``), then one line per
recorded row (``{"step": 12, "metric": "signal_norm", "values": [...]}``) and one per non-finite event
(``{"event": "non_finite", "step": 12, "metric": "signal_norm", "layer": "3"}``). Floats are
JSON numbers; NaN is ``null``; infinities are the strings ``"inf"`` and ``"-inf"``.

Example:
    >>> import numpy as np
    >>> from gradmedic.history import History
    >>> from gradmedic.layers import LayerInfo
    >>> h = History([LayerInfo("0", "Linear", "param", ["0.weight"])], ["0.weight"])
    >>> h.append("loss", [0, 1], np.array([[2.0], [1.5]]))
    >>> h.array("loss")[1].ravel().tolist()
    [2.0, 1.5]
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._providers import provided
from .errors import ConfigError
from .layers import LayerInfo
from .metrics import columns_of, names

FORMAT = "gradmedic.history"
VERSION = 1

#: Metrics whose columns are the layers, computed during the forward pass.
FORWARD_METRICS = names(columns="layer", phase="forward")
#: Metrics whose columns are the layers, computed during the backward pass.
BACKWARD_METRICS = names(columns="layer", phase="backward")
#: Metrics whose columns are the layers, measured across the optimizer's update.
LAYER_METRICS = names(columns="layer", phase="update")
#: Metrics of recurrent layers whose columns are the layers (NaN for the other layers).
RECURRENT_METRICS = names(columns="layer", phase="time")
#: Metrics with one block of steps-back columns per recurrent layer.
TIME_METRICS = names(columns="time")
#: Longest time profile kept per recurrent layer (steps back from the last step).
MAX_TIME_STEPS = 2048


@dataclass(frozen=True)
class NonFiniteEvent:
    """The first layer (in the direction the values flow) where a metric became NaN or Inf."""

    step: int
    metric: str
    layer: str

    def to_dict(self) -> dict[str, Any]:
        return {"event": "non_finite", "step": self.step, "metric": self.metric, "layer": self.layer}


class _Series:
    """One metric: rows kept at falling resolution with age, never more than ``max_rows``.

    Every row gets an arrival number ``n`` (0, 1, 2, ... in the order rows are appended) and a
    *level*, the number of times 2 divides ``n`` (row 0: infinite, never dropped). The newest
    ``max_rows // 4`` rows (the *tail*) are all kept. When the series holds more than
    ``max_rows`` rows, the oldest row of the lowest level outside the tail goes: first the odd
    rows, oldest first, then the rows at 2 mod 4, and so on. The older part therefore always
    holds every ``2**(L+1)``-th row up to some point and every ``2**L``-th row after it: the
    whole run, at a resolution that falls with age and with the length of the run (see
    :class:`History` for the guarantee).
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self._rows: dict[int, tuple[int, np.ndarray]] = {}  # arrival number -> (step, row), in order
        self._tail: deque[int] = deque()
        self._levels: list[deque[int]] = []  # arrival numbers outside the tail, per level, oldest first
        self._arrived = 0

    @property
    def steps(self) -> list[int]:
        return [step for step, _ in self._rows.values()]

    @property
    def rows(self) -> list[np.ndarray]:
        return [row for _, row in self._rows.values()]

    def extend(self, steps: list[int], values: np.ndarray, max_rows: int) -> None:
        rows = np.asarray(values, dtype=np.float64).reshape(len(steps), self.width)
        tail = max(1, max_rows // 4)
        for step, row in zip(steps, rows):
            self._add(int(step), row, tail)
            while len(self._rows) > max_rows:
                self._drop_one()

    def _add(self, step: int, row: np.ndarray, tail: int) -> None:
        number, self._arrived = self._arrived, self._arrived + 1
        self._rows[number] = (step, row)
        self._tail.append(number)
        while len(self._tail) > tail:
            old = self._tail.popleft()
            if old:  # row 0 (the first step) is never dropped
                level = _level(old)
                while len(self._levels) <= level:
                    self._levels.append(deque())
                self._levels[level].append(old)

    def _drop_one(self) -> None:
        """Drop the oldest row of the lowest level outside the tail."""
        for numbers in self._levels:
            if numbers:
                del self._rows[numbers.popleft()]
                return
        raise AssertionError("no row to drop: max_rows is smaller than the tail")  # pragma: no cover

    def widen(self, blocks: int, block_width: int) -> None:
        """Pad each of the ``blocks`` column blocks of every row with NaN to ``block_width``."""
        old = self.width // max(blocks, 1)
        pad = ((0, 0), (0, block_width - old))
        self._rows = {
            number: (step, np.pad(r.reshape(blocks, old), pad, constant_values=np.nan).ravel())
            for number, (step, r) in self._rows.items()
        }
        self.width = blocks * block_width


def _level(number: int) -> int:
    """How many times 2 divides ``number`` (> 0): 1 -> 0, 2 -> 1, 12 -> 2."""
    return (number & -number).bit_length() - 1


class History:
    """Recorded statistics of a run, per metric and step.

    Args:
        layers: the observed layers (columns of the per-layer metrics).
        params: parameter names (columns of ``param_grad_norm``).
        max_rows: per metric, the most rows kept (at least 2); see "Retention" below.
        meta: free-form information saved with the run (model class, options...).
        time_layers: columns (in ``layers``) of the recurrent layers that have a time profile.

    Retention: a metric never holds more than ``M = max_rows`` rows, and those rows cover the
    whole run at a resolution that falls with age. After ``n`` rows were recorded, with the tail
    ``T = max(1, M // 4)``:

    - the first row and the newest ``T`` rows are always kept;
    - between them, consecutive kept rows are at most ``max(1, 2 * (n - T) / (M - T))`` recorded
      rows apart (every ``2**(L+1)``-th row of the oldest part, every ``2**L``-th of the rest),
      so no part of the run goes missing: with the default 4,096 rows and a row every step, a
      20,000-step run keeps rows at most 12 steps apart, a 10**6-step run at most 650, always
      with the first step and the last 1,024;
    - the gaps never shrink going back in time, and rows stay with their steps.

    The rule is deterministic and depends only on the order rows arrive, so metrics recorded on
    the same steps keep the same steps. Tested on 10**5 rows (``tests/test_history.py``).

    Example:
        >>> import numpy as np
        >>> h = History([], [], max_rows=8)
        >>> h.append("loss", list(range(100)), np.arange(100.0)[:, None])
        >>> h.array("loss")[0].tolist()
        [0, 32, 48, 64, 80, 96, 98, 99]
    """

    def __init__(
        self,
        layers: list[LayerInfo],
        params: list[str],
        max_rows: int = 4096,
        meta: dict[str, Any] | None = None,
        time_layers: list[int] | None = None,
    ) -> None:
        if max_rows < 2:
            raise ConfigError(f"max_rows={max_rows}: keep at least 2 rows per metric")
        self.layers = layers
        self.params = params
        self.max_rows = max_rows
        self.meta = dict(meta or {})
        self.time_layers = list(time_layers or [])
        self.time_steps = 0
        self.non_finite: list[NonFiniteEvent] = []
        self._series: dict[str, _Series] = {}

    # -- writing ---------------------------------------------------------------------------

    def width(self, metric: str) -> int:
        """Number of columns of ``metric``."""
        columns = columns_of(metric)  # see gradmedic.metrics
        if columns == "parameter":
            return len(self.params)
        if columns == "time":
            return len(self.time_layers) * self.time_steps
        return len(self.layers) if columns == "layer" else 1

    def append(self, metric: str, steps: list[int], values: np.ndarray) -> None:
        """Append rows of ``metric`` (shape ``[len(steps), width]``) recorded at ``steps``.

        Rows of a time metric may have any number of steps back per layer (see the module
        docstring): they are padded, or the series is widened, to fit.
        """
        if metric in TIME_METRICS:
            values = self._fit_time(metric, np.asarray(values, dtype=np.float64).reshape(len(steps), -1))
        series = self._series.setdefault(metric, _Series(self.width(metric)))
        series.extend(list(steps), values, self.max_rows)

    def _fit_time(self, metric: str, values: np.ndarray) -> np.ndarray:
        """Cut rows to ``MAX_TIME_STEPS`` per layer, then pad them or widen the series to match."""
        blocks = max(len(self.time_layers), 1)
        if values.shape[1] % blocks:
            raise ConfigError(
                f"{metric}: rows of {values.shape[1]} values do not split into {blocks} recurrent layers"
            )
        values = values.reshape(len(values), blocks, -1)[:, :, :MAX_TIME_STEPS]
        steps = values.shape[2]
        if steps > self.time_steps:
            if metric in self._series:
                self._series[metric].widen(blocks, steps)
            self.time_steps = steps
        pad = ((0, 0), (0, 0), (0, self.time_steps - steps))
        return np.pad(values, pad, constant_values=np.nan).reshape(len(values), -1)

    def add_event(self, event: NonFiniteEvent) -> None:
        """Keep a non-finite event (the first 1000 only: the first ones are what matter)."""
        if len(self.non_finite) < 1000:
            self.non_finite.append(event)

    # -- reading ---------------------------------------------------------------------------

    @property
    def metrics(self) -> list[str]:
        """Names of the metrics recorded so far."""
        return list(self._series)

    def array(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Steps (``[n]``) and values (``[n, width]``) of ``metric``, as NumPy arrays.

        Raises:
            KeyError: if ``metric`` was never recorded; the message lists those that were.
        """
        if metric not in self._series:
            raise KeyError(f"metric {metric!r} was not recorded; recorded: {self.metrics}")
        series = self._series[metric]
        values = np.array(series.rows, dtype=np.float64).reshape(len(series.steps), series.width)
        return np.array(series.steps, dtype=np.int64), values

    def time_rows(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """Steps (``[n]``) and the time profiles (``[n, time_steps]``, by steps back) of ``layer``.

        Raises:
            KeyError: if ``layer`` has no time profile (the message lists those that do), or
                none was recorded.
        """
        names = [self.layers[i].name for i in self.time_layers]
        if layer not in names:
            raise KeyError(f"layer {layer!r} has no time profile; recurrent layers: {names}")
        steps, values = self.array("time_signal")
        return steps, values.reshape(len(steps), len(names), -1)[:, names.index(layer)]

    def last(self, metric: str) -> np.ndarray:
        """The most recent row of ``metric``."""
        return self.array(metric)[1][-1]

    def forward_order(self) -> list[int]:
        """Column indices of the layers in the order of their first call in a forward pass.

        Layers never seen in a forward pass come last, in ``named_modules`` order.
        """
        unseen = 10**9
        return sorted(
            range(len(self.layers)),
            key=lambda i: (self.layers[i].forward_index if self.layers[i].forward_index >= 0 else unseen, i),
        )

    def __len__(self) -> int:
        return max((len(s.steps) for s in self._series.values()), default=0)

    def __repr__(self) -> str:
        return f"History({len(self.layers)} layers, {len(self)} rows, metrics={self.metrics})"

    def _repr_html_(self) -> str:
        """How Jupyter shows a run: what it holds and its pictures (``html_report.history_fragment``)."""
        return provided("history_fragment")(self)

    # -- saving ----------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        """The first line of the JSON Lines file."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "layers": [layer.to_dict() for layer in self.layers],
            "params": self.params,
            "meta": self.meta,
            "time_layers": self.time_layers,
        }

    def save(self, path: str | Path) -> Path:
        """Write the whole history as JSON Lines to ``path`` and return the path."""
        path = Path(path)
        with path.open("w", encoding="utf-8") as out:
            write_line(out, self.header())
            for metric, series in self._series.items():
                for step, row in zip(series.steps, series.rows):
                    write_line(out, row_record(metric, step, row))
            for event in self.non_finite:
                write_line(out, event.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history written by :meth:`save` or by a JSON Lines sink.

        Raises:
            ConfigError: if the file cannot be read, is not a gradmedic history, is of a newer
                format version, or has a line that is not a record (a truncated file, a garbage
                line): the message names the file, the line and what is wrong.

        Example:
            >>> import tempfile, pathlib
            >>> bad = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
            >>> _ = bad.write_text(History([], []).header_line() + '{"step": 3, "metric": "lo')
            >>> History.load(bad)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            gradmedic.errors.ConfigError: ...run.jsonl, line 2: not a JSON record (...): a truncated ...
        """
        try:
            with Path(path).open(encoding="utf-8") as lines:
                history = cls._from_header(path, _first_line(next(lines, "")))
                for number, line in enumerate(lines, start=2):
                    history._read_line(path, number, line)
        except OSError as error:
            raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a gradmedic history (not UTF-8 text)") from None
        return history

    def header_line(self) -> str:
        """The header as the first line of the JSON Lines file (with its newline)."""
        return json.dumps(self.header(), allow_nan=False) + "\n"

    @classmethod
    def _from_header(cls, path: str | Path, header: object) -> History:
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            found = (
                f"has format={header.get('format')!r}" if isinstance(header, dict) else "is no JSON object"
            )
            raise ConfigError(
                f"{path} is not a gradmedic history (first line {found}); "
                "write one with History.save or Monitor(log_path=...)"
            )
        version = header.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ConfigError(
                f"{path}, line 1: format version {version!r}, this gradmedic reads version {VERSION} or "
                "older: upgrade gradmedic (pip install -U gradmedic) to read it"
            )
        try:
            history = cls(
                [LayerInfo(**layer) for layer in header["layers"]],
                list(header["params"]),
                meta=dict(header.get("meta", {})),
                time_layers=list(header.get("time_layers", [])),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{path}, line 1: a damaged header ({_what(error)})") from None
        history.max_rows = 10**9
        return history

    def _read_line(self, path: str | Path, number: int, line: str) -> None:
        if not line.strip():
            return
        record = _parse_line(path, number, line)
        try:
            if not isinstance(record, dict):
                raise TypeError(f"a {type(record).__name__}, not a JSON object")
            self._read_record(record)
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{path}, line {number}: not a history record ({_what(error)})") from None

    def _read_record(self, record: dict[str, Any]) -> None:
        if record.get("event") == "non_finite":
            self.add_event(NonFiniteEvent(int(record["step"]), str(record["metric"]), str(record["layer"])))
        elif "metric" in record:
            values = np.array([[decode_float(v) for v in record["values"]]])
            width = self.width(record["metric"])
            if record["metric"] not in TIME_METRICS and values.shape[1] != width:
                raise ValueError(
                    f"{values.shape[1]} values for {record['metric']!r}, which has {width} columns"
                )
            self.append(str(record["metric"]), [int(record["step"])], values)
        else:
            raise KeyError("metric")


def _first_line(line: str) -> Any:
    """The header's JSON, or None when the first line is not JSON (the caller says what it is)."""
    try:
        return json.loads(line or "{}")  # an empty file: an empty header, without a format
    except ValueError:
        return None


def _parse_line(path: str | Path, number: int, line: str) -> Any:
    """One JSON line of a history file, or a ConfigError naming the file and the line."""
    try:
        return json.loads(line)
    except ValueError as error:
        raise ConfigError(
            f"{path}, line {number}: not a JSON record ({error}): a truncated or damaged file; "
            "write it again with History.save or Monitor(log_path=...)"
        ) from None


def _what(error: Exception) -> str:
    """A short description of what a damaged record lacks or holds wrong."""
    if isinstance(error, KeyError):
        return f"the field {error.args[0]!r} is missing"
    return str(error)


def encode_float(value: float) -> float | str | None:
    """JSON form of a float: NaN becomes ``None``, infinities the strings ``"inf"``/``"-inf"``."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decode_float(value: float | str | None) -> float:
    """Inverse of :func:`encode_float`."""
    if value is None:
        return math.nan
    return float(value)


def row_record(metric: str, step: int, row: np.ndarray) -> dict[str, Any]:
    """One JSON Lines record for a row of ``metric``."""
    return {"step": int(step), "metric": metric, "values": [encode_float(float(v)) for v in row]}


def write_line(out: IO[str], record: dict[str, Any]) -> None:
    """Write one JSON record and a newline."""
    out.write(json.dumps(record, allow_nan=False) + "\n")
