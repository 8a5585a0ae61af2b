"""The lab: each of the nine classic remedies measured on real tasks, side by side (``gradmedic lab``).

:func:`run_lab` runs the studies' grid of cells on a local process pool (or Ray), saves each
cell's :class:`CellResult` as it finishes (:class:`ResultStore`), resumes where a run stopped and
writes the report. The studies, the cell function and the report are imported when first used.

Example:
    >>> from gradmedic.lab import CellSpec, run_lab
    >>> callable(run_lab) and CellSpec.__name__
    'CellSpec'
"""

from __future__ import annotations

from typing import Any

from .runner import LabInterrupted, default_workers, run_lab
from .schema import CellResult, CellSpec, versions
from .store import ResultStore, load_results

__all__ = [
    "CellResult",
    "CellSpec",
    "LabInterrupted",
    "ResultStore",
    "STUDIES",
    "build_cells",
    "default_workers",
    "load_results",
    "run_cell",
    "run_lab",
    "versions",
    "write_report",
]

_LAZY = {"STUDIES": "studies", "build_cells": "studies", "run_cell": "cell", "write_report": "report"}


def __getattr__(name: str) -> Any:
    """The studies, the cell function and the report, imported on first use (they are heavier)."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
