"""What the lab runs and what it records: a :class:`CellSpec` in, a :class:`CellResult` out.

A cell is one point of a study's grid (task x model recipe x variant x seed). Its spec is plain
JSON-able data, so a cell can be sent to another process (or a Ray worker), hashed into a stable
key, and saved next to its result. A result is saved as one JSON file per cell as soon as the cell
finishes; the report is built from those files alone.

Example:
    >>> spec = CellSpec("depth", "digits", "mlp", "tanh", {"depth": 8, "activation": "tanh"},
    ...                 seed=0, steps=100, lrs=(1e-3,), axis="depth")
    >>> spec.key() == CellSpec.from_dict(spec.to_dict()).key()
    True
    >>> spec.label
    'depth/tanh/depth=8/seed=0'
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._version import __version__

#: Bump when a change to the lab makes saved results incomparable (they are then recomputed).
LAB_FORMAT = 1
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def versions() -> dict[str, str]:
    """The library versions a result depends on; a saved cell with other versions is stale.

    ``gradmedic_source`` fingerprints gradmedic's own code, so that an edited checkout (a
    version number that did not move) still recomputes the cells its edits may change.
    """
    return {
        "lab_format": str(LAB_FORMAT),
        "gradmedic": __version__,
        "gradmedic_source": source_fingerprint(PACKAGE_ROOT),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


@functools.cache
def source_fingerprint(root: Path) -> str:
    """A 12-hex-digit hash of the names and contents of the ``.py`` files under ``root``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.py").write_text("x = 1")
        >>> before = source_fingerprint.__wrapped__(folder)
        >>> _ = (folder / "a.py").write_text("x = 2")
        >>> before != source_fingerprint.__wrapped__(folder), len(before)
        (True, 12)
    """
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class CellSpec:
    """One cell of a study's grid.

    Attributes:
        study: the study's name (``activations``, ``init``, ...).
        task: ``digits`` (64-vectors), ``digits_image`` (1x8x8), ``digits_rows`` (8 rows of 8),
            ``adding`` or ``copy``.
        recipe: the model family built for it (``mlp``, ``cnn``, ``rnn``).
        variant: what the study varies, as the report's legend shows it (``"relu"``, ``"he"``).
        params: everything else that defines the model and its training (depth, width,
            activation, init, normalization, optimizer, clipping, sequence length ...).
        seed: seeds the model's initialization, the batches and the synthetic data.
        steps: optimizer steps of each training run.
        lrs: the learning rates of the cell's sweep; the best on validation data is kept.
        axis: the name of the numeric parameter the study plots against (``"depth"``,
            ``"length"``), or None.
    """

    study: str
    task: str
    recipe: str
    variant: str
    params: dict[str, Any]
    seed: int
    steps: int
    lrs: tuple[float, ...]
    axis: str | None = None

    @property
    def x(self) -> float | None:
        """The value of the study's axis parameter for this cell, or None."""
        return None if self.axis is None else float(self.params[self.axis])

    @property
    def label(self) -> str:
        """A short readable name: ``study/variant/axis=value/seed=N``."""
        parts = [self.study, self.variant]
        if self.axis is not None:
            parts.append(f"{self.axis}={self.params[self.axis]}")
        return "/".join([*parts, f"seed={self.seed}"])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lrs"] = list(self.lrs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellSpec:
        fields = dict(data)
        fields["lrs"] = tuple(float(lr) for lr in fields["lrs"])
        fields["params"] = dict(fields["params"])
        return cls(**fields)

    def key(self) -> str:
        """A stable 16-hex-digit name of this spec under the current library versions."""
        text = json.dumps({"spec": self.to_dict(), "versions": versions()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class CellResult:
    """What one cell measured. A failed cell has ``status == "error"`` and its ``error`` text.

    Attributes:
        spec: the cell.
        status: ``"ok"`` or ``"error"``.
        error: the error's type, message and the end of its traceback, or None.
        score: the checkup's raw health score at initialization, in [0, 1] (``Report.raw_score``).
        healthy: the checkup's verdict at initialization.
        findings: kinds of the checkup's findings.
        layer_names: the parametrised layers in forward order.
        signal: backprop signal (RMS of the gradient w.r.t. the layer's output) per layer at
            initialization, in forward order.
        time_signal: for recurrent models, the signal by steps back (index 0 = last step).
        lr: the learning rate chosen by the sweep.
        by_lr: the validation metric of each swept learning rate (keys are ``repr(lr)``).
        curve_steps, curve_loss: the training loss (mean over windows) of the chosen run.
        curve_metric: test metric at ``curve_steps`` (the learning curve).
        metric_name: ``"accuracy"`` (digits, copy: recalled symbols) or ``"solved"`` (adding).
        metric: final test metric of the chosen run, in [0, 1].
        steps_to_target: the first of ``curve_steps`` where ``curve_metric`` reached the study's
            target, or None.
        early_score: the trial's score from the first :data:`~gradmedic.lab.cell.EARLY_FRACTION`
            of each swept run's steps (:func:`gradmedic.diagnosis.trials.early_verdict`), the best
            over the sweep; NaN for cells recorded before it existed.
        early_findings: the trial's finding kinds of the run with that best early score.
        wall_time: seconds the cell took, sweep included.
        versions: library versions (see :func:`versions`).
    """

    spec: CellSpec
    status: str = "ok"
    error: str | None = None
    score: float = math.nan
    healthy: bool = False
    findings: list[str] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)
    signal: list[float] = field(default_factory=list)
    time_signal: list[float] | None = None
    lr: float = math.nan
    by_lr: dict[str, float] = field(default_factory=dict)
    curve_steps: list[int] = field(default_factory=list)
    curve_loss: list[float] = field(default_factory=list)
    curve_metric: list[float] = field(default_factory=list)
    metric_name: str = "accuracy"
    metric: float = math.nan
    steps_to_target: int | None = None
    early_score: float = math.nan
    early_findings: list[str] = field(default_factory=list)
    wall_time: float = 0.0
    versions: dict[str, str] = field(default_factory=versions)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able data; non-finite floats become None (JSON has no NaN)."""
        data = asdict(self)
        data["spec"] = self.spec.to_dict()
        return _finite(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        fields = dict(data)
        fields["spec"] = CellSpec.from_dict(fields["spec"])
        for name in ("score", "lr", "metric", "early_score"):
            fields[name] = math.nan if fields.get(name) is None else float(fields[name])
        for name in ("signal", "curve_loss", "curve_metric"):
            fields[name] = [math.nan if v is None else float(v) for v in fields.get(name) or []]
        fields["by_lr"] = {
            lr: math.nan if v is None else float(v) for lr, v in (fields.get("by_lr") or {}).items()
        }
        if fields.get("time_signal") is not None:
            fields["time_signal"] = [math.nan if v is None else float(v) for v in fields["time_signal"]]
        return cls(**fields)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
