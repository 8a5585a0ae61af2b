"""The lab's report from saved cells: tables that round-trip, every study and the nine classic remedies
answered, the health-score AUC (checked against scikit-learn), a self-contained page that loads in
headless Chromium with every picture, and no crash on failed cells, NaNs or an empty directory.

The cells come from ``tests/lab_report_fakes.py``: plausible results of all of the classic remedies' studies.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from browser import ARTIFACTS, CHROMIUM, Page, assert_self_contained, browse, images, screenshot
from gradmedic.lab import figures, schema
from gradmedic.lab.report import write_report
from gradmedic.lab.schema import CellResult, CellSpec
from gradmedic.lab.scorecheck import auc, score_check, targets, trained
from gradmedic.lab.store import ResultStore
from gradmedic.lab.summary import STUDIES, layout, summarize, summarize_study
from gradmedic.lab.tables import columns
from lab_report_fakes import fake_results

RENDER_SECONDS = 60.0  # generous: ~300 cells render in a few seconds on idle cores


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict[str, Any]:
    """About 330 fake cells of every study saved in a lab directory, and its report written once."""
    out = tmp_path_factory.mktemp("lab")
    results = fake_results()
    store = ResultStore(out)
    for result in results:
        store.save(result)
    start = time.perf_counter()
    page = write_report(out)
    return {"out": out, "results": results, "page": page, "seconds": time.perf_counter() - start}


def same(text: str, value: float | None) -> bool:
    """A CSV cell against the value it came from (missing and NaN are written empty)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return text == ""
    return float(text) == float(value)


# -- tables ----------------------------------------------------------------------------------


def test_the_csv_has_one_row_per_cell_that_round_trips(lab) -> None:
    results: list[CellResult] = lab["results"]
    with (lab["out"] / "results.csv").open(encoding="utf-8") as file:
        reader = csv.DictReader(file)
        rows = {row["key"]: row for row in reader}
        header = reader.fieldnames
    params = sorted({name for r in results for name in r.spec.params})
    assert header == columns(results) and len(rows) == len(results)
    assert {f"param_{name}" for name in params} <= set(header) and {"score", "metric", "error"} <= set(header)
    for result in results:
        row = rows[result.spec.key()]
        spec = result.spec
        assert (row["study"], row["task"], row["recipe"], row["variant"]) == (
            spec.study,
            spec.task,
            spec.recipe,
            spec.variant,
        )
        assert int(row["seed"]) == spec.seed and row["status"] == result.status
        assert row["axis"] == (spec.axis or "") and same(row["axis_value"], spec.x if spec.axis else None)
        for name in params:
            expected = spec.params.get(name)
            assert row[f"param_{name}"] == ("" if expected is None else str(expected))
        for name in ("score", "metric", "lr", "wall_time", "steps_to_target"):
            assert same(row[name], getattr(result, name)), (name, row[name], getattr(result, name))
        assert row["findings"].split(";") if result.findings else row["findings"] == ""
        assert row["healthy"] == str(result.healthy) and row["metric_name"] == result.metric_name
        assert row["error"] == (result.error or "")


def test_the_jsonl_holds_the_same_rows_with_json_types(lab) -> None:
    results: list[CellResult] = lab["results"]
    lines = (lab["out"] / "results.jsonl").read_text(encoding="utf-8").splitlines()
    rows = {row["key"]: row for row in map(json.loads, lines)}
    assert len(lines) == len(rows) == len(results)
    best = targets(results)
    for result in results:
        row = rows[result.spec.key()]
        assert list(row) == columns(results)
        assert row["findings"] == result.findings and row["lrs"] == list(result.spec.lrs)
        assert row["metric"] == (result.metric if math.isfinite(result.metric) else None)
        assert row["trained"] == (trained(result, best) if result.ok else None)
        assert all(row[f"param_{k}"] == v for k, v in result.spec.params.items())


# -- what the report says --------------------------------------------------------------------


