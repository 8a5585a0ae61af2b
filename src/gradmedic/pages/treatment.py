"""The page of a treatment: before and after side by side, both signals on one axis, what changed,
and its notebook fragment.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import gradmedic
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    >>> page = treatment_html(gradmedic.treat(model, torch.randn(16, 4), suggest_lr=False))
    >>> "Before treatment" in page and "After treatment" in page
    True
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from .._providers import provide
from ..canvas import zone
from ..diagnosis.findings import Report
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
    verdict_word,
)
from .shell import escape, fragment, page, picture, section, side_by_side

if TYPE_CHECKING:
    from ..remedies.treat import Treatment

# -- the page ----------------------------------------------------------------------------------


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
    title = title or f"gradmedic treatment: {verdict_word(before)} -> {verdict_word(after)}"
    sections = [
        section("flow", "Where the gradient goes, before and after", _treatment_picture(treatment)),
        section("changes", "What the treatment changed", _changes(treatment)),
        section("findings", "Findings before and after", side_by_side(
            findings(before, "before", fold=True), findings(after, "after"))),
        section("layers", "Per-layer signal before and after", _compare_table(before, after)),
        section("notes", "Notes", notes(list(dict.fromkeys([*before.notes, *after.notes])))),
    ]  # fmt: skip
    return page(title, [_treatment_summary(treatment), page_nav(sections), *sections])


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
    return fragment([_treatment_summary(treatment), _treatment_picture(treatment),
                      f"<h2>What the treatment changed</h2>{_changes(treatment)}"])  # fmt: skip


# -- parts -------------------------------------------------------------------------------------


def _treatment_summary(treatment: Treatment) -> str:
    before, after = treatment.before, treatment.after
    train = f"{treatment.optimizer[0]}" + (f", learning rate {treatment.lr:.2g}" if treatment.lr else "")
    train += f", clip_grad_norm_(model.parameters(), {treatment.clip_norm})" if treatment.clip_norm else ""
    why = f" ({treatment.optimizer[1]})" if treatment.optimizer[1] else ""
    kept = len(treatment.applied)
    boxes = verdict_box(before, advice=False), verdict_box(after, advice=False)
    return (
        side_by_side(*boxes, ("Before treatment", "After treatment"))
        + _proof(before, after)
        + f"<p><strong>{kept} change{'s' if kept != 1 else ''} kept</strong>; train the treated model with "
        f"<code>{escape(train)}</code>{escape(why)}. The treated model is <code>treatment.model</code>.</p>"
    )


def _proof(before: Report, after: Report) -> str:
    """One line: how much of the last layer's signal reaches the first layer, before and after."""
    ratios = []
    for report in (before, after):
        values = signals(report.layers)
        ratios.append(values[0] / values[-1] if len(values) >= 2 else math.nan)
    if not all(math.isfinite(r) for r in ratios):
        return ""
    return (
        '<p class="proof">The first layer receives <strong>' + escape(fmt(ratios[0])) + "</strong> of the "
        "last layer's backprop signal before treatment, <strong>"
        + escape(fmt(ratios[1]))
        + "</strong> after.</p>"
    )


def _treatment_picture(treatment: Treatment) -> str:
    from .. import plots

    reports = [treatment.before, treatment.after]
    if not any(signals(r.layers) for r in reports):
        return picture("", "", None, "no layer has a backprop signal in these reports")
    caption = FLOW_CAPTION + " Both checkups share the axis: before treatment and after."
    return picture("", caption, lambda: plots.flow_profiles(reports, ["before treatment", "after treatment"]))


def _changes(treatment: Treatment) -> str:
    from ..remedies.changes import group_changes

    made = group_changes(treatment.applied)
    skipped = group_changes([c for c in treatment.changes if c.skipped])
    items = [f"<li>{escape(line)}</li>" for line in made] or ["<li>no change was kept</li>"]
    parts = [f'<h3>Made and kept</h3><ul class="changes">{"".join(items)}</ul>']
    if skipped:
        lines = "".join(f'<li class="skip">{escape(line)}</li>' for line in skipped)
        parts.append(f'<h3>Skipped or undone, and why</h3><ul class="changes">{lines}</ul>')
    if treatment.rounds:
        lines = "".join(f"<li>{escape(line)}</li>" for line in treatment.rounds)
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
    low, high = signal_scale([*before.layers, *after.layers])
    refs = (last_signal(before.layers), last_signal(after.layers))
    rows = []
    for name in order:
        cells = []
        for layers, ref in ((by_before, refs[0]), (by_after, refs[1])):
            layer = layers.get(name)
            value = layer.signal_rms if layer is not None else math.nan
            kind = f"{layer.type} {layer.activation or ''}".strip() if layer is not None else "(absent)"
            where = zone(value, ref)
            note = f" ({where})" if where else ""
            cells.append(f'<td>{escape(kind)}</td><td class="num {where}">{escape(fmt(value))}{note}'
                         f"</td><td>{bar(value, low, high)}</td>")  # fmt: skip
        rows.append(
            f'<tr><td class="name"><code>{escape(name or "(model)")}</code></td>{"".join(cells)}</tr>'
        )
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
provide("save_treatment_html", save_treatment_html)
provide("treatment_fragment", treatment_fragment)
