"""What a diagnosis says: findings (kind, layers, evidence, cause, remedies) and the Report.

Everything here is plain data that round-trips through JSON.

JSON schema of a report (``Report.to_json``)::

    {
      "format": "gradmedic.report", "version": 1,
      "source": "checkup" | "monitor" | "trial",
      "score": float in [0, 1], "healthy": bool, "raw_score": float | null,
      "notes": [str, ...],
      "layers": [{"name", "type", "signal_rms", "weight_grad_norm", "activation",
                  "saturated", "dead"}, ...],          # parametrised layers, forward order
      "findings": [{"kind", "severity": "info" | "warning" | "critical", "layers": [str],
                    "evidence": str, "cause": str, "numbers": {str: float},
                    "remedies": [{"family", "name", "why", "code", "automatic"}]}],
      "curves": {name: {"steps": [int], "columns": [str], "values": [[float]]}}  # trial only
    }

A trial's report (``source: "trial"``) carries the per-step curves of its run: ``loss``,
``signal_rms``, ``dead``, ``saturated`` (of the activation after each layer), ``pre_mean`` and
``pre_std`` (each layer's output) and ``update_ratio``; one column per layer (``loss``: one).

Numbers that are not finite are written as ``null``.

Example:
    >>> report = Report(findings=[], score=1.0, source="checkup")
    >>> Report.from_json(report.to_json()).healthy
    True
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._providers import provided
from ..errors import ConfigError
from .severity import Severity

if TYPE_CHECKING:
    from ..history import History

FORMAT = "gradmedic.report"
VERSION = 1


class _Name(str, enum.Enum):
    """A name that is also the plain string it stands for: equal to it, hashed, formatted, joined,
    shown (``repr``) and written to JSON as it (``f"{Kind.DEAD_UNITS}"`` is ``"dead_units"``), so
    reports, logs and reprs read exactly as they did when these were bare strings."""

    __hash__ = str.__hash__  # as the string: also where Enum would hash the member's name

    def __repr__(self) -> str:
        return repr(str(self.value))

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Kind(_Name):
    """What a :class:`Finding` names. A ``str``: ``Kind.DEAD_UNITS == "dead_units"``, and a
    report's JSON holds the plain name.

    Example:
        >>> Kind.VANISHING_GRADIENT == "vanishing_gradient", f"{Kind.DEAD_UNITS}"
        (True, 'dead_units')
        >>> Kind("too_deep") is Kind.TOO_DEEP, Kind.TOO_DEEP.name
        (True, 'TOO_DEEP')
    """

    # from the checkup and the monitor (gradmedic.diagnosis.rules)
    VANISHING_GRADIENT = "vanishing_gradient"
    EXPLODING_GRADIENT = "exploding_gradient"
    SATURATED_ACTIVATIONS = "saturated_activations"
    DEAD_UNITS = "dead_units"
    INIT_MISMATCH = "init_mismatch"
    MISSING_NORMALIZATION = "missing_normalization"
    TOO_DEEP = "too_deep"
    STALLED_LAYERS = "stalled_layers"
    NON_FINITE = "non_finite"
    DENORMAL_SLOWDOWN = "denormal_slowdown"
    PRECISION_UNDERFLOW = "precision_underflow"
    LOSS_PLATEAU = "loss_plateau"
    MEMORY_HORIZON = "memory_horizon"
    VANISHING_THROUGH_TIME = "vanishing_through_time"
    EXPLODING_THROUGH_TIME = "exploding_through_time"
    # from a trial (gradmedic.diagnosis.trial_rules)
    DIVERGENCE = "divergence"
    EXPLODING_FORWARD = "exploding_forward"
    DYING_UNITS = "dying_units"
    SATURATION_GROWING = "saturation_growing"
    LOSS_NOT_DECREASING = "loss_not_decreasing"
    VANISHING_DEVELOPING = "vanishing_developing"
    EXPLODING_DEVELOPING = "exploding_developing"


class Family(_Name):
    """The family of a :class:`Remedy` (and of a remedy's change): the nine classic remedies,
    with learning rate and optimizer as one, plus loss scaling for low precision. A ``str``, as
    :class:`Kind`.

    Example:
        >>> Family.INIT == "init", [f.value for f in Family][:3]
        (True, ['activation', 'init', 'normalization'])
    """

    ACTIVATION = "activation"
    INIT = "init"
    NORMALIZATION = "normalization"
    RESIDUAL = "residual"
    CLIPPING = "clipping"
    RECURRENT = "recurrent"
    OPTIMIZER = "optimizer"
    SHALLOWER = "shallower"
    PRECISION = "precision"


def _known(enum_type: type[_Name], name: str) -> str:
    """``name`` as a member of ``enum_type`` when it is one, else the plain string (a report
    saved by a newer version may name a kind this one does not know)."""
    try:
        return enum_type(name)
    except ValueError:
        return name


@dataclass(frozen=True)
class Remedy:
    """One of the nine classic remedies, as a user would apply it.

    Attributes:
        family: a :class:`Family` (``activation``, ``init``, ``normalization``, ``residual``,
            ``clipping``, ``recurrent``, ``optimizer``, ``shallower`` or ``precision``).
        name: short title, e.g. "He (Kaiming) initialization".
        why: one line: why it helps here.
        code: the PyTorch code a user would write.
        automatic: whether ``gradmedic.treat`` applies it by itself.
    """

    family: str
    name: str
    why: str
    code: str
    automatic: bool = False


@dataclass
class Finding:
    """A named problem (its :class:`Kind`), where it is, the numbers behind it, its cause and what
    to do."""

    kind: str
    severity: Severity
    layers: list[str]
    evidence: str
    cause: str
    remedies: list[Remedy] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.label
        data["numbers"] = {k: _finite_or_none(v) for k, v in self.numbers.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            kind=_known(Kind, data["kind"]),
            severity=_severity(data["severity"]),
            layers=list(data["layers"]),
            evidence=data["evidence"],
            cause=data["cause"],
            remedies=[
                Remedy(**{**r, "family": _known(Family, r["family"])}) for r in data.get("remedies", [])
            ],
            numbers={k: math.nan if v is None else float(v) for k, v in data.get("numbers", {}).items()},
        )


#: The highest score of a report that is not healthy (a healthy one scores at least 0.5).
UNHEALTHY_MAX = 0.49


def agreeing_score(raw: float, healthy: bool) -> float:
    """The health score made to agree with the verdict: ``max(raw, 0.5)`` when healthy,
    ``min(raw, UNHEALTHY_MAX)`` when not, so that ``score >= 0.5`` exactly when healthy.

    The raw estimate multiplies symptom factors and the verdict comes from the rules' findings;
    where they disagree (a healthy verdict over a low estimate, a warning over a high one) the
    verdict wins and the score stops at the boundary; where they agree it is left as it is.

    Example:
        >>> agreeing_score(0.43, True), agreeing_score(0.996, False), agreeing_score(0.8, True)
        (0.5, 0.49, 0.8)
    """
    if math.isnan(raw):
        return raw
    return max(raw, 0.5) if healthy else min(raw, UNHEALTHY_MAX)


def _severity(name: str) -> Severity:
    """A severity by its name in a saved report (``"warning"``); ValueError for another name."""
    try:
        return Severity[name.upper()]
    except KeyError:
        raise ValueError(f"unknown severity {name!r}: one of {[s.name.lower() for s in Severity]}") from None


@dataclass
class LayerSummary:
    """One parametrised layer as the report shows it."""

    name: str
    type: str
    signal_rms: float = math.nan
    weight_grad_norm: float = math.nan
    activation: str | None = None
    saturated: float = math.nan
    dead: float = math.nan

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerSummary:
        def number(key: str) -> float:
            value = data.get(key)
            return math.nan if value is None else float(value)

        return cls(
            str(data["name"]),
            str(data["type"]),
            number("signal_rms"),
            number("weight_grad_norm"),
            data.get("activation"),
            number("saturated"),
            number("dead"),
        )


@dataclass
class Curve:
    """One per-step series of a trial: recorded steps, column names, one row of values per step.

    Example:
        >>> import numpy as np
        >>> curve = Curve([0, 1], ["loss"], np.array([[2.0], [np.nan]]))
        >>> Curve.from_dict(curve.to_dict()).values[:, 0].tolist()
        [2.0, nan]
    """

    steps: list[int]
    columns: list[str]
    values: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """The values of one column, one per recorded step."""
        return self.values[:, self.columns.index(name)]

    def to_dict(self) -> dict[str, Any]:
        rows = [[_finite_or_none(float(v)) for v in row] for row in self.values]
        return {"steps": list(self.steps), "columns": list(self.columns), "values": rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curve:
        rows = [[math.nan if v is None else float(v) for v in row] for row in data["values"]]
        values = np.array(rows, dtype=float).reshape(len(rows), len(data["columns"]))
        return cls([int(s) for s in data["steps"]], [str(c) for c in data["columns"]], values)


@dataclass
class Report:
    """The answer of a checkup or a diagnosis.

    Attributes:
        findings: the problems found, most severe first.
        score: health score in [0, 1]: how likely the model is to train as it is, made to agree
            with the verdict (see :func:`agreeing_score`): at least 0.5 when healthy, at most
            0.49 when not.
        source: ``"checkup"`` (one forward/backward pass), ``"monitor"`` (a training run) or
            ``"trial"`` (:func:`gradmedic.trial`: the checkup and a short run on a copy).
        notes: how the numbers were obtained (e.g. the surrogate loss used).
        layers: the per-layer numbers the findings refer to, in forward order.
        raw_score: the estimate before it was made to agree with the verdict (what ``treat``
            compares and the lab calibrates); NaN when not known.
        curves: a trial's per-step series by name (see the module docstring); empty otherwise.
    """

    findings: list[Finding]
    score: float
    source: str
    notes: list[str] = field(default_factory=list)
    layers: list[LayerSummary] = field(default_factory=list)
    raw_score: float = math.nan
    curves: dict[str, Curve] = field(default_factory=dict)

    @property
    def progress_score(self) -> float:
        """``raw_score`` when known, else ``score``: the number a treatment's progress is judged by."""
        return self.raw_score if math.isfinite(self.raw_score) else self.score

    @property
    def healthy(self) -> bool:
        """True when no finding is a warning or worse."""
        return all(f.severity < Severity.WARNING for f in self.findings)

    @property
    def kinds(self) -> list[str]:
        """The kinds of the findings, in order."""
        return [f.kind for f in self.findings]

    def get(self, kind: str) -> Finding | None:
        """The first finding of ``kind``, or None."""
        return next((f for f in self.findings if f.kind == kind), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "source": self.source,
            "score": self.score,
            "healthy": self.healthy,
            "raw_score": _finite_or_none(self.raw_score),
            "notes": self.notes,
            "layers": [
                {k: _finite_or_none(v) if isinstance(v, float) else v for k, v in asdict(layer).items()}
                for layer in self.layers
            ],
            "findings": [f.to_dict() for f in self.findings],
            **({"curves": {name: c.to_dict() for name, c in self.curves.items()}} if self.curves else {}),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON text (see the module docstring); also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text: str) -> Report:
        """Read a report written by :meth:`to_json`.

        Raises:
            ConfigError: if ``text`` is not JSON (the message gives the line and column), not a
                gradmedic report, or a report with a field missing or of the wrong type.

        Example:
            >>> Report.from_json('{"format": "gradmedic.report", "findings": [')  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            gradmedic.errors.ConfigError: not a gradmedic report: not JSON at line 1, column 45 ...
        """
        try:
            data = json.loads(text)
        except ValueError as error:
            where = (
                f" at line {error.lineno}, column {error.colno}"
                if isinstance(error, json.JSONDecodeError)
                else ""
            )
            raise ConfigError(
                f"not a gradmedic report: not JSON{where} ({getattr(error, 'msg', error)}); "
                "read the text Report.to_json wrote, whole"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"not a gradmedic report (format={found!r}); write one with Report.to_json")
        try:
            return cls(
                findings=[Finding.from_dict(f) for f in data["findings"]],
                score=float(data["score"]),
                source=str(data["source"]),
                notes=list(data.get("notes", [])),
                layers=[LayerSummary.from_dict(item) for item in data.get("layers", [])],
                raw_score=math.nan if data.get("raw_score") is None else float(data["raw_score"]),
                curves={name: Curve.from_dict(c) for name, c in data.get("curves", {}).items()},
            )
        except KeyError as error:
            raise ConfigError(f"a damaged gradmedic report: the field {error.args[0]!r} is missing") from None
        except (TypeError, ValueError, AttributeError) as error:
            raise ConfigError(f"a damaged gradmedic report: {type(error).__name__}: {error}") from None

    def render(self) -> str:
        """The terminal view (plain text; ``print(report)`` shows the same)."""
        from .render import render_text

        return render_text(self)

    def to_markdown(self) -> str:
        """The report as Markdown."""
        from .render import render_markdown

        return render_markdown(self)

    def save_html(self, path: str | Path, history: History | None = None) -> Path:
        """Write the report as one self-contained HTML page (see :mod:`gradmedic.html_report`).

        Args:
            path: the file to write.
            history: the recorded run, if any: adds the pictures over training.

        Returns:
            The path written.

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = Report([], 1.0, "checkup").save_html(Path(folder) / "report.html")
            ...     path.suffix
            '.html'
        """
        return provided("save_html")(path, self, history)

    def _repr_html_(self) -> str:
        """How Jupyter shows a report: verdict, signal picture, findings (``html_report.report_fragment``)."""
        return provided("report_fragment")(self)

    def __str__(self) -> str:
        return self.render()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
