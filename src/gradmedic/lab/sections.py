"""The sections of the lab report, as document blocks (see :mod:`gradmedic.lab.document`).

In order: :func:`facts` of the run, :func:`remedies_answered` (one row per study of a classic remedy),
:func:`score_section` (the health-score check), one :func:`study_section` per study,
:func:`failed_section` and :func:`method`. Every number comes from the saved cells; a picture with
nothing to draw is left out, one whose drawing needs a missing library says so.

Example:
    >>> from gradmedic.lab.schema import CellResult, CellSpec
    >>> from gradmedic.lab.summary import summarize
    >>> spec = CellSpec("optimizers", "digits", "mlp", "adam", {}, 0, 10, (0.01,))
    >>> table = remedies_answered(summarize([CellResult(spec, metric=0.9)]))[-1]
    >>> [row[:4] for row in table.rows[-3:]]  # doctest: +NORMALIZE_WHITESPACE
    [['optimizers', 'adaptive optimizers and a tuned learning rate', 'adam', 'nothing to compare'],
     ['depth', 'a shallower model', '-', 'not run: no cell'],
     ['treat', 'gradmedic.treat on a sick model', '-', 'not run: no cell']]
"""

from __future__ import annotations

import functools
import json
import math
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._version import __version__
from ..canvas import PAGE_DPI, encode_png, rgb_pixels
from . import figures
from .document import Block, Heading, Items, Nav, Picture, Table, Text
from .schema import CellResult, versions
from .scorecheck import TARGET_FRACTION, ScoreCheck
from .summary import MARGIN, STUDIES, Arm, Stat, StudySummary, axis_value, counted, group, show

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The lab's goal for the health score's ROC AUC on the full preset (issue: "at least 0.95").
AUC_GOAL = 0.95
#: Error texts are cut to this many characters in the report (the CSV keeps them whole).
ERROR_CHARS = 400
NO_DISCORDANT = "None: every cell that trained scored higher than every cell that did not."
#: An optional JSON object the runner may leave next to the cells; its entries join the facts.
RUN_FILE = "run.json"


def _anchor(study: str) -> str:
    return "study-" + "".join(c if c.isalnum() else "-" for c in study)


def nav(studies: Sequence[StudySummary]) -> Nav:
    links = [
        ("facts", "Facts"),
        ("remedies", "The nine classic remedies, point by point"),
        ("score", "Health score check"),
    ]
    links += [(_anchor(s.study), s.study) for s in studies]
    return Nav([*links, ("failed", "Failed cells"), ("method", "Method")])


def _cells(n: int) -> str:
    return f"{n} ok cell{'s' if n != 1 else ''}"


