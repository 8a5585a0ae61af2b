"""A report as one self-contained HTML file: open it in any browser, offline, or attach it to a bug.

The page shows, top to bottom: the verdict (health score, findings by severity, the most severe
finding in one sentence and what to do first), the backprop signal per layer as a picture, every
finding with its evidence, cause and ranked remedies (with their code and a copy button), the
pictures of a training run when a :class:`~gradmedic.history.History` is given (flow, flow over
time, activations, update ratios: each skipped with a note when its data is missing), the
per-layer table and the notes. A :class:`~gradmedic.remedies.treat.Treatment` gets a page of its
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

from pathlib import Path

from .canvas import EXPLODE_FACTOR, VANISH_FACTOR
from .diagnosis.findings import Report
from .errors import ConfigError
from .history import History
from .pages.parts import FLOW_CAPTION, SHOWN_LAYERS
from .pages.report import history_fragment, report_fragment, report_html, save_html
from .pages.shell import CSS, DPI, NOTEBOOK_SCOPE, SCRIPT, scoped_css
from .pages.treatment import save_treatment_html, treatment_fragment, treatment_html

#: The public names of the pages, where they always were, and report_run.
__all__ = [
    "CSS", "DPI", "EXPLODE_FACTOR", "FLOW_CAPTION", "NOTEBOOK_SCOPE", "SCRIPT", "SHOWN_LAYERS",
    "VANISH_FACTOR", "history_fragment", "report_fragment", "report_html", "report_run", "save_html",
    "save_treatment_html", "scoped_css", "treatment_fragment", "treatment_html",
]  # fmt: skip


def report_run(
    run: str | Path, out: str | Path | None = None, title: str | None = None
) -> tuple[Report, Path]:
    """Load a recorded run, diagnose it and write its HTML report (``gradmedic report`` does this).

    Args:
        run: a JSON Lines file from ``History.save`` or ``gradmedic.watch(..., log_path=...)``.
        out: the HTML file to write (default: ``run`` with the suffix ``.html``).
        title: the page title (default: "gradmedic report: <file name>").

    Returns:
        The report and the path written.

    Raises:
        ConfigError: if ``run`` is missing or not a readable gradmedic history, or ``out``
            cannot be written; the message says which and what to do.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     report_run(Path(folder) / "missing.jsonl")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gradmedic.errors.ConfigError: ...missing.jsonl: no such file; give the JSON Lines file of a run...
    """
    from .diagnosis.checkup import diagnose

    run = Path(run)
    history = _load_run(run)
    if len(history) == 0:
        raise ConfigError(
            f"{run} holds no recorded step (only its header): nothing to diagnose. Was the run stopped "
            "before its first flush? Record steps with gradmedic.watch(..., log_path=...) or History.save"
        )
    report = diagnose(history)
    target = Path(out) if out is not None else run.with_suffix(".html")
    try:
        save_html(target, report, history, title or f"gradmedic report: {run.name}")
    except OSError as error:
        raise ConfigError(f"cannot write the report to {target}: {error.strerror or error}") from None
    return report, target


def _load_run(run: Path) -> History:
    """``History.load`` with an error that says what the file should be, for any bad file."""
    how = "give the JSON Lines file of a run (History.save or gradmedic.watch(..., log_path=...))"
    if not run.is_file():
        raise ConfigError(f"{run}: no such file; {how}")
    try:
        return History.load(run)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ConfigError(f"{run} is not a readable gradmedic history ({type(error).__name__}: "
                          f"{error}); {how}") from None  # fmt: skip
