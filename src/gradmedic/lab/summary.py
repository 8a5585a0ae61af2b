"""What a lab's results say, study by study: each study's grid, its baseline, and every variant's
metric against that baseline, cell condition by cell condition.

A study compares **arms** under matched **conditions**:

- in most studies an arm is a variant (``relu``, ``he``, ``lstm``) and a condition is everything
  else the grid varies: the axis value (``depth=32``, ``length=100``) and the *second factor*,
  any task, recipe or parameter that varies among the cells of one variant at one axis value
  (the task of the ``recurrent`` study). A variant name may carry the second factor itself:
  ``tanh/he`` is variant ``he`` in group ``tanh``, ``mlp+batchnorm`` is variant ``batchnorm`` in
  group ``mlp`` (and ``mlp`` variant ``none``), see :func:`split_variants`;
- in the ``depth`` study (and in any study with a single variant) the remedy is the axis itself
  ("a shallower model"): an arm is an axis value and a condition is a variant (with the second
  factor), and the baseline is the **largest** axis value (the deepest or longest).

**The baseline** of a variant study is, in this order: the (compared) variant of the cells
whose params carry ``"baseline": True``; else the first of the study's conventional names present
(:data:`BASELINE_NAMES`: ``sigmoid``, PyTorch's ``default`` init, ``none`` for a normalization or
clipping, ``plain`` for residual, ``rnn``, ``sgd``, ``before`` for treat); else the variant that
comes first alphabetically. The report names it for every study.

An arm's **gain** at a condition is its mean metric over seeds minus the baseline's at the same
condition. It *helped* there when the gain is at least :data:`MARGIN` (0.05 of the metric's
[0, 1] range) and *hurt* there when the gain is at most ``-MARGIN``. Cells whose metric is not
finite are left out of the means and counted.

Example:
    >>> from gradmedic.lab.schema import CellResult, CellSpec
    >>> def cell(variant, depth, metric):
    ...     spec = CellSpec("activations", "digits", "mlp", variant, {"depth": depth}, 0, 10, (0.1,), "depth")
    ...     return CellResult(spec, metric=metric, score=metric)
    >>> cells = [cell("sigmoid", 4, 0.9), cell("sigmoid", 32, 0.1), cell("relu", 4, 0.92),
    ...          cell("relu", 32, 0.8)]
    >>> study = summarize(cells)[0]
    >>> study.layout.baseline, study.best.arm, round(study.best.mean_gain, 2), study.best.helped
    ('sigmoid', 'relu', 0.36, ['depth=32'])
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .schema import CellResult

#: The studies in the order of the nine classic remedies, each with the remedy it measures.
STUDIES: dict[str, str] = {
    "activations": "non-saturating activations (ReLU family, ELU, SELU, SiLU, GELU)",
    "init": "a weight initialization matched to the activation",
    "batchnorm": "batch normalization",
    "layernorm": "layer normalization",
    "residual": "residual (skip) connections",
    "clipping": "gradient clipping",
    "recurrent": "gated recurrent units (LSTM, GRU) instead of a plain RNN",
    "optimizers": "adaptive optimizers and a tuned learning rate",
    "depth": "a shallower model",
    "treat": "gradmedic.treat on a sick model",
}
#: Conventional names of the baseline variant, per study, tried in order (see the module doc).
BASELINE_NAMES: dict[str, tuple[str, ...]] = {
    "activations": ("sigmoid",),
    "init": ("default", "pytorch", "pytorch_default", "torch_default"),
    "batchnorm": ("none", "plain", "without", "no_batchnorm", "no_norm", "off"),
    "layernorm": ("none", "plain", "without", "no_layernorm", "no_norm", "off"),
    "residual": ("plain", "none", "without"),
    "clipping": ("none", "no_clipping", "off"),
    "recurrent": ("rnn", "vanilla", "elman"),
    "optimizers": ("sgd",),
    "treat": ("before", "sick", "untreated"),
}
#: Names tried for a study not listed in BASELINE_NAMES.
GENERIC_BASELINES = ("baseline", "none", "plain", "default", "before")
#: Studies whose arms are the axis values (the remedy is "shallower"): see the module doc.
AXIS_STUDIES = frozenset({"depth"})
#: A gain counts (helped/hurt) from this difference of mean metrics, on the metric's [0, 1] range.
MARGIN = 0.05
#: Readable names of the usual axes, with their units.
AXIS_LABELS = {"depth": "depth (hidden layers)", "length": "sequence length (time steps)"}


# -- reading a cell --------------------------------------------------------------------------


def axis_value(result: CellResult) -> float | None:
    """The cell's axis value as a float, or None (no axis, missing or not a number).

    Example:
        >>> from gradmedic.lab.schema import CellResult, CellSpec
        >>> axis_value(CellResult(CellSpec("s", "t", "r", "v", {"depth": 8}, 0, 1, (0.1,), "depth")))
        8.0
    """
    spec = result.spec
    if spec.axis is None:
        return None
    try:
        value = float(spec.params[spec.axis])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def show(value: Any) -> str:
    """A parameter value as the report writes it: ``32`` (not ``32.0``), strings bare, else JSON.

    Example:
        >>> show(32.0), show("tanh"), show([1, 2]), show(None)
        ('32', 'tanh', '[1, 2]', 'none')
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def finite(values: Iterable[float | None]) -> list[float]:
    """The finite values, as floats."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]


# -- a study's grid --------------------------------------------------------------------------


def split_variants(variants: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Each variant's ``(group, arm)`` when the study's names carry a second factor, else ``{}``.

    Two conventions: every name is ``group/arm`` (split at the last ``/``: ``tanh/he``), or the
    names are ``base`` and ``base+remedy`` with no ``/`` (``mlp``, ``mlp+batchnorm``: the bare
    base's arm is ``none``). Other names (``rnn``, ``rnn/orthogonal``, ``lstm``) are arms as they are.

    Example:
        >>> split_variants(["tanh/he", "relu/default"])
        {'tanh/he': ('tanh', 'he'), 'relu/default': ('relu', 'default')}
        >>> split_variants(["mlp", "mlp+batchnorm"])
        {'mlp': ('mlp', 'none'), 'mlp+batchnorm': ('mlp', 'batchnorm')}
        >>> split_variants(["rnn", "rnn/orthogonal", "lstm"])
        {}
    """
    if variants and all("/" in v for v in variants):
        return {v: (v.rsplit("/", 1)[0], v.rsplit("/", 1)[1]) for v in variants}
    plus = any("+" in v for v in variants) and all("/" not in v and v.count("+") <= 1 for v in variants)
    if plus:
        return {v: (v.split("+")[0], v.split("+")[1] if "+" in v else "none") for v in variants}
    return {}