def _num(value: float, digits: int = 2, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


# -- facts -----------------------------------------------------------------------------------


def facts(
    results: Sequence[CellResult], studies: Sequence[StudySummary], out: Path, notes: Sequence[str]
) -> list[Block]:
    ok = [r for r in results if r.ok]
    nan_metric = sum(1 for r in ok if not math.isfinite(r.metric))
    wall = sum(r.wall_time for r in results if math.isfinite(r.wall_time))
    missing = [s for s in STUDIES if s not in {x.study for x in studies}]
    rows = [
        ["lab directory", str(out)],
        [
            "cells",
            f"{len(results)}: {len(ok)} ok ({nan_metric} with a NaN metric), {len(results) - len(ok)} failed",
        ],
        ["studies", ", ".join(s.study for s in studies) or "none"],
        ["classic remedies' studies not run", ", ".join(missing) or "none: all present"],
        [
            "compute time",
            f"{wall:.1f} s summed over cells ({wall / 60:.1f} min; with several workers "
            "the elapsed time is shorter)",
        ],
        *_run_file(out),
        ["computed with", _versions_text(results)],
        ["rendered with", _renderer()],
    ]
    blocks: list[Block] = [Heading("Facts of the run", anchor="facts"), Table(["fact", "value"], rows)]
    blocks.append(Heading("Cells per study", level=3))
    blocks.append(
        Table(
            [
                "study",
                "cells",
                "ok",
                "failed",
                "variants",
                "seeds",
                "steps",
                "learning rates swept",
                "compute time (s)",
            ],
            [_study_facts(s) for s in studies],
            numeric=(1, 2, 3, 8),
        )
    )
    return blocks + [Text(note, muted=True) for note in notes]


def _study_facts(study: StudySummary) -> list[str]:
    cells = study.cells
    ok = sum(1 for r in cells if r.ok)
    seeds = sorted({r.spec.seed for r in cells})
    steps = sorted({r.spec.steps for r in cells})
    lrs = sorted({lr for r in cells for lr in r.spec.lrs})
    wall = sum(r.wall_time for r in cells if math.isfinite(r.wall_time))
    return [
        study.study,
        str(len(cells)),
        str(ok),
        str(len(cells) - ok),
        str(len(study.layout.variants)),
        ", ".join(map(str, seeds)),
        ", ".join(map(str, steps)),
        ", ".join(f"{lr:g}" for lr in lrs),
        f"{wall:.1f}",
    ]


def _run_file(out: Path) -> list[list[str]]:
    """The scalar entries of ``DIR/run.json`` (written by the runner, if it was), as fact rows."""
    try:
        data = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    return [[f"run: {k}", show(v)] for k, v in data.items()]


def _versions_text(results: Sequence[CellResult]) -> str:
    seen = {json.dumps(r.versions, sort_keys=True) for r in results}
    texts = [", ".join(f"{k} {v}" for k, v in sorted(json.loads(s).items())) for s in sorted(seen)]
    return " | ".join(texts) or "no cell"


def _renderer() -> str:
    import matplotlib

    now = versions()
    return (
        f"gradmedic {__version__}, torch {now['torch']}, numpy {np.__version__}, "
        f"matplotlib {matplotlib.__version__}, python {platform.python_version()}"
    )


# -- the nine classic remedies, point by point -------------------------------------------------------------


def remedies_answered(studies: Sequence[StudySummary]) -> list[Block]:
    by_name = {s.study: s for s in studies}
    order = [*STUDIES, *(s.study for s in studies if s.study not in STUDIES)]
    header = [
        "study",
        "classic remedy",
        "baseline",
        "best arm",
        "mean gain",
        "largest gain: where, baseline → arm",
        f"helped (gain ≥ {MARGIN:g}) at",
        f"hurt (gain ≤ -{MARGIN:g}) at",
        "others that helped somewhere",
        "cells ok / failed",
    ]
    rows = [_seed_row(name, by_name.get(name)) for name in order]
    intro = (
        "For each study: the arm with the largest mean gain over the study's baseline (mean metric "
        "over seeds, arm minus baseline at the same condition, averaged over the conditions both "
        f"have); where it helped or hurt by at least {MARGIN:g}. The Method section says how the "
        "baseline is chosen."
    )
    return [
        Heading("The nine classic remedies, point by point", anchor="remedies"),
        Text(intro),
        Table(header, rows, numeric=(4,)),
    ]


def _seed_row(name: str, study: StudySummary | None) -> list[str]:
    remedy = STUDIES.get(name, "")
    if study is None:
        return [name, remedy, "-", "not run: no cell", "-", "-", "-", "-", "-", "0 / 0"]
    cells = f"{sum(1 for r in study.cells if r.ok)} / {len(study.errors)}"
    best = study.best
    baseline = study.layout.baseline or "-"
    if best is None:
        return [name, remedy, baseline, "nothing to compare", "-", "-", "-", "-", "-", cells]
    others = [
        f"{a.arm} ({len(a.helped)} of {len(a.compared)})" for a in study.arms if a is not best and a.helped
    ]
    return [
        name,
        remedy,
        baseline,
        best.arm,
        _num(best.mean_gain, signed=True),
        _largest(best),
        counted(best.helped, len(best.compared)),
        counted(best.hurt, len(best.compared)),
        ", ".join(others) or "none",
        cells,
    ]


def _largest(arm: Arm) -> str:
    gain = arm.best
    if gain is None:
        return "-"
    change = f"{_num(gain.base.mean)} → {_num(gain.this.mean)}"
    return f"{_num(gain.delta, signed=True)} at {gain.condition}: {change}"


# -- health score check ----------------------------------------------------------------------


def score_section(
    results: Sequence[CellResult], check: ScoreCheck, studies: Sequence[StudySummary]
) -> list[Block]:
    goal = "met" if check.auc >= AUC_GOAL else "not met"
    verdict = (
        ""
        if math.isnan(check.auc)
        else f" The lab's goal on the full preset is at least {AUC_GOAL}: {goal} here."
    )
    text = (
        f'ROC AUC of the health score at initialization against "trained" (final metric at least '
        f"{TARGET_FRACTION:.0%} of the best of its study on the same task): {_num(check.auc, 3)} over "
        f"{check.positives + check.negatives} ok cells with a score: {check.positives} trained (positives), "
        f"{check.negatives} did not (negatives); {_cells(check.unscored)} without a finite score left out."
        f"{verdict}"
    )
    blocks: list[Block] = [
        Heading("Does the health score at initialization predict training?", anchor="score"),
        Text(text),
    ]
    order = [s.study for s in studies]
    ranked = sorted(check.by_study.items(), key=lambda item: order.index(item[0]) if item[0] in order else 0)
    per_study = [[s, _num(a, 3), str(p), str(n)] for s, (a, p, n) in ranked]
    blocks.append(Table(["study", "ROC AUC", "trained", "did not"], per_study, numeric=(1, 2, 3)))
    blocks += _picture(
        "score",
        "Health score against trainability",
        "Each dot is an ok cell: its health score from the checkup at initialization (x) and its final "
        "metric as a share of the best of its study on its task (y; a NaN metric at 0). Dots above the "
        "dashed line trained. A score that predicts training puts them right, the others left.",
        lambda: figures.score_figure(results, check, [s.study for s in studies]),
    )
    header = ["cell", "task", "health score", "metric", "best of study and task", "findings at init"]
    layouts = {s.study: s.layout for s in studies}
    for title, cells in (
        ("did not train, yet scored at least as high as a cell that trained", check.high_failed),
        ("trained, yet scored at most as high as a cell that did not", check.low_trained),
    ):
        rows = [
            [
                layouts[r.spec.study].name(r),
                r.spec.task,
                _num(r.score),
                _num(r.metric),
                _num(check.best.get((r.spec.study, r.spec.task), math.nan)),
                ", ".join(r.findings) or "none",
            ]
            for r in cells
        ]
        blocks += [
            Heading(f"Most discordant: {title}", level=3),
            Table(header, rows, numeric=(2, 3, 4)) if rows else Text(NO_DISCORDANT, muted=True),
        ]
    return blocks


# -- the trial's early verdict ---------------------------------------------------------------

#: The issue's target for the early trial's ROC AUC on the full preset.
EARLY_AUC_GOAL = 0.97


def early_section(init: ScoreCheck, early: ScoreCheck, studies: Sequence[StudySummary]) -> list[Block]:
    """ROC AUC of the checkup's score at initialization and of the trial's score after the first
    10 % of each cell's steps, side by side, and the cells the early score ranks wrongly."""
    if early.positives + early.negatives == 0:
        return []
    goal = "met" if early.auc >= EARLY_AUC_GOAL else "not met"
    text = (
        f"ROC AUC against the same label, over the cells with an early verdict: the checkup at "
        f"initialization {_num(init.auc, 3)}, the trial after at most 10 % of each run's steps (the "
        f"run's own first steps, watched; the best over the learning-rate sweep) {_num(early.auc, 3)} "
        f"({early.positives} trained, {early.negatives} did not). The goal on the full preset is at "
        f"least {EARLY_AUC_GOAL}: {goal} here."
    )
    order = [s.study for s in studies]
    rows = [
        [study, _num(init.by_study.get(study, (math.nan, 0, 0))[0], 3), _num(a, 3), str(p), str(n)]
        for study, (a, p, n) in sorted(
            early.by_study.items(), key=lambda i: order.index(i[0]) if i[0] in order else 0
        )
    ]
    blocks: list[Block] = [
        Heading("Does the early trial predict training better?", anchor="early"),
        Text(text),
        Table(["study", "AUC at init", "AUC early trial", "trained", "did not"], rows, numeric=(1, 2, 3, 4)),
    ]
    layouts = {s.study: s.layout for s in studies}
    header = ["cell", "task", "init score", "early score", "metric", "early findings"]
    for title, cells in (("did not train, yet the early trial scored it high", early.high_failed),
                         ("trained, yet the early trial scored it low", early.low_trained)):  # fmt: skip
        listed = [
            [layouts[r.spec.study].name(r) if r.spec.study in layouts else r.spec.label, r.spec.task,
             _num(r.score), _num(r.early_score), _num(r.metric), ", ".join(r.early_findings) or "none"]
            for r in cells
        ]  # fmt: skip
        blocks += [
            Heading(f"Discordant early: {title}", level=3),
            Table(header, listed, numeric=(2, 3, 4)) if listed else Text(NO_DISCORDANT, muted=True),
        ]
    return blocks


# -- one study -------------------------------------------------------------------------------

CAPTIONS = {
    "signal": "Backprop signal (RMS of the gradient of the loss with respect to each layer's output) "
    "at initialization, layer by layer from the input (left) to the output (right), log scale; "
    "median over seeds. Per panel, the cells of the largest axis value. A line that falls to the "
    "left is a vanishing gradient, one that rises an exploding gradient. Variants that differ only "
    "in training (optimizer, clipping) share the model at initialization, so their lines coincide. "
    "Non-finite values are left out.",
    "metric": "Final test metric of each cell (the run at the best learning rate of its sweep): the "
    "line is the mean over seeds, the band spans the worst to the best seed (dots: each seed, "
    "bar: mean).",
    "curves": "Learning curves of the chosen run: test metric (upper) and training loss (lower, log "
    "scale when positive) against optimizer steps, mean over seeds; per panel, the cells of the "
    "largest axis value.",
    "heatmap": "Mean over seeds of the final test metric (left) and of the health score at "
    "initialization (right), for each variant (rows) and value of the second factor (columns). "
    "Blank: no finite value.",
    "time": "Backprop signal through time at initialization: the gradient norm at each hidden state "
    "divided by the one at the last step, against steps back (log scale); median over seeds. A "
    "dotted line in a line's colour marks its memory horizon: where it falls below the grey "
    "threshold.",
}
DRAW: dict[str, Callable[[StudySummary], Figure | None]] = {
    "signal": figures.signal_figure,
    "metric": figures.metric_figure,
    "curves": figures.curves_figure,
    "heatmap": figures.heatmap_figure,
    "time": figures.time_figure,
}


def study_section(study: StudySummary) -> list[Block]:
    remedy = STUDIES.get(study.study, "")
    blocks: list[Block] = [
        Heading(f"{study.study}: {remedy}" if remedy else study.study, anchor=_anchor(study.study)),
        Text(_grid_text(study)),
    ]
    blocks += [
        Text(_verdict(study)),
        _arm_table(study),
        Heading("Metric per condition (mean ± sd over seeds)", 3),
        _condition_table(study),
    ]
    for kind, draw in DRAW.items():
        name = f"{study.study}_{kind}"
        blocks += _picture(name, f"{study.study}: {kind}", CAPTIONS[kind], functools.partial(draw, study))
    if study.errors:
        blocks += [Heading("Failed cells", 3), Items([_error_line(r) for r in study.errors])]
    return blocks


def _grid_text(study: StudySummary) -> str:
    """The study's grid in one paragraph: cells, variants, axes, second factor, baseline."""
    lay = study.layout
    cells = study.cells
    parts = [f"{len(cells)} cells ({len(study.errors)} failed)", f"variants: {', '.join(lay.variants)}"]
    if lay.groups:
        parts.append("variant names read as group/variant (the group is the second factor)")
    for axis, chosen in group(cells, lambda r: r.spec.axis).items():
        if axis is not None:
            xs = sorted({x for r in chosen if (x := axis_value(r)) is not None})
            parts.append(f"axis: {axis} in {', '.join(show(x) for x in xs) or 'none'}")
    if lay.factors:
        facets = sorted({lay.facet(r) for r in cells})
        parts.append(f"second factor: {' x '.join(lay.factors)} ({'; '.join(facets)})")
    parts.append(f"tasks: {', '.join(sorted({r.spec.task for r in cells}))}")
    parts.append(f"metric: {', '.join(study.metric_names())}")
    arms = "axis values" if lay.mode == "axis" else "variants"
    parts.append(f"compared: {arms}; baseline: {lay.baseline or 'none'} ({lay.why})")
    return "Grid: " + "; ".join(parts) + "."


def _verdict(study: StudySummary) -> str:
    best = study.best
    if best is None:
        return "Nothing to compare: the study has no baseline with a finite metric and another arm beside it."
    gain = best.best
    text = (
        f"Largest mean gain over {study.layout.baseline}: {best.arm}, {_num(best.mean_gain, signed=True)} on "
        f"average over {len(best.compared)} conditions"
    )
    if gain is not None:
        text += f"; most at {gain.condition} ({_num(gain.base.mean)} → {_num(gain.this.mean)})"
    total = len(best.compared)
    text += f". Helped at {counted(best.helped, total)}; hurt at {counted(best.hurt, total)}."
    return text


def _arm_table(study: StudySummary) -> Table:
    header = [
        "arm",
        "metric (mean ± sd over ok cells)",
        "mean gain",
        "largest gain",
        "helped at",
        "hurt at",
        "health score (mean)",
        "reached target (median step)",
        "failed",
    ]
    rows = []
    for arm in study.arms:
        base = arm.arm == study.layout.baseline
        reached, median = arm.reached()
        rows.append(
            [
                arm.arm + (" (baseline)" if base else ""),
                arm.metric.text(seeds=False),
                "-" if base else _num(arm.mean_gain, signed=True),
                "-" if base else _largest(arm),
                "-" if base else counted(arm.helped, len(arm.compared)),
                "-" if base else counted(arm.hurt, len(arm.compared)),
                arm.score.text(seeds=False),
                f"{reached} of {len(arm.ok)}" + (f" ({median:g})" if reached else ""),
                str(arm.errors),
            ]
        )
    return Table(header, rows, numeric=(2, 6, 8))


def _condition_table(study: StudySummary) -> Table:
    conditions = study.conditions
    rows = []
    for arm in study.arms:
        at = group((r for r in arm.cells if r.ok), study.layout.condition)
        rows.append(
            [
                arm.arm,
                *(
                    Stat.of(r.metric for r in at.get(c, [])).text(seeds=False) if c in at else "-"
                    for c in conditions
                ),
            ]
        )
    return Table(["arm", *conditions], rows, numeric=tuple(range(1, len(conditions) + 1)))


def _picture(name: str, title: str, caption: str, draw: Callable[[], Figure | None]) -> list[Block]:
    """The drawn figure as a Picture block; nothing when there is nothing to draw."""
    try:
        fig = draw()
    except ImportError as error:
        return [Text(f"{title}: skipped ({error}).", muted=True)]
    if fig is None:
        return []
    return [Picture(name, title, caption, _png(fig))]


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes at the pages' resolution, drawn once."""
    return encode_png(rgb_pixels(fig, PAGE_DPI))


# -- failed cells and method -----------------------------------------------------------------


def _error_line(result: CellResult) -> str:
    """``label (task): first line of the error ... its last line``, cut to ERROR_CHARS."""
    lines = [line.strip() for line in (result.error or "no error text").splitlines() if line.strip()]
    text = lines[0] + (f" ... {lines[-1]}" if len(lines) > 1 else "")
    cut = text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."
    return f"{result.spec.label} ({result.spec.task}): {cut}"


def failed_section(results: Sequence[CellResult]) -> list[Block]:
    failed = [r for r in results if not r.ok]
    body: Block = Items([_error_line(r) for r in failed]) if failed else Text("None: every cell finished.")
    return [Heading(f"Failed cells ({len(failed)})", anchor="failed"), body]


def method() -> list[Block]:
    """How the report's numbers are defined, in words."""
    notes = [
        "Arms and conditions: in most studies the arms are the variants and a condition is "
        "everything else the grid varies (axis value and second factor); in the depth study (and "
        "any study with one variant) the arms are the axis values and the baseline is the largest "
        "one, the deepest model.",
        'Baseline of a variant study: the variant whose cells carry "baseline": true in their '
        "params; else the study's conventional baseline (sigmoid, PyTorch's default init, none for "
        "normalization and clipping, plain for residual, rnn, sgd, before for treat); else the "
        "first variant alphabetically.",
        "Gain: an arm's mean metric over seeds minus the baseline's at the same condition. Helped: "
        f"gain at least {MARGIN:g}; hurt: at most -{MARGIN:g}. Mean gain: averaged over the "
        "conditions both arms have.",
        "Second factor: a task, recipe or parameter that takes several values among the cells of "
        "one variant at one axis value (the task of the recurrent study), or the group of variant "
        "names that carry it: tanh/he is variant he in group tanh, mlp+batchnorm is variant "
        "batchnorm in group mlp and mlp is variant none.",
        f"Health score check: an ok cell trained when its final metric reached {TARGET_FRACTION:.0%} "
        "of the best of its study on the same task; ROC AUC by the Mann-Whitney statistic, ties "
        "counted one half.",
        "Non-finite values (NaN, Inf) are left out of means, medians and pictures and counted where "
        "it matters; a failed cell is listed with its error and left out of every number.",
    ]
    return [Heading("Method", anchor="method"), Items(notes)]
