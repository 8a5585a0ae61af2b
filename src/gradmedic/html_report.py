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

The pages are written in :mod:`gradmedic.pages` (the shell every page shares, the report page, the
treatment page); this module keeps their public names where they always were.

Example:
    >>> from gradmedic.diagnosis.findings import Report
    >>> page = report_html(Report([], 1.0, "checkup"))
    >>> page.startswith("<!DOCTYPE html>"), "Healthy" in page
    (True, True)
"""

from __future__ import annotations

from .canvas import EXPLODE_FACTOR, VANISH_FACTOR
from .pages.parts import FLOW_CAPTION, SHOWN_LAYERS
from .pages.report import history_fragment, report_fragment, report_html, save_html
from .pages.shell import CSS, DPI, NOTEBOOK_SCOPE, SCRIPT, scoped_css
from .pages.treatment import save_treatment_html, treatment_fragment, treatment_html

#: The public names of the pages, where they always were.
__all__ = [
    "CSS", "DPI", "EXPLODE_FACTOR", "FLOW_CAPTION", "NOTEBOOK_SCOPE", "SCRIPT", "SHOWN_LAYERS",
    "VANISH_FACTOR", "history_fragment", "report_fragment", "report_html", "save_html",
    "save_treatment_html", "scoped_css", "treatment_fragment", "treatment_html",
]  # fmt: skip
