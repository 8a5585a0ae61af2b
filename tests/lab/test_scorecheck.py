"""Unit tests of :mod:`gradmedic.lab.scorecheck`: ROC AUC of the health score against "trained".

The AUC is checked against its definition counted pair by pair: P(positive > negative) + P(tie)/2.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from gradmedic.lab.schema import CellResult, CellSpec
from gradmedic.lab.scorecheck import TARGET_FRACTION, auc, early_score, score_check, targets, trained


def pairwise_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, t in zip(scores, labels) if t]
    neg = [s for s, t in zip(scores, labels) if not t]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_is_the_pairwise_probability_with_ties_counted_half(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = list(rng.integers(0, 6, size=40) / 5.0)  # many ties
    labels = list(rng.random(40) < 0.4)
    assert auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels), abs=1e-12)


def test_auc_extremes_and_empty_classes() -> None:
    assert auc([3, 2, 1], [True, False, False]) == 1.0
    assert auc([1, 2, 3], [True, False, False]) == 0.0
    assert math.isnan(auc([1.0, 2.0], [False, False]))
    assert math.isnan(auc([], []))


def cell(
    study: str, task: str, metric: float, score: float = 0.5, early: float = math.nan, **kw: object
) -> CellResult:
    spec = CellSpec(study, task, "mlp", f"v{metric}", {}, 0, 1, (0.1,))
    return CellResult(spec, score=score, metric=metric, early_score=early, **kw)  # type: ignore[arg-type]


def test_targets_are_the_best_ok_finite_metric_per_study_and_task() -> None:
    results = [
        cell("a", "digits", 0.8), cell("a", "digits", 0.9), cell("a", "adding", 0.3),
        cell("b", "digits", math.nan), cell("b", "digits", 0.99, status="error"), cell("b", "digits", 0.4),
    ]  # fmt: skip
    assert targets(results) == {("a", "digits"): 0.9, ("a", "adding"): 0.3, ("b", "digits"): 0.4}


def test_trained_means_reaching_ninety_percent_of_the_best() -> None:
    best = {("a", "digits"): 0.8}
    assert trained(cell("a", "digits", TARGET_FRACTION * 0.8), best)
    assert not trained(cell("a", "digits", TARGET_FRACTION * 0.8 - 1e-9), best)
    assert not trained(cell("a", "digits", math.nan), best)
    assert not trained(cell("a", "copy", 0.8), best)  # no target for its task
    assert not trained(cell("a", "digits", 0.0), {("a", "digits"): 0.0})  # a best of 0 trains nothing


def test_score_check_matches_the_definition_overall_and_per_study() -> None:
    rng = np.random.default_rng(1)
    results = [
        cell(study, "digits", float(rng.random()), score=float(rng.random()))
        for study in ("a", "b") for _ in range(12)
    ]  # fmt: skip
    results += [
        cell("a", "digits", 0.1, score=math.nan),
        cell("a", "digits", 0.99, score=0.0, status="error"),
    ]
    check = score_check(results)
    best = targets(results)
    scored = [r for r in results if r.ok and math.isfinite(r.score)]
    labels = [trained(r, best) for r in scored]
    assert check.auc == pytest.approx(pairwise_auc([r.score for r in scored], labels))
    assert (check.positives, check.negatives, check.unscored) == (sum(labels), len(labels) - sum(labels), 1)
    for study in ("a", "b"):
        mine = [(r.score, t) for r, t in zip(scored, labels) if r.spec.study == study]
        value, pos, neg = check.by_study[study]
        assert value == pytest.approx(pairwise_auc(*map(list, zip(*mine))))
        assert (pos, neg) == (sum(t for _, t in mine), sum(not t for _, t in mine))
    low = min(r.score for r, t in zip(scored, labels) if t)
    expected = sorted((r.score for r, t in zip(scored, labels) if not t and r.score >= low), reverse=True)
    assert [r.score for r in check.high_failed] == expected[:5]
    assert check.best == best


def test_score_check_can_read_the_early_score() -> None:
    results = [cell("a", "digits", 0.9, score=0.1, early=0.8), cell("a", "digits", 0.2, score=0.9, early=0.3)]
    assert score_check(results).auc == 0.0
    assert score_check(results, early_score).auc == 1.0
    assert (
        not score_check(results, early_score).high_failed
        and not score_check(results, early_score).low_trained
    )