def axis_title(axis: str | None) -> str:
    """A readable axis name with its unit: ``depth (hidden layers)``."""
    return AXIS_LABELS.get(axis or "", axis or "")


@dataclass(frozen=True)
class Layout:
    """How a study's cells are laid out: arms, baseline, axis and second factor.

    Attributes:
        study: the study's name.
        mode: ``"variant"`` (arms are variants) or ``"axis"`` (arms are axis values).
        variants: the compared variants (the arm part of split names, see :func:`split_variants`),
            baseline first in variant mode, then alphabetical.
        baseline: the baseline arm (a variant, or ``"depth=32"`` in axis mode), or None.
        why: how the baseline was chosen, in words.
        axis: the study's (most common) axis parameter, or None.
        xs: the values of that axis, ascending.
        factors: the second factor's keys: :data:`GROUP` (the group part of split variant
            names), ``task``, ``recipe`` or param names; maybe none.
        groups: ``(group, arm)`` of each variant name whose name was split.
        several_x: whether the cells have more than one axis value (or more than one axis).
    """

    study: str
    mode: str
    variants: tuple[str, ...]
    baseline: str | None
    why: str
    axis: str | None
    xs: tuple[float, ...]
    factors: tuple[str, ...] = ()
    groups: dict[str, tuple[str, str]] = field(default_factory=dict)
    several_x: bool = False

    def variant(self, result: CellResult) -> str:
        """The compared variant of a cell: its name, or the arm part of a split name."""
        return (
            self.groups[result.spec.variant][1] if result.spec.variant in self.groups else result.spec.variant
        )

    def value(self, result: CellResult, key: str) -> str:
        """A cell's value of a second-factor key (the group, the task, the recipe or a param)."""
        if key == GROUP:
            return self.groups[result.spec.variant][0] if result.spec.variant in self.groups else ""
        if key in ("task", "recipe"):
            return str(getattr(result.spec, key))
        return show(result.spec.params.get(key))

    def x_label(self, result: CellResult) -> str:
        """``depth=32`` (the cell's own axis), or ``""``."""
        x = axis_value(result)
        return "" if x is None else f"{result.spec.axis}={show(x)}"

    def facet(self, result: CellResult) -> str:
        """The cell's second-factor values (``tanh``, ``task=copy``), or ``""``."""
        return ", ".join(self._facet_parts(result))

    def _facet_parts(self, result: CellResult, group: bool = True) -> list[str]:
        parts = []
        for key in self.factors:
            if key != GROUP:
                parts.append(f"{key}={self.value(result, key)}")
            elif group:
                parts.append(self.value(result, key))
        return parts

    def arm(self, result: CellResult) -> str:
        return self.x_label(result) if self.mode == "axis" else self.variant(result)

    def condition(self, result: CellResult) -> str:
        """What else must match for two arms to be compared (``all`` when nothing varies)."""
        if self.mode == "axis":
            parts = [self.variant(result), self.facet(result)]
        else:
            parts = [self.facet(result), self.x_label(result) if self.several_x else ""]
        return ", ".join(p for p in parts if p) or "all"

    def name(self, result: CellResult) -> str:
        """The cell's label with its other second-factor values: ``recurrent/gru/length=5/seed=0
        (task=copy)``."""
        extra = ", ".join(self._facet_parts(result, group=False))
        return f"{result.spec.label} ({extra})" if extra else result.spec.label

    @property
    def arms(self) -> tuple[str, ...]:
        """Every arm, baseline first."""
        if self.mode == "variant":
            return self.variants
        labels = [f"{self.axis}={show(x)}" for x in self.xs]
        return tuple(sorted(labels, key=lambda label: label != self.baseline))


