"""Plain-text pieces for terminal views: log-scale bars and compact numbers, readable in a CI log.

Example:
    >>> log_bar(1e-3, 1e-6, 1.0, width=6)
    '███   '
"""

from __future__ import annotations

import math

BAR_WIDTH = 24


def log_bar(value: float, low: float, high: float, width: int = BAR_WIDTH) -> str:
    """A bar whose length is ``value`` on a log scale from ``low`` (empty) to ``high`` (full)."""
    if not math.isfinite(value) or value <= 0:
        return " " * width
    span = math.log10(high) - math.log10(low) if high > low else 1.0
    fraction = (math.log10(value) - math.log10(low)) / span if high > low else 1.0
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "█" * filled + " " * (width - filled)


def fmt(value: float) -> str:
    """A compact number: ``3.1e-07``, ``0.042``, ``-`` for missing."""
    if not math.isfinite(value):
        return "-" if math.isnan(value) else str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.1e}"
    return f"{value:.3g}"
