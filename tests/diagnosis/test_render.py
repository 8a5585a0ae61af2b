"""Unit tests of :mod:`gradmedic.diagnosis.render`: the report as plain text, Markdown and rich."""

from __future__ import annotations

import io
import math
import sys

import pytest

from gradmedic.diagnosis.findings import Finding, LayerSummary, Remedy, Report, Severity
from gradmedic.diagnosis.render import (
    finding_lines,
    headline,
    layer_lines,
    layer_list,
    print_report,
    render_markdown,
    render_text,
)

FIX = Remedy("init", "He init", "keeps the variance", "nn.init.kaiming_uniform_(w)", automatic=True)
MANUAL = Remedy("residual", "Residual [skip]", "a direct path", "x + f(x)")


def report() -> Report:
    layers = [
        LayerSummary("fc1", "Linear", signal_rms=1e-6, activation="sigmoid", saturated=0.25, dead=0.5),
        LayerSummary("fc2", "Linear", signal_rms=1e-3, activation="relu", dead=0.125),
        LayerSummary("head", "Linear", signal_rms=1.0),
        LayerSummary("unused", "Linear"),  # no signal: no bar
    ]
    findings = [
        Finding(
            "vanishing",
            Severity.CRITICAL,
            ["fc1", "fc2"],
            "signal 1e-6 of the last",
            "sigmoid",
            [FIX, MANUAL],
        ),
        Finding("dead_units", Severity.WARNING, ["fc2"], "12 % dead", "ReLU"),
        Finding("note_only", Severity.INFO, [], "[bold]not markup[/bold]", "just so"),
    ]
    return Report(findings, 0.2, "checkup", notes=["surrogate loss"], layers=layers)


def test_layer_list_shortens_long_lists_keeping_the_last_and_the_count() -> None:
    assert layer_list(["0", "2", "4"]) == "'0', '2', '4'"
    names = [str(i) for i in range(0, 40, 2)]
    assert layer_list(names) == "'0', '2', '4', '6', '8', ... '38' (20 layers)"
    assert layer_list(names[:6]) == "'0', '2', '4', '6', '8', '10'"
    assert layer_list([]) == ""


def test_headline_counts_findings_by_severity_most_severe_first() -> None:
    assert headline(report()) == (
        "gradmedic checkup: NOT healthy (health score 0.20): 1 critical, 1 warning, 1 info"
    )
    assert headline(Report([], 0.987, "trial")) == "gradmedic trial: healthy (health score 0.99): no finding"


def test_layer_lines_bars_on_a_log_scale_from_the_weakest_to_the_strongest_signal() -> None:
    header, *rows = layer_lines(report())
    assert header.split()[:4] == ["layer", "type", "then", "signal"]
    bars = [row.count("█") for row in rows]
    assert bars == [0, 12, 24, 0]  # 1e-3 is half way from 1e-6 to 1 in log10; no signal: no bar
    assert rows[0].split()[:3] == ["fc1", "Linear", "sigmoid"]
    assert rows[0].endswith("25%")  # the saturated fraction when there is one
    assert rows[1].endswith("12%")  # else the dead fraction
    assert rows[2].split()[:3] == ["head", "Linear", "1"]
    assert rows[3].split() == ["unused", "Linear", "-"]  # a missing signal is "-", with no bar


def test_layer_lines_empty_without_any_signal() -> None:
    assert layer_lines(Report([], 1.0, "checkup", layers=[LayerSummary("a", "Linear")])) == []


def test_finding_lines_rank_the_remedies_and_mark_the_automatic_ones() -> None:
    lines = finding_lines(report().findings[0])
    assert lines == [
        "[CRITICAL] vanishing",
        "  layers:   'fc1', 'fc2'",
        "  evidence: signal 1e-6 of the last",
        "  cause:    sigmoid",
        "  remedies:",
        "    1. He init [gradmedic.treat applies it]: keeps the variance",
        "       nn.init.kaiming_uniform_(w)",
        "    2. Residual [skip]: a direct path",
        "       x + f(x)",
    ]
    info = finding_lines(report().findings[2])
    assert "  remedies:" not in info and not any(line.startswith("  layers") for line in info)


def test_render_text_puts_headline_table_findings_and_notes_in_order() -> None:
    text = render_text(report())
    order = [text.index(s) for s in ("gradmedic checkup", "signal rms", "[CRITICAL]", "[WARNING]", "[INFO]")]
    assert order == sorted(order)
    assert text.endswith("note: surrogate loss")


def test_render_markdown_table_findings_and_code_blocks() -> None:
    md = render_markdown(report())
    lines = md.splitlines()
    assert lines[0] == "# " + headline(report())
    assert "| `fc1` | Linear | sigmoid | 1.0e-06 | 25% | 50% |" in lines
    assert "| `head` | Linear |  | 1 |  |  |" in lines
    assert "## critical: `vanishing`" in lines and "## info: `note_only`" in lines
    assert "1. **He init** *(applied by `gradmedic.treat`)*: keeps the variance" in lines
    assert md.count("```python") == 2 and "   nn.init.kaiming_uniform_(w)" in lines
    assert lines[-1] == "> surrogate loss" and md.endswith("\n")


def test_print_report_without_rich_prints_the_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich.console", None)  # import fails as when rich is missing
    out = io.StringIO()
    print_report(report(), file=out)
    assert out.getvalue() == render_text(report()) + "\n"


def test_print_report_with_rich_prints_the_same_words_and_keeps_brackets_literal() -> None:
    pytest.importorskip("rich")
    out = io.StringIO()
    print_report(report(), file=out)
    printed = [line.rstrip() for line in out.getvalue().splitlines()]
    assert printed == [line.rstrip() for line in render_text(report()).splitlines()]
    assert "  evidence: [bold]not markup[/bold]" in printed  # text in brackets is not read as markup


def test_percent_columns_are_blank_for_nan() -> None:
    layer = LayerSummary("x", "Linear", signal_rms=0.5, saturated=math.nan, dead=math.nan)
    md = render_markdown(Report([], 1.0, "monitor", layers=[layer]))
    assert "| `x` | Linear |  | 0.5 |  |  |" in md.splitlines()
