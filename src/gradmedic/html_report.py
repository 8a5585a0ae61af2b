"""A report as one self-contained HTML file: open it in any browser, offline, or attach it to a bug.

The page shows, top to bottom: the verdict (health score, findings by severity, the most severe
finding in one sentence and what to do first), the backprop signal per layer as a picture, every
finding with its evidence, cause and ranked remedies (with their code and a copy button), the
pictures of a training run when a :class:`~gradmedic.history.History` is given (flow, flow over
time, activations, update ratios: each skipped with a note when its data is missing), the
per-layer table and the notes. A :class:`~gradmedic.remedies.treatment.Treatment` gets a page of its
own: before and after side by side, both signals on one axis, and what changed.

Everything is inside the file: pictures are PNG data URIs, the style sheet is inline, and the only
script (optional: it adds the copy buttons) is inline too; nothing is fetched from the network.
Every text that comes from a model or a report is escaped. matplotlib is needed only for the
pictures; without it the page says so in their place.

Example:
    >>> from gradmedic.diagnosis.findings import Report
    >>> page = report_html(Report([], 1.0, "checkup"))
    >>> page.startswith("<!DOCTYPE html>"), "Healthy" in page
    (True, True)
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._providers import provide
from ._version import __version__
from .diagnosis.findings import Finding, LayerSummary, Remedy, Report, Severity
from .history import History
from .terminal import fmt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .remedies.treatment import Treatment

#: Resolution of the embedded pictures (they are drawn at their usual size in inches).
DPI = 90
#: A finding lists this many layers by name; the rest fold into a "show all" element.
SHOWN_LAYERS = 12
#: The layer table shades a signal below this fraction of the last layer's (as plots.flow does).
VANISH_FACTOR = 1e-3
EXPLODE_FACTOR = 1e3

_SOURCES = {
    "checkup": "a checkup: one forward and one backward pass, before any training",
    "monitor": "a monitored training run",
}


def _e(text: object) -> str:
    """Escape any text (quotes included) for HTML content and attribute values."""
    return html.escape(str(text), quote=True)


# -- public API ------------------------------------------------------------------------------


def report_html(report: Report, history: History | None = None, title: str | None = None) -> str:
    """The whole report as one HTML page (a string), pictures embedded.

    Args:
        report: the diagnosis (from ``gradmedic.checkup``, ``diagnose`` or ``Monitor.diagnose``).
        history: the recorded run, if any: adds the pictures over training.
        title: the page title (default: "gradmedic <source> report").

    Returns:
        The page: ``<!DOCTYPE html>`` and everything it needs, with no external reference.

    Example:
        >>> from gradmedic.diagnosis.findings import Finding, Remedy, Report, Severity
        >>> fix = Remedy("clipping", "Gradient clipping", "bounds each step", "clip_grad_norm_(p, 1.0)")
        >>> finding = Finding("exploding_gradient", Severity.WARNING, ["enc<0>"], "grows x9 per layer",
        ...                   "gain too large", [fix])
        >>> page = report_html(Report([finding], 0.4, "checkup"), title="my model")
        >>> "NOT healthy" in page, "enc&lt;0&gt;" in page, "enc<0>" in page
        (True, True, False)
    """
    title = title or f"gradmedic {report.source} report"
    sections = [
        _section("flow", "Where the gradient goes", _flow_picture(report, history)),
        _section("findings", "Findings", _findings(report)),
        _section("pictures", "Pictures of the training run", _history_pictures(history)),
        _section("layers", "Per-layer numbers", _layer_table(report)),
        _section("notes", "Notes", _notes(report.notes)),
    ]
    return _page(title, [_verdict_box(report, history), _nav(sections), *sections])


def save_html(
    path: str | Path, report: Report, history: History | None = None, title: str | None = None
) -> Path:
    """Write :func:`report_html` to ``path`` (UTF-8) and return the path.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from gradmedic.diagnosis.findings import Report
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_html(Path(folder) / "report.html", Report([], 1.0, "checkup"))
        ...     path.read_text(encoding="utf-8").count("<html")
        1
    """
    path = Path(path)
    path.write_text(report_html(report, history, title), encoding="utf-8")
    return path


def treatment_html(treatment: Treatment, title: str | None = None) -> str:
    """A treatment as one HTML page: before and after side by side, one signal picture, changes.

    Args:
        treatment: the result of ``gradmedic.treat``.
        title: the page title (default: "gradmedic treatment: <before> -> <after>").

    Returns:
        The page, self-contained like :func:`report_html`'s.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import gradmedic
        >>> torch.manual_seed(0) and None
        >>> model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(8, 8), nn.Tanh())])
        >>> treatment = gradmedic.treat(model, torch.randn(32, 8), allow=["init"], suggest_lr=False)
        >>> page = treatment_html(treatment)
        >>> "Before" in page and "After" in page and "data:image/png;base64," in page
        True
    """
    before, after = treatment.before, treatment.after
    title = title or f"gradmedic treatment: {_verdict(before)} -> {_verdict(after)}"
    sections = [
        _section("flow", "Where the gradient goes, before and after", _treatment_picture(treatment)),
        _section("changes", "What the treatment changed", _changes(treatment)),
        _section("findings", "Findings before and after", _side_by_side(
            _findings(before, "before", fold=True), _findings(after, "after"))),
        _section("layers", "Per-layer signal before and after", _compare_table(before, after)),
        _section("notes", "Notes", _notes(list(dict.fromkeys([*before.notes, *after.notes])))),
    ]  # fmt: skip
    return _page(title, [_treatment_summary(treatment), _nav(sections), *sections])


def save_treatment_html(path: str | Path, treatment: Treatment, title: str | None = None) -> Path:
    """Write :func:`treatment_html` to ``path`` (UTF-8) and return the path.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from torch import nn
        >>> import gradmedic
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> treatment = gradmedic.treat(model, torch.randn(16, 4), suggest_lr=False)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_treatment_html(Path(folder) / "treatment.html", treatment)
        ...     path.stat().st_size > 1000
        True
    """
    path = Path(path)
    path.write_text(treatment_html(treatment, title), encoding="utf-8")
    return path


# -- notebooks -------------------------------------------------------------------------------

#: The class of the element that holds a notebook fragment; its style sheet applies inside it only.
NOTEBOOK_SCOPE = "gradmedic-nb"


def report_fragment(report: Report, history: History | None = None) -> str:
    """The report as an HTML fragment for a notebook cell: verdict, signal picture, findings.

    A fragment, not a page: one ``<div>`` holding its own style sheet, scoped to that ``div`` so the
    notebook's styles and the report's do not mix, and no script (notebooks do not run it).
    ``Report._repr_html_`` returns it, so a report displays itself in Jupyter.

    Example:
        >>> from gradmedic.diagnosis.findings import Report
        >>> fragment = report_fragment(Report([], 1.0, "checkup"))
        >>> fragment.startswith('<div class="gradmedic-nb">'), "<html" in fragment, "Healthy" in fragment
        (True, False, True)
    """
    parts = [_verdict_box(report, history), _flow_picture(report, history)]
    if report.findings:
        parts.append(f"<h2>Findings</h2>{_findings(report, 'nb-finding', fold=True)}")
    return _fragment(parts)


def treatment_fragment(treatment: Treatment) -> str:
    """A treatment as a notebook fragment: before and after, both signals on one axis, the changes.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import gradmedic
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> treatment = gradmedic.treat(model, torch.randn(16, 4), suggest_lr=False)
        >>> fragment = treatment_fragment(treatment)
        >>> "Before treatment" in fragment and "<script" not in fragment
        True
    """
    return _fragment([_treatment_summary(treatment), _treatment_picture(treatment),
                      f"<h2>What the treatment changed</h2>{_changes(treatment)}"])  # fmt: skip


def history_fragment(history: History) -> str:
    """A recorded run as a notebook fragment: what it holds, then its pictures (no diagnosis).

    Example:
        >>> from gradmedic.history import History
        >>> from gradmedic.layers import LayerInfo
        >>> history = History([LayerInfo("0", "Linear", "param", ["0.weight"])], ["0.weight"])
        >>> "0 recorded steps" in history_fragment(history)
        True
    """
    model = history.meta.get("model", "a model")
    summary = (
        f"<p><strong>gradmedic run of {_e(model)}</strong>: {len(history)} recorded steps, "
        f"{len(history.layers)} layers observed. <code>gradmedic.diagnose(history)</code> names what went "
        "wrong.</p>"
    )
    return _fragment([summary, _history_pictures(history)])


def scoped_css(css: str, scope: str) -> str:
    """``css`` with every rule confined to elements inside ``.scope`` (the page's root rules to it).

    Example:
        >>> print(scoped_css(":root { --x: 1; } body, p { margin: 0; }", "box"))
        .box { --x: 1; }
        .box, .box p { margin: 0; }
    """
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        scoped = []
        for selector in (part.strip() for part in selectors.split(",")):
            scoped.append(f".{scope}" if selector in (":root", "body", "html") else f".{scope} {selector}")
        rules.append(f"{', '.join(scoped)} {{{body}}}")
    return "\n".join(rules)


def _fragment(parts: Sequence[str]) -> str:
    body = "\n".join(part for part in parts if part)
    return (
        f'<div class="{NOTEBOOK_SCOPE}"><style>{scoped_css(CSS, NOTEBOOK_SCOPE)}\n'
        f".{NOTEBOOK_SCOPE} {{ padding: .5rem 0; max-width: 1000px; }}</style>\n{body}\n</div>"
    )


# -- page ------------------------------------------------------------------------------------

CSS = """
:root { --critical: #b42318; --critical-bg: #fef3f2; --warning: #b54708; --warning-bg: #fffaeb;
  --info: #175cd3; --info-bg: #eff8ff; --healthy: #067647; --healthy-bg: #ecfdf3;
  --line: #d0d5dd; --muted: #475467; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #101828; margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1200px; }
h1 { font-size: 1.6rem; margin: 0 0 .8rem; overflow-wrap: anywhere; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .8rem; border-bottom: 1px solid var(--line); padding-bottom: .3rem; }
h3 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .86rem; }
code { background: #f2f4f7; padding: 0 .25rem; border-radius: 3px; overflow-wrap: anywhere; }
pre { position: relative; background: #f2f4f7; border: 1px solid var(--line); border-radius: 6px;
  padding: .6rem 4.8rem .6rem .8rem; margin: .3rem 0 .6rem; overflow-x: auto; white-space: pre-wrap; }
pre code { background: none; padding: 0; }
button.copy { position: absolute; top: .35rem; right: .35rem; font: inherit; font-size: .75rem;
  padding: .1rem .5rem; border: 1px solid var(--line); border-radius: 4px; background: #fff;
  cursor: pointer; }
button.copy:hover { background: #eaecf0; }
nav { margin: 1rem 0; font-size: .95rem; }
nav a { margin-right: 1.2rem; }
.verdict { border-radius: 10px; padding: 1rem 1.3rem; border-left: 8px solid; }
.verdict.sick { background: var(--critical-bg); border-color: var(--critical); }
.verdict.healthy { background: var(--healthy-bg); border-color: var(--healthy); }
.verdict .big { font-size: 1.9rem; font-weight: 700; margin-right: 1rem; }
.verdict.sick .big { color: var(--critical); }
.verdict.healthy .big { color: var(--healthy); }
.verdict p { margin: .5rem 0; }
.score { display: inline-flex; align-items: center; gap: .5rem; font-size: 1.05rem; margin-right: 1rem; }
.meter { display: inline-block; width: 140px; height: 12px; background: #fff; border: 1px solid var(--line);
  border-radius: 6px; overflow: hidden; vertical-align: middle; }
.meter span { display: block; height: 100%; }
.chip { display: inline-block; border-radius: 999px; padding: 0 .6rem; font-size: .8rem; font-weight: 600;
  margin: .1rem .25rem .1rem 0; border: 1px solid; white-space: nowrap; }
.chip.critical { color: var(--critical); background: var(--critical-bg); }
.chip.warning { color: var(--warning); background: var(--warning-bg); }
.chip.info { color: var(--info); background: var(--info-bg); }
.chip.none { color: var(--muted); background: #f9fafb; }
.chip.auto { color: var(--healthy); background: var(--healthy-bg); }
.chip.family { color: var(--muted); background: #f9fafb; font-weight: 400; }
.first { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .6rem .9rem;
  margin-top: .7rem; }
.first h3 { margin: 0 0 .3rem; font-size: 1rem; }
.finding { border: 1px solid var(--line); border-left: 6px solid; border-radius: 8px;
  padding: .2rem 1.1rem .6rem; margin: 0 0 1.1rem; }
.finding.critical { border-left-color: var(--critical); }
.finding.warning { border-left-color: var(--warning); }
.finding.info { border-left-color: var(--info); }
.finding h3 { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; }
.finding dl { display: grid; grid-template-columns: 6.5rem 1fr; gap: .3rem .8rem; margin: .4rem 0 .8rem; }
.finding dt { font-weight: 600; color: var(--muted); }
.finding dd { margin: 0; overflow-wrap: anywhere; }
.remedies li { margin-bottom: .5rem; }
.why { color: var(--muted); }
details summary { cursor: pointer; color: var(--info); }
figure { margin: .4rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaecf0; border-radius: 6px; }
figcaption { color: var(--muted); font-size: .9rem; max-width: 75ch; }
.skipped { color: var(--muted); background: #f9fafb; border: 1px dashed var(--line); border-radius: 6px;
  padding: .5rem .8rem; }
table { border-collapse: collapse; font-size: .88rem; width: 100%; }
th, td { border-bottom: 1px solid #eaecf0; padding: .25rem .5rem; text-align: left; vertical-align: middle; }
th { background: #f9fafb; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { overflow-wrap: anywhere; max-width: 22rem; }
tr.vanishing td { background: #f5f8ff; }
tr.vanishing td.signal, td.num.vanishing { color: var(--info); font-weight: 600; }
tr.exploding td.signal, td.num.exploding { color: var(--critical); font-weight: 600; }
.proof { font-size: 1.1rem; margin: 1rem 0 .4rem; }
.chip.small { font-size: .7rem; padding: 0 .45rem; }
tr.exploding td { background: var(--critical-bg); }
.bar { width: 11rem; height: .8rem; background: #f2f4f7; border-radius: 3px; overflow: hidden; }
.bar span { display: block; height: 100%; background: #53b1fd; }
tr.vanishing .bar span { background: #2e90fa; opacity: .45; }
tr.exploding .bar span { background: var(--critical); }
.legend { color: var(--muted); font-size: .85rem; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 30rem), 1fr));
  gap: 1.5rem; }
.columns > div { min-width: 0; }
.changes li { white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .86rem;
  overflow-wrap: anywhere; }
.changes li.skip { color: var(--muted); }
footer { margin-top: 3rem; color: var(--muted); font-size: .8rem; }
@media print { button.copy, nav { display: none; } }
"""

#: Adds a copy button to every code block (plain inline script; the page works without it).
SCRIPT = """
(function () {
  function copy(button, code) {
    function done(ok) {
      button.textContent = ok ? "copied" : "press Ctrl+C";
      setTimeout(function () { button.textContent = "copy"; }, 1500);
    }
    function select() {
      var range = document.createRange();
      range.selectNodeContents(code);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (error) { ok = false; }
      done(ok);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(code.textContent).then(function () { done(true); }, select);
    } else {
      select();
    }
  }
  document.querySelectorAll("pre > code").forEach(function (code) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "copy";
    button.setAttribute("aria-label", "copy this code");
    button.addEventListener("click", function () { copy(button, code); });
    code.parentNode.insertBefore(button, code);
  });
})();
"""


def _page(title: str, sections: list[str]) -> str:
    body = "\n".join(part for part in sections if part)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="gradmedic {_e(__version__)}">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n{body}\n"
        f"<footer>Written by gradmedic {_e(__version__)}. Self-contained: no network needed.</footer>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def _section(anchor: str, heading: str, content: str) -> str:
    if not content:
        return ""
    return f'<section id="{_e(anchor)}">\n<h2>{_e(heading)}</h2>\n{content}\n</section>'


_NAV = {"flow": "Signal per layer", "changes": "Changes", "findings": "Findings", "pictures": "Training run",
        "layers": "Per-layer table", "notes": "Notes"}  # fmt: skip


def _nav(sections: Sequence[str]) -> str:
    """Links to the sections present (each starts with ``<section id="...">``)."""
    links = [
        (a, text) for a, text in _NAV.items() if any(s.startswith(f'<section id="{a}">') for s in sections)
    ]
    return "<nav>" + "".join(f'<a href="#{a}">{_e(text)}</a>' for a, text in links) + "</nav>"


def _side_by_side(left: str, right: str, headings: Sequence[str] = ("Before", "After")) -> str:
    return (
        f'<div class="columns"><div><h3>{_e(headings[0])}</h3>{left}</div>'
        f"<div><h3>{_e(headings[1])}</h3>{right}</div></div>"
    )


def _notes(notes: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>" if notes else ""


# -- summary ---------------------------------------------------------------------------------


def _verdict(report: Report) -> str:
    return "healthy" if report.healthy else "NOT healthy"


def _human(kind: str) -> str:
    """``vanishing_gradient`` -> ``Vanishing gradient``."""
    return kind.replace("_", " ").capitalize()


def _counts(report: Report) -> str:
    chips = []
    for severity in sorted(Severity, reverse=True):
        n = sum(1 for f in report.findings if f.severity == severity)
        style = severity.label if n else "none"
        chips.append(f'<span class="chip {style}">{n} {_e(severity.label)}</span>')
    return "".join(chips)


def _score(report: Report) -> str:
    score = min(max(report.score, 0.0), 1.0) if math.isfinite(report.score) else 0.0
    color = "var(--healthy)" if score >= 0.7 else "var(--warning)" if score >= 0.4 else "var(--critical)"
    return (
        f'<span class="score">health score <strong>{report.score:.2f}</strong> / 1 '
        f'<span class="meter" title="health score {report.score:.2f}">'
        f'<span style="width:{score * 100:.0f}%;background:{color}"></span></span></span>'
    )


def _verdict_box(report: Report, history: History | None = None, advice: bool = True) -> str:
    """Verdict, score, counts, the most severe finding in one line and (with ``advice``) what to do."""
    state = "healthy" if report.healthy else "sick"
    verdict = "Healthy" if report.healthy else "NOT healthy"
    top = report.findings[0] if report.findings else None
    if top is None:
        line = "No finding: no rule raised an alarm."
    else:
        where = f" in {len(top.layers)} layer{'s' if len(top.layers) != 1 else ''}" if top.layers else ""
        line = (f'<strong>{_e(_human(top.kind))}</strong> ({_e(top.severity.label)}){where}: '
                f"{_e(top.evidence)}")  # fmt: skip
    return (
        f'<div class="verdict {state}"><p><span class="big">{verdict}</span>{_score(report)}'
        f'{_counts(report)}</p><p>{line}</p><p class="why">From {_e(_source(report, history))}.</p>'
        f"{_first_remedy(report) if advice else ''}</div>"
    )


def _source(report: Report, history: History | None) -> str:
    text = _SOURCES.get(report.source, report.source)
    if history is not None:
        model = history.meta.get("model")
        text += f" of {model}" if model else ""
        text += f", {len(history)} recorded steps, {len(history.layers)} layers observed"
    return text


def _first_remedy(report: Report) -> str:
    """The first remedy of the most severe finding, with its code: what to do first."""
    top = next((f for f in report.findings if f.remedies and f.severity >= Severity.WARNING), None)
    if top is None:
        return ""
    remedy = top.remedies[0]
    treat = (
        "<p>Or let gradmedic apply its remedies to a copy of the model and prove they help: "
        "<code>treatment = gradmedic.treat(model, inputs, targets)</code></p>"
        if any(r.automatic for f in report.findings for r in f.remedies)
        else ""
    )
    return (
        f'<div class="first"><h3>What to do first: {_e(remedy.name)}</h3>'
        f'<p class="why">{_e(remedy.why)}</p><pre><code>{_e(remedy.code)}</code></pre>{treat}</div>'
    )


# -- findings --------------------------------------------------------------------------------


def _findings(report: Report, anchor: str = "finding", fold: bool = False) -> str:
    """Every finding; a remedy already shown by an earlier finding links to it instead.

    With ``fold``, each finding's remedies are folded (shown on a click).
    """
    if not report.findings:
        return '<p class="skipped">No finding.</p>'
    shown: dict[Remedy, tuple[str, str]] = {}
    return "\n".join(_finding(f, f"{anchor}-{i}", shown, fold) for i, f in enumerate(report.findings, 1))


def _finding(finding: Finding, anchor: str, shown: dict[Remedy, tuple[str, str]], fold: bool = False) -> str:
    severity = finding.severity.label
    rows = [("Layers", _layer_names(finding.layers))] if finding.layers else []
    rows += [("Evidence", _e(finding.evidence)), ("Cause", _e(finding.cause))]
    if finding.numbers:
        rows.append(("Numbers", " ".join(
            f"<code>{_e(k)} = {_e(fmt(v))}</code>" for k, v in finding.numbers.items())))  # fmt: skip
    details = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    remedies = "".join(_remedy(r, f"{anchor}-remedy-{k}", _human(finding.kind), shown)
                       for k, r in enumerate(finding.remedies, 1))  # fmt: skip
    remedies_html = (f'<h4>Remedies, best first</h4><ol class="remedies">{remedies}</ol>' if remedies
                     else '<p class="why">No remedy listed.</p>')  # fmt: skip
    if fold and remedies:
        count = len(finding.remedies)
        remedies_html = (f'<details><summary>{count} remed{"ies" if count != 1 else "y"}, best first'
                         f'</summary><ol class="remedies">{remedies}</ol></details>')  # fmt: skip
    return (
        f'<article class="finding {severity}" id="{_e(anchor)}"><h3>'
        f'<span class="chip {severity}">{_e(severity)}</span>{_e(_human(finding.kind))} '
        f"<code>{_e(finding.kind)}</code></h3><dl>{details}</dl>{remedies_html}</article>"
    )


def _layer_names(names: list[str]) -> str:
    chips = [f"<code>{_e(name) if name else '(model)'}</code>" for name in names]
    shown = " ".join(chips[:SHOWN_LAYERS])
    if len(chips) <= SHOWN_LAYERS:
        return shown
    return f"{shown} <details><summary>all {len(chips)} layers</summary>{' '.join(chips)}</details>"


def _remedy(remedy: Remedy, anchor: str, finding: str, shown: dict[Remedy, tuple[str, str]]) -> str:
    """A ranked remedy: name, family, why and code; the code only the first time it is shown."""
    auto = '<span class="chip auto">gradmedic.treat applies it</span>' if remedy.automatic else ""
    head = f'<strong>{_e(remedy.name)}</strong> <span class="chip family">{_e(remedy.family)}</span>{auto}'
    if remedy in shown:
        where, title = shown[remedy]
        return f'<li>{head} <span class="why">(code under <a href="#{_e(where)}">{_e(title)}</a>)</span></li>'
    shown[remedy] = (anchor, finding)
    return (
        f'<li id="{_e(anchor)}">{head}<div class="why">{_e(remedy.why)}</div>'
        f"<pre><code>{_e(remedy.code)}</code></pre></li>"
    )


# -- pictures --------------------------------------------------------------------------------

Draw = Callable[[], "Figure"]


def _picture(title: str, caption: str, draw: Draw | None, missing: str | None = None) -> str:
    """A heading and the drawn figure as a PNG data URI, or a note saying why it is skipped."""
    head = f"<h3>{_e(title)}</h3>" if title else ""
    if missing is not None or draw is None:
        return f'{head}<p class="skipped">Skipped: {_e(missing)}</p>'
    try:
        fig = draw()
    except ImportError as error:
        return f'{head}<p class="skipped">Skipped: {_e(error)}</p>'
    return (
        f'{head}<figure><img src="data:image/png;base64,{_png(fig)}" alt="{_e(title or caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


FLOW_CAPTION = (
    "Each point is a layer, input on the left, output on the right; the height is the backprop "
    "signal (the gradient of the loss with respect to the layer's output) on a log scale. A healthy "
    "network keeps it roughly level; a line that falls steeply to the left is a vanishing gradient: "
    "the layers in the blue zone get less than 1/1000 of the last layer's signal and barely learn."
)


def _flow_picture(report: Report, history: History | None) -> str:
    from . import plots

    if history is not None and _recorded_rows(history, ("signal_rms", "weight_grad_norm")):
        caption = FLOW_CAPTION + " The lower panel shows the weight-gradient norm of the same layers."
        return _picture("", caption, lambda: plots.flow(history))
    if not any(math.isfinite(s.signal_rms) and s.signal_rms > 0 for s in report.layers):
        return _picture("", "", None, "no layer has a backprop signal in this report")
    return _picture("", FLOW_CAPTION, lambda: plots.flow_profiles(report, [_run_name(report, history)]))


def _run_name(report: Report, history: History | None) -> str:
    model = history.meta.get("model") if history is not None else None
    return f"{model} ({report.source})" if model else report.source


def _recorded_rows(history: History, metrics: Sequence[str]) -> int:
    """The most rows with at least one value, over ``metrics``."""
    counts = [0]
    for metric in metrics:
        if metric in history.metrics:
            values = history.array(metric)[1]
            counts.append(int(np.sum(~np.all(np.isnan(values), axis=1))) if values.size else 0)
    return max(counts)


def _history_pictures(history: History | None) -> str:
    from . import plots

    watch = "gradmedic.watch(model, optimizer, log_path='run.jsonl')"
    if history is None:
        return (
            '<p class="skipped">Skipped: this report came without a History. The pictures over '
            f"training (signal over time, saturated and dead units, update sizes) need one: record it "
            f"with <code>{_e(watch)}</code>, then <code>gradmedic report run.jsonl</code> or "
            "<code>report.save_html(path, history=monitor.history)</code>.</p>"
        )
    pictures = [
        ("Backprop signal over training", _TIME_CAPTION, lambda: plots.flow_over_time(history),
         _missing(history, ("signal_rms",), f"record it with {watch}", min_rows=2)),
        ("Saturated and dead activations", _ACT_CAPTION, lambda: plots.activations(history),
         _missing(history, ("act_saturated", "act_dead"),
                  "record them with gradmedic.watch(model, optimizer, activations_every=10)")),
        ("Update size per layer", _UPDATE_CAPTION, lambda: plots.update_ratios(history),
         _missing(history, ("update_ratio",),
                  "record it with gradmedic.watch(model, optimizer, updates_every=10) "
                  "(it needs the optimizer)")),
    ]  # fmt: skip
    return "\n".join(_picture(title, caption, draw, missing) for title, caption, draw, missing in pictures)


_TIME_CAPTION = (
    "Rows are layers (input at the top), columns are training steps, colour is the backprop signal "
    "on a log scale: dark rows are layers the gradient does not reach; rows that darken as training "
    "goes on are a gradient dying over time."
)
_ACT_CAPTION = (
    "Share of saturated outputs (Sigmoid/Tanh-like activations in their flat tails, where almost no "
    "gradient passes) and of dead units (ReLU-like units that output 0 for the whole batch), per "
    "layer over training. Lines near 1 are layers that block the gradient."
)
_UPDATE_CAPTION = (
    "Size of each optimizer step relative to the weights, per layer. The shaded band (1e-4 to 1e-2) "
    "is the usual healthy range: far below it a layer barely learns, far above it training is unstable."
)


def _missing(history: History, metrics: tuple[str, ...], how: str, min_rows: int = 1) -> str | None:
    rows = _recorded_rows(history, metrics)
    if rows == 0:
        return f"no {' or '.join(metrics)} recorded in this run: {how}"
    if rows < min_rows:
        return f"only {rows} recorded step: nothing over time to show ({how}, for more steps)"
    return None


# -- per-layer table -------------------------------------------------------------------------


def _flags(report: Report) -> dict[str, list[Finding]]:
    flags: dict[str, list[Finding]] = {}
    for finding in report.findings:
        for name in finding.layers:
            flags.setdefault(name, []).append(finding)
    return flags


def _scale(layers: Sequence[LayerSummary]) -> tuple[float, float]:
    values = [s.signal_rms for s in layers if math.isfinite(s.signal_rms) and s.signal_rms > 0]
    return (min(values), max(values)) if values else (1.0, 1.0)


def _reference(layers: Sequence[LayerSummary]) -> float:
    """The signal of the last layer that has one (the layer next to the loss), or NaN."""
    values = [s.signal_rms for s in layers if math.isfinite(s.signal_rms) and s.signal_rms > 0]
    return values[-1] if values else math.nan


def _zone(value: float, reference: float) -> str:
    if not (math.isfinite(value) and math.isfinite(reference)) or value <= 0:
        return ""
    if value < VANISH_FACTOR * reference:
        return "vanishing"
    return "exploding" if value > EXPLODE_FACTOR * reference else ""


def _bar(value: float, low: float, high: float) -> str:
    if not math.isfinite(value) or value <= 0:
        return ""
    span = math.log10(high) - math.log10(low) if high > low else 0.0
    fraction = (math.log10(value) - math.log10(low)) / span if span else 1.0
    width = 2 + 98 * min(max(fraction, 0.0), 1.0)
    return f'<div class="bar" title="{_e(fmt(value))}"><span style="width:{width:.0f}%"></span></div>'


def _percent(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else ""


def _layer_table(report: Report) -> str:
    if not report.layers:
        return '<p class="skipped">No per-layer numbers in this report.</p>'
    low, high = _scale(report.layers)
    reference = _reference(report.layers)
    flags = _flags(report)
    head = ("<tr><th>#</th><th>layer</th><th>type</th><th>then</th><th>backprop signal (RMS)</th>"
            "<th>log scale</th><th>weight-grad norm</th><th>saturated</th><th>dead</th>"
            "<th>flagged by</th></tr>")  # fmt: skip
    rows = []
    for i, layer in enumerate(report.layers):
        chips = "".join(
            f'<span class="chip small {f.severity.label}">{_e(f.kind)}</span>'
            for f in flags.get(layer.name, [])
        )
        rows.append(
            f'<tr class="{_zone(layer.signal_rms, reference)}"><td class="num">{i}</td>'
            f'<td class="name"><code>{_e(layer.name or "(model)")}</code></td><td>{_e(layer.type)}</td>'
            f'<td>{_e(layer.activation or "")}</td><td class="num signal">{_e(fmt(layer.signal_rms))}</td>'
            f"<td>{_bar(layer.signal_rms, low, high)}</td>"
            f'<td class="num">{_e(fmt(layer.weight_grad_norm))}</td>'
            f'<td class="num">{_percent(layer.saturated)}</td><td class="num">{_percent(layer.dead)}</td>'
            f"<td>{chips}</td></tr>"
        )
    legend = (
        '<p class="legend">Layers with parameters, in forward order. "then": the activation that follows '
        "the layer. Shaded rows get less than 1/1000 of the last layer's signal (vanishing) or more "
        "than 1000 times it (exploding). Bars share one log scale.</p>"
    )
    return f"{legend}<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


# -- treatment -------------------------------------------------------------------------------


def _treatment_summary(treatment: Treatment) -> str:
    before, after = treatment.before, treatment.after
    train = f"{treatment.optimizer[0]}" + (f", learning rate {treatment.lr:.2g}" if treatment.lr else "")
    train += f", clip_grad_norm_(model.parameters(), {treatment.clip_norm})" if treatment.clip_norm else ""
    why = f" ({treatment.optimizer[1]})" if treatment.optimizer[1] else ""
    kept = len(treatment.applied)
    boxes = _verdict_box(before, advice=False), _verdict_box(after, advice=False)
    return (
        _side_by_side(*boxes, ("Before treatment", "After treatment"))
        + _proof(before, after)
        + f"<p><strong>{kept} change{'s' if kept != 1 else ''} kept</strong>; train the treated model with "
        f"<code>{_e(train)}</code>{_e(why)}. The treated model is <code>treatment.model</code>.</p>"
    )


def _proof(before: Report, after: Report) -> str:
    """One line: how much of the last layer's signal reaches the first layer, before and after."""
    ratios = []
    for report in (before, after):
        values = [s.signal_rms for s in report.layers if math.isfinite(s.signal_rms) and s.signal_rms > 0]
        ratios.append(values[0] / values[-1] if len(values) >= 2 else math.nan)
    if not all(math.isfinite(r) for r in ratios):
        return ""
    return (
        '<p class="proof">The first layer receives <strong>' + _e(fmt(ratios[0])) + "</strong> of the "
        "last layer's backprop signal before treatment, <strong>"
        + _e(fmt(ratios[1]))
        + "</strong> after.</p>"
    )


def _treatment_picture(treatment: Treatment) -> str:
    from . import plots

    reports = [treatment.before, treatment.after]
    if not any(math.isfinite(s.signal_rms) and s.signal_rms > 0 for r in reports for s in r.layers):
        return _picture("", "", None, "no layer has a backprop signal in these reports")
    caption = FLOW_CAPTION + " Both checkups share the axis: before treatment and after."
    return _picture(
        "", caption, lambda: plots.flow_profiles(reports, ["before treatment", "after treatment"])
    )


def _changes(treatment: Treatment) -> str:
    from .remedies.changes import group_changes

    made = group_changes(treatment.applied)
    skipped = group_changes([c for c in treatment.changes if c.skipped])
    items = [f"<li>{_e(line)}</li>" for line in made] or ["<li>no change was kept</li>"]
    parts = [f'<h3>Made and kept</h3><ul class="changes">{"".join(items)}</ul>']
    if skipped:
        lines = "".join(f'<li class="skip">{_e(line)}</li>' for line in skipped)
        parts.append(f'<h3>Skipped or undone, and why</h3><ul class="changes">{lines}</ul>')
    if treatment.rounds:
        lines = "".join(f"<li>{_e(line)}</li>" for line in treatment.rounds)
        parts.append(f'<h3>Rounds (each remedy family, health score before -> after)</h3><ul class="changes">'
                     f"{lines}</ul>")  # fmt: skip
    return "".join(parts)


def _compare_table(before: Report, after: Report) -> str:
    """One row per layer name (forward order, merged), the signal before and after on one scale."""
    if not before.layers and not after.layers:
        return '<p class="skipped">No per-layer numbers in these reports.</p>'
    by_before = {s.name: s for s in before.layers}
    by_after = {s.name: s for s in after.layers}
    order = _merged_names([s.name for s in before.layers], [s.name for s in after.layers])
    low, high = _scale([*before.layers, *after.layers])
    refs = (_reference(before.layers), _reference(after.layers))
    rows = []
    for name in order:
        cells = []
        for layers, ref in ((by_before, refs[0]), (by_after, refs[1])):
            layer = layers.get(name)
            value = layer.signal_rms if layer is not None else math.nan
            kind = f"{layer.type} {layer.activation or ''}".strip() if layer is not None else "(absent)"
            zone = _zone(value, ref)
            note = f" ({zone})" if zone else ""
            cells.append(f'<td>{_e(kind)}</td><td class="num {zone}">{_e(fmt(value))}{note}'
                         f"</td><td>{_bar(value, low, high)}</td>")  # fmt: skip
        rows.append(f'<tr><td class="name"><code>{_e(name or "(model)")}</code></td>{"".join(cells)}</tr>')
    head = ("<tr><th>layer</th><th>before: type, then</th><th>signal</th><th>log scale</th>"
            "<th>after: type, then</th><th>signal</th><th>log scale</th></tr>")  # fmt: skip
    legend = '<p class="legend">Backprop signal (RMS) per layer; both bar columns share one log scale.</p>'
    return f"{legend}<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _merged_names(first: list[str], second: list[str]) -> list[str]:
    """``first``, with each name of ``second`` it lacks inserted after its predecessor."""
    order = list(first)
    at = 0
    for name in second:
        if name in order:
            at = order.index(name) + 1
            continue
        order.insert(at, name)
        at += 1
    return order


# the HTML views of lower layers' objects (History, Report, Treatment): see gradmedic._providers
provide("history_fragment", history_fragment)
provide("report_fragment", report_fragment)
provide("save_html", save_html)
provide("save_treatment_html", save_treatment_html)
provide("treatment_fragment", treatment_fragment)
