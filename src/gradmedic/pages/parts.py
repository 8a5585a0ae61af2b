"""The parts of a diagnosis that the report page and the treatment page both show: the verdict box,
the findings with their remedies, the signal bars of the per-layer tables and the section links.

Example:
    >>> from gradmedic.diagnosis.findings import Report
    >>> box = verdict_box(Report([], 1.0, "checkup"))
    >>> "Healthy" in box, "one forward and one backward pass" in box
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..canvas import VANISH_FACTOR
from ..diagnosis.findings import Finding, LayerSummary, Remedy, Report, Severity
from ..history import History
from ..terminal import fmt
from .shell import bullets, escape, nav

#: A finding lists this many layers by name; the rest fold into a "show all" element.
SHOWN_LAYERS = 12


_SOURCES = {
    "checkup": "a checkup: one forward and one backward pass, before any training",
    "monitor": "a monitored training run",
}


FLOW_CAPTION = (
    "Each point is a layer, input on the left, output on the right; the height is the backprop "
    "signal (the gradient of the loss with respect to the layer's output) on a log scale. A healthy "
    "network keeps it roughly level; a line that falls steeply to the left is a vanishing gradient: "
    f"the layers in the blue zone get less than 1/{1 / VANISH_FACTOR:g} of the last layer's signal and "
    "barely learn."
)


_NAV = {"flow": "Signal per layer", "changes": "Changes", "findings": "Findings", "pictures": "Training run",
        "layers": "Per-layer table", "notes": "Notes"}  # fmt: skip


def page_nav(sections: Sequence[str]) -> str:
    """Links to the sections present (each starts with ``<section id="...">``)."""
    links = [
        (a, text) for a, text in _NAV.items() if any(s.startswith(f'<section id="{a}">') for s in sections)
    ]
    return nav(links)


def notes(items: Sequence[str]) -> str:
    """The report's notes as a list; nothing without notes."""
    return bullets(items) if items else ""


# -- verdict -----------------------------------------------------------------------------------


def verdict_word(report: Report) -> str:
    """``"healthy"`` or ``"NOT healthy"``, for titles."""
    return "healthy" if report.healthy else "NOT healthy"


def human(kind: str) -> str:
    """``vanishing_gradient`` -> ``Vanishing gradient``."""
    return kind.replace("_", " ").capitalize()


def _counts(report: Report) -> str:
    chips = []
    for severity in sorted(Severity, reverse=True):
        n = sum(1 for f in report.findings if f.severity == severity)
        style = severity.label if n else "none"
        chips.append(f'<span class="chip {style}">{n} {escape(severity.label)}</span>')
    return "".join(chips)


def _score(report: Report) -> str:
    score = min(max(report.score, 0.0), 1.0) if math.isfinite(report.score) else 0.0
    color = "var(--healthy)" if score >= 0.7 else "var(--warning)" if score >= 0.4 else "var(--critical)"
    return (
        f'<span class="score">health score <strong>{report.score:.2f}</strong> / 1 '
        f'<span class="meter" title="health score {report.score:.2f}">'
        f'<span style="width:{score * 100:.0f}%;background:{color}"></span></span></span>'
    )


def verdict_box(report: Report, history: History | None = None, advice: bool = True) -> str:
    """Verdict, score, counts, the most severe finding in one line and (with ``advice``) what to do."""
    state = "healthy" if report.healthy else "sick"
    verdict = "Healthy" if report.healthy else "NOT healthy"
    top = report.findings[0] if report.findings else None
    if top is None:
        line = "No finding: no rule raised an alarm."
    else:
        where = f" in {len(top.layers)} layer{'s' if len(top.layers) != 1 else ''}" if top.layers else ""
        line = (f'<strong>{escape(human(top.kind))}</strong> ({escape(top.severity.label)}){where}: '
                f"{escape(top.evidence)}")  # fmt: skip
    return (
        f'<div class="verdict {state}"><p><span class="big">{verdict}</span>{_score(report)}'
        f'{_counts(report)}</p><p>{line}</p><p class="why">From {escape(_source(report, history))}.</p>'
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
        f'<div class="first"><h3>What to do first: {escape(remedy.name)}</h3>'
        f'<p class="why">{escape(remedy.why)}</p><pre><code>{escape(remedy.code)}</code></pre>{treat}</div>'
    )