def test_the_markdown_answers_each_of_the_seeds_remedies_and_prints_the_auc(lab) -> None:
    text = (lab["out"] / "report.md").read_text(encoding="utf-8")
    check = score_check(lab["results"])
    seed = text[
        text.index("## The nine classic remedies, point by point") : text.index("## Does the health score")
    ]
    for study, remedy in STUDIES.items():
        assert f"## {study}: {remedy}" in text
        row = next(line for line in seed.splitlines() if line.startswith(f"| {study} |"))
        assert "not run" not in row and re.search(r"\| [+-]\d\.\d\d \|", row), row  # a gain, with its sign
    assert 'ROC AUC of the health score at initialization against "trained"' in text
    assert f": {check.auc:.3f} over {check.positives + check.negatives} ok cells" in text
    assert f"{check.positives} trained (positives), {check.negatives} did not (negatives)" in text
    assert "### Most discordant: did not train, yet scored at least as high as a cell that trained" in text
    for result in lab["results"]:
        if not result.ok:
            assert f"- {result.spec.label} ({result.spec.task}): RuntimeError: mat1 and mat2" in text
    for picture in re.findall(r"\]\((figures/[^)]+\.png)\)", text):
        assert (lab["out"] / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_summary_finds_the_baselines_and_what_helped(lab) -> None:
    studies = {s.study: s for s in summarize(lab["results"])}
    assert list(studies) == list(STUDIES)
    baselines = {name: s.layout.baseline for name, s in studies.items()}
    assert baselines == {
        "activations": "sigmoid",
        "init": "default",
        "batchnorm": "none",
        "layernorm": "none",
        "residual": "plain",
        "clipping": "none",
        "recurrent": "rnn",
        "optimizers": "sgd",
        "depth": "depth=32",
        "treat": "before",
    }
    assert studies["init"].layout.factors == ("group",) and studies["init"].layout.variants[:2] == (
        "default",
        "he",
    )
    assert studies["recurrent"].layout.factors == ("task",) and studies["recurrent"].layout.axis == "length"
    assert studies["clipping"].layout.factors == ("group",) and studies["activations"].layout.factors == ()
    assert studies["layernorm"].conditions == [
        "mlp, depth=4",
        "mlp, depth=16",
        "mlp, depth=32",
        "rnn, length=10",
        "rnn, length=40",
    ]
    assert studies["recurrent"].best.arm in ("lstm", "lstm/forget-bias-1", "gru")
    assert studies["depth"].best.arm in ("depth=1", "depth=4")
    assert studies["depth"].best.helped == ["relu", "sigmoid", "tanh"]
    assert studies["treat"].best.arm == "after" and studies["treat"].best.hurt == []
    clipping = studies["clipping"].best.best
    assert clipping.condition == "exploding" and math.isfinite(clipping.base.mean)
    assert clipping.base.missing == 1  # the diverged cell: its NaN metric left out, counted


def test_a_baseline_marker_in_the_params_wins_over_the_conventional_name() -> None:
    cells = [
        CellResult(
            CellSpec(
                "activations",
                "digits",
                "mlp",
                v,
                {"depth": 4, "baseline": v == "relu"},
                0,
                1,
                (0.1,),
                "depth",
            ),
            metric=m,
        )
        for v, m in (("sigmoid", 0.2), ("relu", 0.9))
    ]
    found = summarize_study(cells)
    assert found.layout.baseline == "relu" and "marked" in found.layout.why
    assert found.best.arm == "sigmoid" and found.best.hurt == ["all"]
    unknown = layout([CellResult(CellSpec("mine", "digits", "mlp", v, {}, 0, 1, (0.1,))) for v in ("b", "a")])
    assert unknown.baseline == "a" and "alphabetically" in unknown.why


# -- the health score's AUC ------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=60), st.booleans())
def test_auc_equals_scikit_learns_with_ties(pairs: list[tuple[int, bool]], spread: bool) -> None:
    scores = [s / 6 if spread else s / 600 for s, _ in pairs]  # few distinct values: many ties
    labels = [label for _, label in pairs]
    if len(set(labels)) < 2:
        assert math.isnan(auc(scores, labels))
        return
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_on_continuous_random_scores_equals_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    for n in (5, 50, 500):
        labels = rng.random(n) < 0.3
        labels[:2] = [True, False]
        scores = rng.normal(size=n) + labels
        assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_the_reports_auc_is_scikit_learns_over_the_ok_scored_cells(lab) -> None:
    results: list[CellResult] = lab["results"]
    best = targets(results)
    scored = [r for r in results if r.ok and math.isfinite(r.score)]
    expected = roc_auc_score([trained(r, best) for r in scored], [r.score for r in scored])
    check = score_check(results)
    assert check.auc == pytest.approx(expected, abs=1e-12) and check.unscored == 1
    failed = sum(1 for r in results if not r.ok)
    assert check.positives + check.negatives == len(scored) == len(results) - failed - 1
    assert all(not trained(r, best) for r in check.high_failed) and all(
        trained(r, best) for r in check.low_trained
    )
    assert [r.score for r in check.high_failed] == sorted((r.score for r in check.high_failed), reverse=True)
    lowest_trained = min(r.score for r in scored if trained(r, best))
    assert check.high_failed and all(r.score >= lowest_trained for r in check.high_failed)
    for study, (value, positives, negatives) in check.by_study.items():
        cells = [r for r in scored if r.spec.study == study]
        marks = [trained(r, best) for r in cells]
        assert (positives, negatives) == (sum(marks), len(marks) - sum(marks))
        assert value == pytest.approx(roc_auc_score(marks, [r.score for r in cells]), abs=1e-12)


# -- the page --------------------------------------------------------------------------------


def test_the_page_is_self_contained_with_every_picture_embedded(lab) -> None:
    page = lab["page"].read_text(encoding="utf-8")
    assert_self_contained(page)
    pictures = images(page)
    names = {path.stem for path in (lab["out"] / "figures").glob("*.png")}
    expected = {f"{study}_{kind}" for study in STUDIES for kind in ("signal", "metric", "curves")}
    two_factors = ("init", "batchnorm", "layernorm", "clipping", "recurrent", "optimizers", "treat")
    expected |= {f"{study}_heatmap" for study in two_factors}
    assert names == expected | {"recurrent_time", "layernorm_time", "score"} and len(pictures) == len(names)
    text = "".join(Page(page).text)
    failed = sum(1 for r in lab["results"] if not r.ok)
    assert all(study in text for study in STUDIES) and f"Failed cells ({failed})" in text


def test_pictures_keep_one_colour_per_variant_across_a_studys_figures(lab) -> None:
    study = next(s for s in summarize(lab["results"]) if s.study == "recurrent")

    def colours(fig) -> dict[str, Any]:
        legend = fig.legends[0]
        return {
            t.get_text(): tuple(h.get_color()) if not isinstance(h.get_color(), str) else h.get_color()
            for t, h in zip(legend.get_texts(), legend.legend_handles)
        }

    drawn = [
        colours(draw(study))
        for draw in (figures.signal_figure, figures.metric_figure, figures.curves_figure, figures.time_figure)
    ]
    assert all(d == drawn[0] for d in drawn) and drawn[0]["rnn (baseline)"] == "0.2"
    signal = figures.signal_figure(study)
    assert signal.axes[0].get_yscale() == "log" and "log" in signal.axes[0].get_ylabel()
    assert [ax.get_title(loc="left") for ax in signal.axes if ax.get_visible()] == [
        "task=adding, length=50",
        "task=copy, length=10",
    ]


def test_the_report_of_about_300_cells_renders_in_seconds(lab) -> None:
    assert len(lab["results"]) >= 300
    assert lab["seconds"] < RENDER_SECONDS, f"{len(lab['results'])} cells took {lab['seconds']:.1f} s"


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium): the lab report is not opened in a "
    "browser; .ci/run installs it where it can",
)
def test_in_headless_chromium_every_picture_of_the_lab_report_is_displayed(lab, tmp_path: Path) -> None:
    page = lab["page"].read_text(encoding="utf-8")
    seen = browse(page, tmp_path, "lab_report")
    assert len(seen["images"]) == len(Page(page).all("img")) > 0, seen
    assert all(i["complete"] and i["width"] > 0 for i in seen["images"]), seen
    assert seen["problems"] == [], seen
    ARTIFACTS.mkdir(exist_ok=True)
    saved = ARTIFACTS / "lab_report.html"
    saved.write_text(page, encoding="utf-8")
    screenshot(saved, tmp_path, ARTIFACTS / "lab_report.png", height=3000)


