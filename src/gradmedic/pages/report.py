"""The report page of a diagnosis, and its notebook fragments.

The page shows, top to bottom: the verdict (health score, findings by severity, the most severe
finding in one sentence and what to do first), the backprop signal per layer as a picture, every
finding with its evidence, cause and ranked remedies, the pictures of a training run when a
:class:`~gradmedic.history.History` is given (flow over time, activations, update ratios: each
skipped with a note when its data is missing), the per-layer table and the notes.

Example:
    >>> from gradmedic.diagnosis.findings import Report
    >>> page = report_html(Report([], 1.0, "checkup"))
    >>> page.startswith("<!DOCTYPE html>"), "Healthy" in page
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._providers import provide
from ..canvas import EXPLODE_FACTOR, VANISH_FACTOR, zone
from ..diagnosis.findings import Finding, Report
from ..history import History
from ..terminal import fmt
from .parts import (
    FLOW_CAPTION,
    bar,
    findings,
    last_signal,
    notes,
    page_nav,
    signal_scale,
    signals,
    verdict_box,
)
from .shell import escape, fragment, page, picture, section

# -- the page ----------------------------------------------------------------------------------


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
        section("flow", "Where the gradient goes", _flow_picture(report, history)),
        section("findings", "Findings", findings(report)),
        section("pictures", "Pictures of the training run", _history_pictures(history)),
        section("layers", "Per-layer numbers", _layer_table(report)),
        section("notes", "Notes", notes(report.notes)),
    ]
    return page(title, [verdict_box(report, history), page_nav(sections), *sections])


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


# -- notebooks ---------------------------------------------------------------------------------


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
    parts = [verdict_box(report, history), _flow_picture(report, history)]
    if report.findings:
        parts.append(f"<h2>Findings</h2>{findings(report, 'nb-finding', fold=True)}")
    return fragment(parts)


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
        f"<p><strong>gradmedic run of {escape(model)}</strong>: {len(history)} recorded steps, "
        f"{len(history.layers)} layers observed. <code>gradmedic.diagnose(history)</code> names what went "
        "wrong.</p>"
    )
    return fragment([summary, _history_pictures(history)])


# -- pictures ----------------------------------------------------------------------------------


def _flow_picture(report: Report, history: History | None) -> str:
    from .. import plots

    if history is not None and _recorded_rows(history, ("signal_rms", "weight_grad_norm")):
        caption = FLOW_CAPTION + " The lower panel shows the weight-gradient norm of the same layers."
        return picture("", caption, lambda: plots.flow(history))
    if not signals(report.layers):
        return picture("", "", None, "no layer has a backprop signal in this report")
    return picture("", FLOW_CAPTION, lambda: plots.flow_profiles(report, [_run_name(report, history)]))


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
    from .. import plots

    watch = "gradmedic.watch(model, optimizer, log_path='run.jsonl')"
    if history is None:
        return (
            '<p class="skipped">Skipped: this report came without a History. The pictures over '
            f"training (signal over time, saturated and dead units, update sizes) need one: record it "
            f"with <code>{escape(watch)}</code>, then <code>gradmedic report run.jsonl</code> or "
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
    return "\n".join(picture(title, caption, draw, missing) for title, caption, draw, missing in pictures)


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


# -- per-layer table ---------------------------------------------------------------------------


def _flags(report: Report) -> dict[str, list[Finding]]:
    flags: dict[str, list[Finding]] = {}
    for finding in report.findings:
        for name in finding.layers:
            flags.setdefault(name, []).append(finding)
    return flags


def _percent(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else ""


def _layer_table(report: Report) -> str:
    if not report.layers:
        return '<p class="skipped">No per-layer numbers in this report.</p>'
    low, high = signal_scale(report.layers)
    reference = last_signal(report.layers)
    flags = _flags(report)
    head = ("<tr><th>#</th><th>layer</th><th>type</th><th>then</th><th>backprop signal (RMS)</th>"
            "<th>log scale</th><th>weight-grad norm</th><th>saturated</th><th>dead</th>"
            "<th>flagged by</th></tr>")  # fmt: skip
    rows = []
    for i, layer in enumerate(report.layers):
        chips = "".join(
            f'<span class="chip small {f.severity.label}">{escape(f.kind)}</span>'
            for f in flags.get(layer.name, [])
        )
        rows.append(
            f'<tr class="{zone(layer.signal_rms, reference)}"><td class="num">{i}</td>'
            f'<td class="name"><code>{escape(layer.name or "(model)")}</code></td>'
            f"<td>{escape(layer.type)}</td><td>{escape(layer.activation or '')}</td>"
            f'<td class="num signal">{escape(fmt(layer.signal_rms))}</td>'
            f"<td>{bar(layer.signal_rms, low, high)}</td>"
            f'<td class="num">{escape(fmt(layer.weight_grad_norm))}</td>'
            f'<td class="num">{_percent(layer.saturated)}</td><td class="num">{_percent(layer.dead)}</td>'
            f"<td>{chips}</td></tr>"
        )
    legend = (
        '<p class="legend">Layers with parameters, in forward order. "then": the activation that follows '
        f"the layer. Shaded rows get less than 1/{1 / VANISH_FACTOR:g} of the last layer's signal "
        f"(vanishing) or more than {EXPLODE_FACTOR:g} times it (exploding). Bars share one log scale.</p>"
    )
    return f"{legend}<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


# the HTML views of lower layers' objects (History, Report, Treatment): see gradmedic._providers
provide("history_fragment", history_fragment)
provide("report_fragment", report_fragment)
provide("save_html", save_html)
