"""Moved to :mod:`gradmedic.monitor.distributed` (the monitor's exchange between ranks); kept
here so that imports from ``gradmedic.integrations.distributed`` go on working.

Example:
    >>> from gradmedic.integrations.distributed import REDUCTIONS
    >>> REDUCTIONS["signal_norm"]
    'rms'
"""

from __future__ import annotations

from ..monitor.distributed import (
    REDUCTIONS,
    Reducer,
    StepValues,
    combine,
    refuse_sharded,
    split_metrics,
    wants_reduction,
)

__all__ = [
    "REDUCTIONS",
    "Reducer",
    "StepValues",
    "combine",
    "refuse_sharded",
    "split_metrics",
    "wants_reduction",
]
