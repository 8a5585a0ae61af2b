"""Unit tests of :mod:`gradmedic.lab.sections`: the lab report's sections as blocks.

Built from the fake lab results of ``tests/lab_report_fakes.py`` (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradmedic.lab import sections
from gradmedic.lab.document import Heading, Items, Nav, Text
from gradmedic.lab.schema import CellResult, CellSpec
from gradmedic.lab.scorecheck import TARGET_FRACTION, early_score, score_check
from gradmedic.lab.summary import MARGIN, summarize
from lab_report_fakes import fake_results

pytest.importorskip("matplotlib")


def all_blocks(results: list[CellResult], out: Path) -> list:
    studies = summarize(results)
    blocks = [sections.nav(studies)]
    blocks += sections.facts(results, studies, out, [])
    blocks += sections.remedies_answered(studies)
    blocks += sections.score_section(results, score_check(results), studies)
    blocks += sections.early_section(score_check(results), score_check(results, early_score), studies)
    for study in studies:
        blocks += sections.study_section(study)
    blocks += sections.failed_section(results)
    return blocks + sections.method()


def test_every_nav_link_points_to_a_heading_of_the_report(tmp_path: Path) -> None:
    results = [r for r in fake_results() if r.spec.study in ("clipping", "depth")]  # pictures cost time
    blocks = all_blocks(results, tmp_path)
    (nav,) = [b for b in blocks if isinstance(b, Nav)]
    anchors = {b.anchor for b in blocks if isinstance(b, Heading) and b.anchor}
    targets = [anchor for anchor, _ in nav.links]
    assert targets and set(targets) <= anchors
    studies = {r.spec.study for r in results}
    assert studies <= {text for _, text in nav.links}


def spec(seed: int) -> CellSpec:
    return CellSpec("depth", "digits", "mlp", "tanh", {"depth": 4}, seed, 10, (0.1,), "depth")


def test_failed_section_lists_each_error_by_its_first_and_last_line_cut_short() -> None:
    long = "RuntimeError: " + "x" * 1000
    failed = [
        CellResult(spec(0), status="error", error="ValueError: bad\n  File 'a.py'\nValueError: bad"),
        CellResult(spec(1), status="error", error=long),
        CellResult(spec(2), metric=0.5),
    ]
    heading, items = sections.failed_section(failed)
    assert isinstance(heading, Heading) and heading.text == "Failed cells (2)" and heading.anchor == "failed"
    assert isinstance(items, Items)
    first, second = items.items
    assert first == "depth/tanh/depth=4/seed=0 (digits): ValueError: bad ... ValueError: bad"
    assert second.startswith("depth/tanh/depth=4/seed=1 (digits): RuntimeError: xxx") and second.endswith(
        "..."
    )
    assert len(second) - len("depth/tanh/depth=4/seed=1 (digits): ") == sections.ERROR_CHARS
    (none,) = sections.failed_section([CellResult(spec(0))])[1:]
    assert isinstance(none, Text) and none.text == "None: every cell finished."


@pytest.mark.parametrize(("scores", "goal"), [((0.9, 0.1), "met"), ((0.1, 0.9), "not met")])
def test_score_section_says_whether_the_auc_goal_is_met(scores: tuple[float, float], goal: str) -> None:
    results = [
        CellResult(spec(0), score=scores[0], metric=0.9),
        CellResult(spec(1), score=scores[1], metric=0.1),
    ]
    check = score_check(results)
    assert check.auc == (1.0 if goal == "met" else 0.0)
    text = " ".join(
        b.text if isinstance(b, (Text, Heading)) else " ".join(map(str, getattr(b, "rows", "")))
        for b in sections.score_section(results, check, summarize(results))
    )
    assert f"at least {sections.AUC_GOAL}: {goal} here" in text


def test_method_states_the_margin_and_target_used_by_the_numbers() -> None:
    heading, items = sections.method()
    text = " ".join(items.items)
    assert heading.anchor == "method"
    assert f"gain at least {MARGIN:g}" in text and f"{TARGET_FRACTION:.0%} of the best" in text