#: The key of the second factor read from split variant names (see :func:`split_variants`).
GROUP = "group"


def layout(results: Sequence[CellResult]) -> Layout:
    """The layout of one study's cells (all of the same study), see :class:`Layout`.

    Example:
        >>> from gradmedic.lab.schema import CellResult, CellSpec
        >>> cells = [CellResult(CellSpec("init", "digits", "mlp", f"{act}/{init}", {"activation": act,
        ...                              "depth": 8}, 0, 10, (0.1,), "depth"))
        ...          for init in ("he", "default") for act in ("relu", "tanh")]
        >>> found = layout(cells)
        >>> found.variants, found.baseline, found.factors, found.condition(cells[0])
        (('default', 'he'), 'default', ('group',), 'relu')
    """
    study = results[0].spec.study
    axes = [r.spec.axis for r in results if r.spec.axis is not None]
    axis = max(sorted(set(axes)), key=axes.count) if axes else None
    xs = tuple(sorted({x for r in results if r.spec.axis == axis and (x := axis_value(r)) is not None}))
    several = len({(r.spec.axis, axis_value(r)) for r in results}) > 1
    groups = split_variants(sorted({r.spec.variant for r in results}))
    plain = Layout(study, "variant", (), None, "", axis, xs, (), groups, several)
    factors = _factors(results, plain)
    variants = sorted({plain.variant(r) for r in results})
    if (study in AXIS_STUDIES or len(variants) == 1) and len(xs) > 1 and axis is not None:
        deepest = f"{axis}={show(xs[-1])}"
        why = f"the largest {axis} ({show(xs[-1])}): each smaller {axis} is compared with it"
        return Layout(study, "axis", tuple(variants), deepest, why, axis, xs, factors, groups, several)
    marked = [r for r in results if r.spec.params.get("baseline") is True]
    baseline, why = _baseline(study, marked, plain, variants)
    ordered = tuple(sorted(variants, key=lambda v: v != baseline))
    return Layout(study, "variant", ordered, baseline, why, axis, xs, factors, groups, several)


