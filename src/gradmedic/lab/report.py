"""The lab's report, written from the saved cells alone: tables, pictures, each classic remedy answered.

:func:`write_report` reads ``DIR/cells/*.json`` (see :mod:`gradmedic.lab.store`) and writes:

- ``DIR/results.csv`` and ``DIR/results.jsonl``: one row per cell (see :mod:`gradmedic.lab.tables`);
- ``DIR/report.html``: one self-contained page (pictures embedded as PNG data URIs, no network);
- ``DIR/report.md`` with its pictures in ``DIR/figures/``.

The report holds, in order: the run's facts (studies, cells ok and failed, seeds, steps,
learning rates, wall time, library versions); the nine classic remedies point by point (for each
study: its baseline, the arm with the largest mean gain over it, by how much and where it helped
or hurt; see :mod:`gradmedic.lab.summary` for how baselines and gains are defined); the health
score check (ROC AUC of the score at initialization against "trained", overall and per study,
with the most discordant cells; see :mod:`gradmedic.lab.scorecheck`); one section per study
(grid, per-arm table, metric per condition, pictures from :mod:`gradmedic.lab.figures`, failed
cells); every failed cell with its error; and how the numbers are defined. The sections are built
by :mod:`gradmedic.lab.sections`. If the runner left a JSON object in ``DIR/run.json`` (preset,
elapsed time, workers ...), its entries are listed with the facts. A failed cell, a NaN or an
empty directory never stops the report.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from gradmedic.lab.schema import CellResult, CellSpec
    >>> from gradmedic.lab.store import ResultStore
    >>> with tempfile.TemporaryDirectory() as out:
    ...     spec = CellSpec("optimizers", "digits", "mlp", "adam", {"depth": 4}, 0, 10, (0.01,))
    ...     _ = ResultStore(out).save(CellResult(spec, score=0.9, metric=0.95))
    ...     page = write_report(out)
    ...     names = sorted(p.name for p in Path(out).iterdir())
    >>> page.name, names
    ('report.html', ['cells', 'figures', 'report.html', 'report.md', 'results.csv', 'results.jsonl'])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from . import sections
from .document import Block, Picture, to_html, to_markdown
from .schema import CellResult
from .scorecheck import early_score, score_check
from .store import ResultStore
from .summary import summarize
from .tables import write_tables

TITLE = "gradmedic lab report"
#: The folder, next to report.md, of the pictures it links to.
FIGURES = "figures"


def write_report(out: str | os.PathLike[str]) -> Path:
    """Write the tables, ``report.md`` (pictures in ``figures/``) and ``report.html`` of a lab
    directory from its saved cells; return the path of ``report.html``."""
    out = Path(out)
    results, notes = load(out)
    write_tables(results, out)
    blocks = build(results, out, notes)
    write_pictures(blocks, out / FIGURES)
    (out / "report.md").write_text(to_markdown(TITLE, blocks), encoding="utf-8")
    page = out / "report.html"
    page.write_text(to_html(TITLE, blocks), encoding="utf-8")
    return page


def write_pictures(blocks: Sequence[Block], folder: Path) -> None:
    """Each Picture block as ``folder/<name>.png``; PNGs left from an earlier report are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    for block in blocks:
        if isinstance(block, Picture):
            (folder / f"{block.name}.png").write_bytes(block.png)


def load(out: Path) -> tuple[list[CellResult], list[str]]:
    """The cells to report and notes on what was left out.

    The cells computed under the current library versions; when there are none, every saved cell
    (one per spec), with a note, so a report can still be re-rendered after an upgrade.
    """
    store = ResultStore(out)
    current = store.load()
    every = store.load(current_only=False) if store.cells.is_dir() else []
    stale = len(every) - len(current)
    if current or not every:
        hidden = f"{stale} saved cells computed under other library versions are not shown."
        return current, [hidden] if stale else []
    unique = {json.dumps(r.spec.to_dict(), sort_keys=True): r for r in every}
    shown = (
        f"No cell matches the current library versions: showing the {len(unique)} saved cells as computed."
    )
    return list(unique.values()), [shown]


def build(results: Sequence[CellResult], out: Path, notes: Sequence[str] = ()) -> list[Block]:
    """Every block of the report, in order (see the module doc)."""
    studies = summarize(results)
    check = score_check(results)
    blocks: list[Block] = [sections.nav(studies)]
    blocks += sections.facts(results, studies, out, notes)
    blocks += sections.remedies_answered(studies)
    blocks += sections.score_section(results, check, studies)
    early = score_check(results, early_score)
    blocks += sections.early_section(
        score_check([r for r in results if math.isfinite(r.early_score)]), early, studies
    )
    for study in studies:
        blocks += sections.study_section(study)
    blocks += sections.failed_section(results)
    blocks += sections.method()
    return blocks