# -- findings ----------------------------------------------------------------------------------


def findings(report: Report, anchor: str = "finding", fold: bool = False) -> str:
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
    rows += [("Evidence", escape(finding.evidence)), ("Cause", escape(finding.cause))]
    if finding.numbers:
        rows.append(("Numbers", " ".join(
            f"<code>{escape(k)} = {escape(fmt(v))}</code>" for k, v in finding.numbers.items())))  # fmt: skip
    details = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    remedies = "".join(_remedy(r, f"{anchor}-remedy-{k}", human(finding.kind), shown)
                       for k, r in enumerate(finding.remedies, 1))  # fmt: skip
    remedies_html = (f'<h4>Remedies, best first</h4><ol class="remedies">{remedies}</ol>' if remedies
                     else '<p class="why">No remedy listed.</p>')  # fmt: skip
    if fold and remedies:
        count = len(finding.remedies)
        remedies_html = (f'<details><summary>{count} remed{"ies" if count != 1 else "y"}, best first'
                         f'</summary><ol class="remedies">{remedies}</ol></details>')  # fmt: skip
    return (
        f'<article class="finding {severity}" id="{escape(anchor)}"><h3>'
        f'<span class="chip {severity}">{escape(severity)}</span>{escape(human(finding.kind))} '
        f"<code>{escape(finding.kind)}</code></h3><dl>{details}</dl>{remedies_html}</article>"
    )


def _layer_names(names: list[str]) -> str:
    chips = [f"<code>{escape(name) if name else '(model)'}</code>" for name in names]
    shown = " ".join(chips[:SHOWN_LAYERS])
    if len(chips) <= SHOWN_LAYERS:
        return shown
    return f"{shown} <details><summary>all {len(chips)} layers</summary>{' '.join(chips)}</details>"


def _remedy(remedy: Remedy, anchor: str, finding: str, shown: dict[Remedy, tuple[str, str]]) -> str:
    """A ranked remedy: name, family, why and code; the code only the first time it is shown."""
    auto = '<span class="chip auto">gradmedic.treat applies it</span>' if remedy.automatic else ""
    family = f'<span class="chip family">{escape(remedy.family)}</span>'
    head = f"<strong>{escape(remedy.name)}</strong> {family}{auto}"
    if remedy in shown:
        where, title = shown[remedy]
        link = f'<a href="#{escape(where)}">{escape(title)}</a>'
        return f'<li>{head} <span class="why">(code under {link})</span></li>'
    shown[remedy] = (anchor, finding)
    return (
        f'<li id="{escape(anchor)}">{head}<div class="why">{escape(remedy.why)}</div>'
        f"<pre><code>{escape(remedy.code)}</code></pre></li>"
    )


# -- signal bars -------------------------------------------------------------------------------


def signals(layers: Sequence[LayerSummary]) -> list[float]:
    """The backprop signals of ``layers`` that a log scale can show (finite, positive), in order.

    Example:
        >>> signals([LayerSummary("a", "Linear", 0.0), LayerSummary("b", "Linear", 2.0)])
        [2.0]
    """
    return [s.signal_rms for s in layers if math.isfinite(s.signal_rms) and s.signal_rms > 0]


def signal_scale(layers: Sequence[LayerSummary]) -> tuple[float, float]:
    """The smallest and largest finite positive signal of ``layers``: the ends of the bars' log scale."""
    values = signals(layers)
    return (min(values), max(values)) if values else (1.0, 1.0)


def last_signal(layers: Sequence[LayerSummary]) -> float:
    """The signal of the last layer that has one (the layer next to the loss), or NaN."""
    values = signals(layers)
    return values[-1] if values else math.nan


def bar(value: float, low: float, high: float) -> str:
    """A horizontal bar as long as ``value`` on the log scale from ``low`` to ``high``."""
    if not math.isfinite(value) or value <= 0:
        return ""
    span = math.log10(high) - math.log10(low) if high > low else 0.0
    fraction = (math.log10(value) - math.log10(low)) / span if span else 1.0
    width = 2 + 98 * min(max(fraction, 0.0), 1.0)
    return f'<div class="bar" title="{escape(fmt(value))}"><span style="width:{width:.0f}%"></span></div>'