# -- awkward directories ---------------------------------------------------------------------


def test_failed_cells_nans_and_a_lone_cell_never_stop_the_report(tmp_path: Path) -> None:
    spec = CellSpec("recurrent", "copy", "rnn", "lstm", {"length": 10}, 0, 5, (0.1,), "length")
    store = ResultStore(tmp_path)
    store.save(CellResult(spec, status="error", error="ValueError: boom\nTraceback ...\n  line 3"))
    store.save(
        CellResult(
            CellSpec("depth", "digits", "mlp", "tanh", {"depth": 4}, 0, 5, (0.1,), "depth"),
            signal=[math.nan, math.inf, 0.0],
            time_signal=[math.nan],
            curve_steps=[0, 5],
            curve_loss=[math.inf, math.nan],
            curve_metric=[math.nan, math.nan],
        )
    )
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "- recurrent/lstm/length=10/seed=0 (copy): ValueError: boom ... line 3" in text
    assert (
        "| recurrent | gated recurrent units (LSTM, GRU) instead of a plain RNN | lstm | nothing to compare"
        in text
    )
    assert "| init | a weight initialization matched to the activation | - | not run: no cell" in text
    assert_self_contained((tmp_path / "report.html").read_text(encoding="utf-8"))
    with (tmp_path / "results.csv").open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["status"] for row in rows] == ["ok", "error"] and rows[0]["metric"] == rows[1]["score"] == ""


def test_an_empty_directory_gets_a_report_that_says_so(tmp_path: Path) -> None:
    page = write_report(tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert page.is_file() and "| cells | 0: 0 ok (0 with a NaN metric), 0 failed |" in text
    assert "None: every cell finished." in text
    assert (
        (tmp_path / "results.csv")
        .read_text(encoding="utf-8")
        .startswith("key,study,task,recipe,variant,seed")
    )


def test_cells_of_other_library_versions_are_shown_when_no_current_cell_exists(
    tmp_path: Path, monkeypatch
) -> None:
    old = {**schema.versions(), "torch": "1.0.0"}
    spec = CellSpec("optimizers", "digits", "mlp", "adam", {}, 0, 5, (0.1,))
    with monkeypatch.context() as patch:
        patch.setattr(schema, "versions", lambda: old)
        ResultStore(tmp_path).save(CellResult(spec, metric=0.7, versions=old))
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "showing the 1 saved cells as computed" in text and "torch 1.0.0" in text
    ResultStore(tmp_path).save(CellResult(spec, metric=0.8))
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "1 saved cells computed under other library versions are not shown" in text
