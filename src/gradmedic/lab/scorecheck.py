"""Does the checkup's health score at initialization predict which cells train?

A cell **trained** when its final metric reached :data:`TARGET_FRACTION` (90 %) of the best metric
of its study on the same task (the best over the study's ok cells of that task; tasks keep their
own best because their metrics are not comparable: the adding task's "solved" fraction and the copy
task's recalled symbols). The check is the ROC AUC of the score against that label over every ok
cell with a finite score: the probability that a trained cell scored higher than one that did not
(ties count one half). 1 is a perfect ranking, 0.5 a coin toss.

Example:
    >>> auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    >>> auc([0.5, 0.5], [True, False])
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .schema import CellResult
from .summary import group

#: A cell trained when its metric reached this fraction of its study's best (on its task).
TARGET_FRACTION = 0.9
#: The report lists this many of the most discordant cells on each side.
DISCORDANT = 5


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """ROC AUC of ``scores`` for binary ``labels``, from the Mann-Whitney U statistic.

    AUC = P(score of a positive > score of a negative) + P(tie) / 2, computed with mid-ranks:
    ``(sum of the positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``. NaN when either
    class is empty. Scores must be finite.

    Example:
        >>> auc([0.9, 0.8, 0.3, 0.2], [True, True, False, False]), auc([1.0, 2.0], [True, False])
        (1.0, 0.0)
        >>> math.isnan(auc([0.1, 0.2], [True, True]))
        True
    """
    values = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    mid_ranks = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank of each distinct value
    ranks = mid_ranks[inverse]
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def targets(results: Sequence[CellResult]) -> dict[tuple[str, str], float]:
    """The best finite metric of each (study, task) over ok cells.

    Example:
        >>> from gradmedic.lab.schema import CellResult, CellSpec
        >>> spec = CellSpec("init", "digits", "mlp", "he", {}, 0, 1, (0.1,))
        >>> targets([CellResult(spec, metric=0.5), CellResult(spec, metric=float("nan"))])
        {('init', 'digits'): 0.5}
    """
    best: dict[tuple[str, str], float] = {}
    for result in results:
        if result.ok and math.isfinite(result.metric):
            where = (result.spec.study, result.spec.task)
            best[where] = max(best.get(where, -math.inf), result.metric)
    return best


def trained(result: CellResult, best: dict[tuple[str, str], float]) -> bool:
    """Whether ``result`` reached TARGET_FRACTION of the best of its study and task."""
    top = best.get((result.spec.study, result.spec.task), math.nan)
    return bool(math.isfinite(result.metric) and top > 0 and result.metric >= TARGET_FRACTION * top)


@dataclass
class ScoreCheck:
    """The AUC of the health score against "trained", overall and per study.

    Attributes:
        auc: over every labelled cell (NaN when one class is empty).
        positives, negatives: the labelled cells that trained / did not.
        unscored: ok cells left out because their score is not finite.
        by_study: per study, ``(auc, positives, negatives)``.
        high_failed: cells that did not train yet scored at least as high as a cell that trained,
            highest score first (at most DISCORDANT).
        low_trained: cells that trained yet scored at most as high as a cell that did not,
            lowest score first (at most DISCORDANT).
        best: the target of each (study, task): the best metric.
    """

    auc: float
    positives: int
    negatives: int
    unscored: int
    by_study: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    high_failed: list[CellResult] = field(default_factory=list)
    low_trained: list[CellResult] = field(default_factory=list)
    best: dict[tuple[str, str], float] = field(default_factory=dict)


def _discordant(
    scored: list[CellResult], labels: list[bool], score: Callable[[CellResult], float]
) -> tuple[list[CellResult], list[CellResult]]:
    """Cells the score ranks wrongly: those that did not train but scored at least as high as some
    cell that trained (highest first), and those that trained but scored at most as high as some
    cell that did not (lowest first)."""
    positives = [score(r) for r, t in zip(scored, labels) if t]
    negatives = [score(r) for r, t in zip(scored, labels) if not t]
    low, high = min(positives, default=math.inf), max(negatives, default=-math.inf)
    failed = sorted((r for r, t in zip(scored, labels) if not t and score(r) >= low), key=lambda r: -score(r))
    passed = sorted((r for r, t in zip(scored, labels) if t and score(r) <= high), key=score)
    return failed, passed


def init_score(result: CellResult) -> float:
    """The checkup's health score at initialization."""
    return result.score


def early_score(result: CellResult) -> float:
    """The trial's score from the first 10 % of the cell's training steps."""
    return result.early_score


def score_check(
    results: Sequence[CellResult], score: Callable[[CellResult], float] = init_score
) -> ScoreCheck:
    """The health-score check over ``results`` (see the module doc); ``score`` reads the score to
    check from a cell (:func:`init_score`, or :func:`early_score` for the trial's early verdict).

    Example:
        >>> from gradmedic.lab.schema import CellResult, CellSpec
        >>> spec = CellSpec("depth", "digits", "mlp", "tanh", {}, 0, 1, (0.1,))
        >>> pairs = [(0.9, 0.95), (0.2, 0.3), (0.7, 0.1), (0.5, 0.9)]
        >>> check = score_check([CellResult(spec, score=s, metric=m) for s, m in pairs])
        >>> check.auc, check.positives, check.negatives
        (0.75, 2, 2)
        >>> [r.score for r in check.high_failed], [r.score for r in check.low_trained]
        ([0.7], [0.5])
    """
    best = targets(results)
    scored = [r for r in results if r.ok and math.isfinite(score(r))]
    labels = [trained(r, best) for r in scored]
    unscored = sum(1 for r in results if r.ok and not math.isfinite(score(r)))
    failed, passed = _discordant(scored, labels, score)
    by_study = {}
    for study, cells in group(scored, lambda r: r.spec.study).items():
        marks = [trained(r, best) for r in cells]
        by_study[study] = (auc([score(r) for r in cells], marks), sum(marks), len(marks) - sum(marks))
    return ScoreCheck(
        auc([score(r) for r in scored], labels),
        sum(labels),
        len(labels) - sum(labels),
        unscored,
        by_study,
        failed[:DISCORDANT],
        passed[:DISCORDANT],
        best,
    )
