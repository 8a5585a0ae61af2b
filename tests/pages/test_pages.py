"""Tests of gradmedic.pages: one shell for every HTML page (run report, treatment, lab), the split kept
behind gradmedic.html_report's public names."""

from __future__ import annotations

import re

import pytest

from gradmedic import html_report
from gradmedic.diagnosis.findings import Finding, LayerSummary, Remedy, Report, Severity
from gradmedic.lab.document import Heading, Items, Nav, Picture, Table, Text, to_html
from gradmedic.pages import report as report_page
from gradmedic.pages import shell, treatment

PUBLIC = {
    report_page: ["report_html", "save_html", "report_fragment", "history_fragment"],
    treatment: ["treatment_html", "save_treatment_html", "treatment_fragment"],
    shell: ["CSS", "SCRIPT", "DPI", "NOTEBOOK_SCOPE", "scoped_css"],
}


@pytest.mark.parametrize("module", list(PUBLIC), ids=lambda m: m.__name__)
def test_html_report_keeps_every_public_name_as_the_pages_own(module) -> None:
    for name in PUBLIC[module]:
        assert getattr(html_report, name) is getattr(module, name)


def head_and_footer(page: str) -> tuple[str, str]:
    """The page without its title and body: everything before <title>, and from <footer> on."""
    return page[: page.index("<title>")], page[page.index("<footer>") :]


def test_the_lab_report_and_the_run_report_share_one_shell() -> None:
    run = html_report.report_html(Report([], 1.0, "checkup"), title="run")
    lab = to_html("lab", [Heading("Results", anchor="r"), Text("a <b>")])
    assert head_and_footer(run) == head_and_footer(lab)
    assert f"<style>{shell.CSS}</style>" in lab and f"<script>{shell.SCRIPT}</script>" in lab
    assert "a &lt;b&gt;" in lab


def test_the_lab_blocks_are_written_with_the_shells_pieces() -> None:
    blocks = [
        Nav([("r", "Results")]),
        Picture("p", "a picture", "its <caption>", b"\x89PNG"),
        Items(["one", "<two>"]),
        Table(["x"], [["1"]], numeric=(0,)),
    ]
    lab = to_html("lab", blocks)
    assert shell.nav([("r", "Results")]) in lab
    assert shell.figure(b"\x89PNG", "a picture", "its <caption>") in lab
    assert shell.bullets(["one", "<two>"]) in lab
    assert '<td class="num">1</td>' in lab


def test_every_text_of_a_finding_is_escaped_on_the_page() -> None:
    remedy = Remedy("init", "<init>", 'why "quoted"', "nn.init.x_(w)  # <b>")
    finding = Finding("vanishing_gradient", Severity.CRITICAL, ["a<1>"], "e<v>", "c&d", [remedy])
    page = html_report.report_html(
        Report([finding], 0.1, "checkup", layers=[LayerSummary("a<1>", "L<x>", 1.0)])
    )
    body = page[page.index("<body>") : page.index("<script>")]
    for raw in ("<init>", "a<1>", "e<v>", "L<x>", "# <b>"):
        assert raw not in body
    assert "c&amp;d" in body and "why &quot;quoted&quot;" in body


def test_a_fragment_scopes_every_rule_and_runs_no_script() -> None:
    fragment = shell.fragment(["<p>x</p>"])
    style = fragment[fragment.index("<style>") + 7 : fragment.index("</style>")]
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{", style) for s in rule.split(",")]
    assert selectors and all(
        s.startswith(f".{shell.NOTEBOOK_SCOPE}") for s in selectors if not s.startswith("@")
    )
    assert "<script" not in fragment


def test_a_picture_that_cannot_be_drawn_says_why_instead() -> None:
    def missing_library():
        raise ImportError("needs matplotlib: pip install 'gradmedic[plot]'")

    assert "Skipped: needs matplotlib" in shell.picture("Flow", "caption", missing_library)
    assert "Skipped: no data" in shell.picture("Flow", "caption", None, "no data")