def _baseline(
    study: str, marked: list[CellResult], plain: Layout, variants: list[str]
) -> tuple[str | None, str]:
    if marked:
        return sorted(plain.variant(r) for r in marked)[0], 'marked by "baseline": true in its params'
    for name in BASELINE_NAMES.get(study, GENERIC_BASELINES):
        if name in variants:
            return name, f"the conventional baseline of the {study} study"
    if not variants:
        return None, "no variant"
    return variants[0], "no marked or conventional baseline: the first variant alphabetically"


def _factors(results: Sequence[CellResult], plain: Layout) -> tuple[str, ...]:
    """Keys that vary among cells of one compared variant at one axis value, none redundant."""
    params = sorted({k for r in results for k in r.spec.params} - {plain.axis, "baseline", "task", "recipe"})
    several_groups = len({group for group, _ in plain.groups.values()}) > 1
    kept: list[str] = [GROUP] if several_groups else []  # the names declare it: kept even if redundant
    for key in ["task", "recipe", *params]:
        if not _determined(results, key, plain, tuple(kept)):
            kept.append(key)
    return tuple(kept)


def _determined(results: Sequence[CellResult], key: str, plain: Layout, kept: tuple[str, ...]) -> bool:
    """Whether ``key`` has one value per compared variant, axis value and values of ``kept``."""
    seen: dict[tuple[str, ...], str] = {}
    for result in results:
        where = (plain.variant(result), plain.x_label(result), *(plain.value(result, k) for k in kept))
        value = plain.value(result, key)
        if seen.setdefault(where, value) != value:
            return False
    return True


# -- numbers over seeds ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Mean, standard deviation, range and counts of a metric over seeds (NaN when empty).

    Example:
        >>> s = Stat.of([0.5, 0.7, float("nan")])
        >>> round(s.mean, 2), s.n, s.missing, s.text()
        (0.6, 2, 1, '0.60 ± 0.10 (2 seeds, 1 NaN)')
    """

    mean: float
    std: float
    low: float
    high: float
    n: int
    missing: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        values = list(values)
        kept = finite(values)
        if not kept:
            return cls(math.nan, math.nan, math.nan, math.nan, 0, len(values))
        array = np.asarray(kept)
        return cls(
            float(array.mean()),
            float(array.std()),
            float(array.min()),
            float(array.max()),
            len(kept),
            len(values) - len(kept),
        )

    def text(self, seeds: bool = True) -> str:
        if self.n == 0:
            return f"n/a ({self.missing} NaN)" if self.missing else "n/a"
        core = f"{self.mean:.2f} ± {self.std:.2f}"
        extra = [f"{self.n} seed{'s' if self.n != 1 else ''}"] if seeds else []
        extra += [f"{self.missing} NaN"] if self.missing else []
        return f"{core} ({', '.join(extra)})" if extra else core


def group(results: Iterable[CellResult], key: Callable[[CellResult], Any]) -> dict[Any, list[CellResult]]:
    """The cells by ``key``, in first-seen order."""
    groups: dict[Any, list[CellResult]] = {}
    for result in results:
        groups.setdefault(key(result), []).append(result)
    return groups


# -- arms against the baseline ---------------------------------------------------------------


@dataclass(frozen=True)
class Gain:
    """One arm against the baseline at one condition (metrics over seeds)."""

    condition: str
    base: Stat
    this: Stat

    @property
    def delta(self) -> float:
        return self.this.mean - self.base.mean


@dataclass
class Arm:
    """One arm of a study: its metrics and its gains over the baseline, condition by condition."""

    arm: str
    cells: list[CellResult]
    gains: list[Gain] = field(default_factory=list)

    @property
    def ok(self) -> list[CellResult]:
        return [r for r in self.cells if r.ok]

    @property
    def errors(self) -> int:
        return len(self.cells) - len(self.ok)

    @property
    def metric(self) -> Stat:
        return Stat.of(r.metric for r in self.ok)

    @property
    def score(self) -> Stat:
        return Stat.of(r.score for r in self.ok)

    @property
    def compared(self) -> list[Gain]:
        return [g for g in self.gains if math.isfinite(g.delta)]

    @property
    def mean_gain(self) -> float:
        deltas = [g.delta for g in self.compared]
        return float(np.mean(deltas)) if deltas else math.nan

    @property
    def best(self) -> Gain | None:
        return max(self.compared, key=lambda g: g.delta, default=None)

    @property
    def helped(self) -> list[str]:
        return [g.condition for g in self.compared if g.delta >= MARGIN]

    @property
    def hurt(self) -> list[str]:
        return [g.condition for g in self.compared if g.delta <= -MARGIN]

    def reached(self) -> tuple[int, float]:
        """How many ok cells reached the target, and their median steps to it."""
        steps = [r.steps_to_target for r in self.ok if r.steps_to_target is not None]
        return len(steps), float(np.median(steps)) if steps else math.nan


@dataclass
class StudySummary:
    """A study's layout, arms (baseline first) and failed cells."""

    layout: Layout
    arms: list[Arm]

    @property
    def study(self) -> str:
        return self.layout.study

    @property
    def cells(self) -> list[CellResult]:
        return [r for arm in self.arms for r in arm.cells]

    @property
    def errors(self) -> list[CellResult]:
        return [r for r in self.cells if not r.ok]

    @property
    def conditions(self) -> list[str]:
        """Every condition, in the order of the second factor, then the axis."""
        lay = self.layout
        ordered = sorted(
            self.cells, key=lambda r: (lay.variant(r) if lay.mode == "axis" else "", _order(lay, r))
        )
        return list(group(ordered, lay.condition))

    @property
    def best(self) -> Arm | None:
        """The non-baseline arm with the largest mean gain, or None."""
        others = [a for a in self.arms if a.arm != self.layout.baseline and math.isfinite(a.mean_gain)]
        return max(others, key=lambda a: a.mean_gain, default=None)

    def metric_names(self) -> list[str]:
        return sorted({r.metric_name for r in self.cells})


