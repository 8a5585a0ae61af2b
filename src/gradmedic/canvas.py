"""The canvas every gradmedic picture is drawn on, written once for plots, HTML pages, the lab and the
integrations.

- :func:`new_figure`: a matplotlib Figure on its own Agg canvas: no pyplot, no global backend
  change, no window; matplotlib is imported only here, when a picture is asked for, and its absence
  is an ImportError that says what to install;
- :func:`check_picture_path` and :func:`save_figure`: a picture saved by path (PNG or SVG);
- :func:`png_bytes`, :func:`rgb_pixels`, :func:`encode_png` and :func:`data_uri`: a figure as PNG
  bytes, as an RGB array, and as a data URI for a self-contained HTML page;
- :func:`thinned`: which of many ticks keep a label;
- the colours and the vanishing/exploding zones (:func:`zone`, :func:`shade_zones`). The zones'
  thresholds belong to the diagnosis (:data:`gradmedic.diagnosis.rules.VANISH_WARNING` and
  :data:`~gradmedic.diagnosis.rules.EXPLODE_WARNING`): a picture shades exactly what the depth rule
  flags.

Example:
    >>> fig = new_figure(2.0, 1.0)
    >>> ax = fig.subplots()
    >>> png = png_bytes(fig, dpi=50)
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", rgb_pixels(fig, dpi=50).shape
    (True, (50, 100, 3))
    >>> data_uri(b"abc"), list(thinned(10, 4)), zone(1e-5, 1.0)
    ('data:image/png;base64,YWJj', [0, 3, 6, 9], 'vanishing')
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .diagnosis.rules import EXPLODE_WARNING, VANISH_WARNING
from .errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MISSING_MATPLOTLIB = "gradmedic's pictures need matplotlib: pip install 'gradmedic[plot]'"
#: Resolution of the pictures embedded in HTML pages (drawn at their usual size in inches).
PAGE_DPI = 90
#: Resolution of the pictures saved to a ``.png`` path.
FILE_DPI = 110

#: The vanishing zone: a signal below this factor times the signal at the last layer (the depth
#: rule's warning threshold, owned by the diagnosis).
VANISH_FACTOR = VANISH_WARNING
#: The exploding zone: a signal above this factor times the signal at the last layer.
EXPLODE_FACTOR = EXPLODE_WARNING
VANISH_COLOR = "tab:blue"
EXPLODE_COLOR = "tab:red"
HEALTHY_COLOR = "tab:green"
#: Opacity of a shaded zone or band.
ZONE_ALPHA = 0.1
#: The colour of a mark on a value that is not finite (NaN or Inf).
NON_FINITE_COLOR = "red"
#: The colour map of ordered lines (layer depth, axis values), used up to :data:`RAMP_END` (its
#: last tenth, pale yellow, is hard to see on white).
RAMP = "viridis"
RAMP_END = 0.9


# -- figures ---------------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches, constrained layout, on an Agg canvas.

    Raises:
        ImportError: without matplotlib, saying ``pip install 'gradmedic[plot]'``.

    Example:
        >>> fig = new_figure(4.0, 3.0)
        >>> fig.get_size_inches().tolist(), type(fig.canvas).__name__
        ([4.0, 3.0], 'FigureCanvasAgg')
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_picture_path(path: str | Path | None) -> None:
    """Refuse, before drawing, a path that is neither ``.png`` nor ``.svg``.

    Example:
        >>> check_picture_path("flow.jpg")
        Traceback (most recent call last):
        ...
        gradmedic.errors.ConfigError: path='flow.jpg': save pictures as .png or .svg
    """
    if path is not None and Path(path).suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"path={str(path)!r}: save pictures as .png or .svg")


def save_figure(fig: Figure, path: str | Path | None) -> Figure:
    """Save ``fig`` to ``path`` (format from the suffix, :data:`FILE_DPI`) when given; return ``fig``.

    Example:
        >>> import tempfile
        >>> fig = new_figure(1.0, 1.0)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = save_figure(fig, Path(folder) / "a.svg")
        ...     (Path(folder) / "a.svg").read_text().count("<svg")
        1
    """
    if path is not None:
        fig.savefig(path, format=Path(path).suffix.lower()[1:], dpi=FILE_DPI)
    return fig


# -- bytes and pixels ------------------------------------------------------------------------


def png_bytes(fig: Figure, dpi: int = PAGE_DPI) -> bytes:
    """``fig`` as PNG bytes at ``dpi``, without the software name (same bytes on every run)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def rgb_pixels(fig: Figure, dpi: int) -> np.ndarray:
    """``fig`` drawn once at ``dpi`` (``savefig`` lays a constrained layout out twice), as RGB
    ``uint8`` pixels ``[height, width, 3]``; the figure keeps ``dpi``."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
    return pixels[:, :, :3]


def encode_png(pixels: np.ndarray) -> bytes:
    """RGB ``uint8`` pixels as PNG bytes.

    Example:
        >>> encode_png(np.zeros((2, 3, 3), dtype=np.uint8))[:4]
        b'\\x89PNG'
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI, for an ``<img>`` of a page that fetches nothing."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# -- ticks, colours, zones -------------------------------------------------------------------


def thinned(n: int, most: int) -> range:
    """Indices of the ticks that keep a label among ``n``: every k-th from the first, at most ``most``.

    Example:
        >>> list(thinned(5, 8)), list(thinned(100, 40))[:4], len(thinned(100, 40))
        ([0, 1, 2, 3, 4], [0, 3, 6, 9], 34)
    """
    return range(0, n, max(1, math.ceil(n / most)))


def depth_colors(n: int) -> list[Any]:
    """``n`` colours along :data:`RAMP`, the first for the layer nearest the input.

    Example:
        >>> colors = depth_colors(3)
        >>> len(colors), colors[0] != colors[-1]
        (3, True)
    """
    from matplotlib import colormaps

    cmap = colormaps[RAMP]
    return [cmap(k / max(n - 1, 1) * RAMP_END) for k in range(n)]


def zone(value: float, reference: float) -> str:
    """``"vanishing"``, ``"exploding"`` or ``""``: where a layer's signal lies against the last layer's.

    Example:
        >>> zone(1e-4, 1.0), zone(2e3, 1.0), zone(0.5, 1.0), zone(float("nan"), 1.0)
        ('vanishing', 'exploding', '', '')
    """
    if not (math.isfinite(value) and math.isfinite(reference)) or value <= 0:
        return ""
    if value < VANISH_FACTOR * reference:
        return "vanishing"
    return "exploding" if value > EXPLODE_FACTOR * reference else ""


def shade_zones(ax: Axes, reference: float, values: np.ndarray) -> None:
    """Shade the vanishing and exploding zones around ``reference`` (the signal at the last layer);
    the y axis spans them and every drawn value in ``values``."""
    low = min(float(values.min()), reference * VANISH_FACTOR) / 5
    high = max(float(values.max()), reference * EXPLODE_FACTOR) * 5
    ax.axhspan(
        low,
        reference * VANISH_FACTOR,
        color=VANISH_COLOR,
        alpha=ZONE_ALPHA,
        label=f"vanishing zone: < {VANISH_FACTOR:g} x signal at the last layer",
    )
    ax.axhspan(
        reference * EXPLODE_FACTOR,
        high,
        color=EXPLODE_COLOR,
        alpha=ZONE_ALPHA,
        label=f"exploding zone: > {EXPLODE_FACTOR:g} x signal at the last layer",
    )
    ax.set_ylim(low, high)
