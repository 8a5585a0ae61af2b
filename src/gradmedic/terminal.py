"""Plain-text views of a History for the terminal: no dependency, readable in a CI log.

Example:
    >>> log_bar(1e-3, 1e-6, 1.0, width=6)
    '███   '
"""

from __future__ import annotations

import math

import numpy as np

from .history import History
from .profile import layer_profile

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


def signal_table(history: History, last: int = 20) -> str:
    """Per-layer table, in forward order: backprop signal (RMS, with a log bar), weight-gradient
    norm, update ratio and saturated/dead fractions (medians over the last ``last`` rows).
    """
    signal = layer_profile(history, "signal_rms", last)
    columns = {
        metric: dict(zip(signal.names, layer_profile(history, metric, last).values))
        for metric in ("weight_grad_norm", "update_ratio")
    }
    saturation = _activation_after(history, last)
    finite = signal.values[np.isfinite(signal.values) & (signal.values > 0)]
    low, high = (finite.min(), finite.max()) if len(finite) else (1.0, 1.0)
    header = f"{'layer':<14}{'type':<10}{'signal rms':>11}  {'(log scale)':<{BAR_WIDTH}}"
    header += f"{'w-grad':>9}{'update':>9}{'sat/dead':>10}"
    lines = [header, "-" * len(header)]
    for layer, value in zip(signal.layers, signal.values):
        lines.append(
            f"{layer.name[:13]:<14}{layer.type[:9]:<10}{fmt(value):>11}  {log_bar(value, low, high)}"
            f"{fmt(columns['weight_grad_norm'][layer.name]):>9}{fmt(columns['update_ratio'][layer.name]):>9}"
            f"{saturation.get(layer.name, ''):>10}"
        )
    return "\n".join(lines)


def _activation_after(history: History, last: int) -> dict[str, str]:
    """For each parametrised layer, the saturated or dead fraction of the activation after it."""
    saturated = layer_profile(history, "act_saturated", last, kind=None)
    dead = layer_profile(history, "act_dead", last, kind=None)
    result: dict[str, str] = {}
    owner = None
    for layer, sat, gone in zip(saturated.layers, saturated.values, dead.values):
        if layer.kind == "param":
            owner = layer.name
        elif owner is not None and owner not in result:
            value = sat if math.isfinite(sat) else gone
            if math.isfinite(value):
                result[owner] = f"{value:.0%}"
    return result