def _order(lay: Layout, result: CellResult) -> tuple[str, str, float]:
    """Cells sort by second factor, then axis (numerically)."""
    return (lay.facet(result), result.spec.axis or "", axis_value(result) or 0.0)


def summarize(results: Sequence[CellResult]) -> list[StudySummary]:
    """One :class:`StudySummary` per study, the classic remedies' studies first, in their order."""
    by_study = group(results, lambda r: r.spec.study)
    order = sorted(by_study, key=lambda s: (list(STUDIES).index(s) if s in STUDIES else len(STUDIES), s))
    return [summarize_study(by_study[s]) for s in order]


def summarize_study(results: Sequence[CellResult]) -> StudySummary:
    """The arms of one study's cells and their gains over its baseline (see the module doc)."""
    found = layout(results)
    results = sorted(results, key=lambda r: (_order(found, r), r.spec.variant, r.spec.seed))
    by_arm = group(results, found.arm)
    arms = [Arm(name, by_arm.get(name, [])) for name in found.arms]
    arms += [Arm(name, cells) for name, cells in by_arm.items() if name not in found.arms]
    base = next((a for a in arms if a.arm == found.baseline), None)
    if base is not None:
        base_at = {
            c: Stat.of(r.metric for r in cells if r.ok)
            for c, cells in group(base.cells, found.condition).items()
        }
        for arm in arms:
            if arm is base:
                continue
            for condition, cells in group(arm.cells, found.condition).items():
                if condition in base_at:
                    arm.gains.append(
                        Gain(condition, base_at[condition], Stat.of(r.metric for r in cells if r.ok))
                    )
    return StudySummary(found, arms)


def counted(conditions: Sequence[str], total: int) -> str:
    """``"depth=16; depth=32 (2 of 3)"``, or ``"nowhere (0 of 3)"``.

    Example:
        >>> counted(["depth=16", "depth=32"], 3), counted([], 2)
        ('depth=16; depth=32 (2 of 3)', 'nowhere (0 of 2)')
    """
    return f"{'; '.join(conditions) or 'nowhere'} ({len(conditions)} of {total})"
