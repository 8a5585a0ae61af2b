"""The lab report's pictures: one function per kind, each returning a matplotlib Figure or None.

Per study (a :class:`~gradmedic.lab.summary.StudySummary`):

- :func:`signal_figure`: backprop signal per layer at initialization, median over seeds, log y;
- :func:`metric_figure`: final metric against the study's axis (mean over seeds, band from the
  worst to the best seed), or per variant when the study has no axis;
- :func:`curves_figure`: learning curves (test metric and training loss against steps, mean over
  seeds);
- :func:`heatmap_figure`: mean metric and mean health score over a two-factor grid;
- :func:`time_figure`: for recurrent cells, the backprop signal against steps back (log y);

and :func:`score_figure`: the health score at initialization against the share of its study's best
metric that each cell reached, for the whole lab.

Every arm keeps one colour (and the baseline a dark grey dashed line) in all of its study's
pictures; the legend sits outside the panels, on the right. Values that are not finite (or not
positive on a log axis) are left out. Panels follow the second factor of the study (one per task,
activation family ...); with more than :data:`MAX_PANELS`, the first ones are drawn and the title
says so.

Example:
    >>> from gradmedic.lab.schema import CellResult, CellSpec
    >>> from gradmedic.lab.summary import summarize_study
    >>> cells = [CellResult(CellSpec("residual", "digits", "mlp", v, {"depth": d}, s, 10, (0.1,), "depth"),
    ...                     metric=0.5, signal=[0.01 * d, 1.0]) for v in ("plain", "residual")
    ...          for d in (8, 32) for s in (0, 1)]
    >>> fig = signal_figure(summarize_study(cells))
    >>> fig.axes[0].get_yscale(), [t.get_text() for t in fig.legends[0].get_texts()]
    ('log', ['plain (baseline)', 'residual'])
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..canvas import RAMP, RAMP_END, new_figure
from ..recurrent_stats import HORIZON_FRACTION, median_profile, memory_horizon
from .schema import CellResult
from .scorecheck import TARGET_FRACTION, ScoreCheck
from .summary import Stat, StudySummary, axis_title, axis_value, group, show

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Inches per panel, and for the legend on the right.
PANEL_SIZE = (4.0, 3.0)
LEGEND_WIDTH = 2.4
#: A figure of one panel is this wide (without the legend), so its title fits.
SINGLE_WIDTH = 6.0
#: At most this many panels in a row, and in a figure.
COLUMNS = 3
MAX_PANELS = 6
MARKERS = "o^vDP*X<>hp"
BASELINE_STYLE = {"color": "0.2", "linestyle": "--", "marker": "s"}
SIGNAL_UNIT = "RMS of dLoss/d(layer output), log"
METRIC_UNITS = {"accuracy": "test accuracy (fraction correct)", "solved": "test sequences solved (fraction)"}


# -- styles and panels -----------------------------------------------------------------------


def styles(names: Sequence[str], baseline: str | None, sequential: bool = False) -> dict[str, dict[str, Any]]:
    """A colour, line style and marker for each name; the baseline dark grey and dashed.

    Qualitative colours (tab10 without its grey, then tab20) for variants; with ``sequential``,
    a viridis ramp in the given order (axis values).

    Example:
        >>> found = styles(["sigmoid", "relu", "tanh"], "sigmoid")
        >>> found["sigmoid"]["linestyle"], found["relu"]["color"] != found["tanh"]["color"]
        ('--', True)
    """
    from matplotlib import colormaps

    tab10 = list(colormaps["tab10"].colors)  # type: ignore[attr-defined]
    qualitative = [c for i, c in enumerate(tab10) if i != 7] if baseline in names else tab10
    others = [n for n in names if n != baseline]
    if len(others) > len(qualitative):
        qualitative = list(colormaps["tab20"].colors)  # type: ignore[attr-defined]
    found: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(others):
        color = (
            colormaps[RAMP](RAMP_END * k / max(len(others), 2))
            if sequential
            else qualitative[k % len(qualitative)]
        )
        found[name] = {"color": color, "linestyle": "-", "marker": MARKERS[k % len(MARKERS)]}
    if baseline is not None and baseline in names:
        found[baseline] = dict(BASELINE_STYLE)
    return {name: found[name] for name in names}


def arm_styles(summary: StudySummary) -> dict[str, dict[str, Any]]:
    lay = summary.layout
    return styles(list(lay.arms), lay.baseline, sequential=lay.mode == "axis")


def variant_styles(summary: StudySummary) -> dict[str, dict[str, Any]]:
    lay = summary.layout
    return styles(list(lay.variants), lay.baseline if lay.mode == "variant" else None)


def legend_label(summary: StudySummary, name: str) -> str:
    return f"{name} (baseline)" if name == summary.layout.baseline else name


@dataclass
class Panel:
    """One panel: a title and the ok cells of each line."""

    title: str
    lines: dict[str, list[CellResult]]


def profile_panels(summary: StudySummary, keep: Callable[[CellResult], bool] = lambda r: True) -> list[Panel]:
    """Panels of per-arm profiles: per second-factor value at its largest axis value (variant
    studies), or per variant and factor with one line per axis value (axis studies)."""
    lay = summary.layout
    cells = [r for r in summary.cells if r.ok and keep(r)]
    panels = []
    if lay.mode == "axis":
        for where, chosen in group(cells, lambda r: (lay.variant(r), lay.facet(r))).items():
            title = ", ".join(p for p in where if p)
            panels.append(Panel(title, _lines(chosen, lay.arm, lay.arms)))
        return panels
    for facet, chosen in group(cells, lay.facet).items():
        chosen = _largest_x(chosen)
        title = ", ".join(p for p in (facet, lay.x_label(chosen[0]) if lay.several_x else "") if p)
        panels.append(Panel(title or "all cells", _lines(chosen, lay.arm, lay.arms)))
    return panels


def _largest_x(cells: list[CellResult]) -> list[CellResult]:
    """The cells at the largest axis value among ``cells`` (all of them when none has one)."""
    xs = [x for r in cells if (x := axis_value(r)) is not None]
    return [r for r in cells if axis_value(r) == max(xs)] if xs else cells


def _lines(
    cells: list[CellResult], key: Callable[[CellResult], str], order: Sequence[str]
) -> dict[str, list[CellResult]]:
    found = group(cells, key)
    return {name: found[name] for name in [*order, *found] if name in found}


# -- figure scaffolding ----------------------------------------------------------------------


def _figure(n: int, rows_per_panel: int = 1, share: bool = True) -> tuple[Figure, list[list[Axes]]]:
    """A figure with room for ``n`` panels (each ``rows_per_panel`` axes high) and a legend; with
    ``share``, the panels of a row share their y axis (one scale to compare, labels on the left)."""
    cols = max(1, min(n, COLUMNS))
    rows = max(1, math.ceil(n / cols))
    width = max(cols * PANEL_SIZE[0], SINGLE_WIDTH) + LEGEND_WIDTH
    height = rows * rows_per_panel * PANEL_SIZE[1] * (0.8 if rows_per_panel > 1 else 1.0) + 0.6
    fig = new_figure(width, height)
    grid = fig.subplots(rows * rows_per_panel, cols, squeeze=False, sharey="row" if share else False)
    panels = []
    for k in range(rows * cols):
        row, col = divmod(k, cols)
        panels.append([grid[row * rows_per_panel + j][col] for j in range(rows_per_panel)])
    for unused in panels[n:]:
        for ax in unused:
            ax.set_visible(False)
    return fig, panels[:n]


def _title(fig: Figure, text: str, shown: int, total: int) -> None:
    """The figure's title, wrapped and centred over the panels (the legend's column stays free);
    y labels and tick labels of shared axes only in the first column."""
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None and not spec.is_first_col() and ax.get_shared_y_axes().get_siblings(ax)[1:]:
            ax.tick_params(labelleft=False)
            ax.set_ylabel("")
    more = f" (first {shown} of {total} panels)" if total > shown else ""
    panels = fig.get_figwidth() - LEGEND_WIDTH
    lines = textwrap.wrap(text + more, width=max(40, int(panels * 10.5)))
    fig.suptitle("\n".join(lines), x=panels / 2 / fig.get_figwidth(), fontsize=11)


def _legend(fig: Figure, summary: StudySummary, drawn: dict[str, dict[str, Any]], title: str) -> None:
    """One legend for the figure, outside on the right: every drawn name in its style."""
    from matplotlib.lines import Line2D

    if not drawn:
        return
    handles = [Line2D([], [], markersize=5, linewidth=1.6, **style) for style in drawn.values()]
    labels = [legend_label(summary, name) for name in drawn]
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title=title, title_fontsize=8)


def _log(ax: Axes) -> None:
    """A log y axis; minor ticks (slow to draw) only where the lines of ``ax`` and of the axes
    sharing its y axis span under two decades."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_power))
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_or_five))
    shared = ax.get_shared_y_axes().get_siblings(ax)
    values = [
        v
        for a in shared
        for line in a.get_lines()
        for v in np.asarray(line.get_ydata(), dtype=float)
        if v > 0
    ]
    if values and max(values) / min(values) >= 100:
        ax.yaxis.set_minor_locator(NullLocator())


def _power(value: float, _: object = None) -> str:
    """A major log tick as plain text (mathtext labels are slow to lay out).

    Example:
        >>> _power(1e-6), _power(1e-3), _power(100.0), _power(2e5)
        ('1e-6', '0.001', '100', '2e5')
    """
    if value <= 0 or not math.isfinite(value):
        return ""
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    exponent = math.floor(math.log10(value) + 1e-9)
    return f"{round(value / 10**exponent, 3):g}e{exponent}"


def _two_or_five(value: float, _: object = None) -> str:
    """A minor log tick's label: only at 2 and 5 times a power of ten.

    Example:
        >>> _two_or_five(0.2), _two_or_five(0.3), _two_or_five(5e-5)
        ('0.2', '', '5e-5')
    """
    if value <= 0 or not math.isfinite(value):
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return _power(value) if round(mantissa, 6) in (2.0, 5.0) else ""


def _fraction_axis(ax: Axes) -> None:
    """A y axis for a metric in [0, 1], ticks every 0.25 (few ticks draw fast)."""
    ax.set_ylim(-0.03, 1.03)
    ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=9)


def _metric_unit(summary: StudySummary) -> str:
    """The y label of a metric: its unit, or the metric names when the study has several."""
    names = sorted({r.metric_name for r in summary.cells})
    if len(names) == 1:
        return METRIC_UNITS.get(names[0], names[0])
    return f"test metric ({', '.join(names) or 'none'})"


def _drawn(
    summary: StudySummary, panels: list[Panel], style: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    names = {name for p in panels for name in p.lines}
    return {name: s for name, s in style.items() if name in names}


#: Draws one panel: the panel, its axes (one per row of the panel), the arms' styles.
PanelDrawer = Callable[[Panel, list["Axes"], dict[str, dict[str, Any]]], None]


def _panel_figure(
    summary: StudySummary,
    has_data: Callable[[CellResult], bool],
    draw: PanelDrawer,
    title: str,
    rows_per_panel: int = 1,
) -> Figure | None:
    """A figure of per-arm panels (see :func:`profile_panels`) of the cells that ``has_data``,
    each drawn by ``draw``, under ``title`` and one legend of the arms drawn; None without data."""
    panels = [p for p in profile_panels(summary, has_data) if p.lines]
    if not panels:
        return None
    style = arm_styles(summary)
    fig, axes = _figure(min(len(panels), MAX_PANELS), rows_per_panel=rows_per_panel)
    for panel, panel_axes in zip(panels, axes):
        draw(panel, panel_axes, style)
    _title(fig, title, len(axes), len(panels))
    _legend(fig, summary, _drawn(summary, panels, style), _arm_title(summary))
    return fig


# -- per study -------------------------------------------------------------------------------


def signal_figure(summary: StudySummary) -> Figure | None:
    """Backprop signal per layer at initialization, one line per arm (median over seeds)."""
    title = f"{summary.study}: backprop signal per layer at initialization (median over seeds)"
    return _panel_figure(summary, lambda r: bool(r.signal), _signal_panel, title)


def _signal_panel(panel: Panel, axes: list[Axes], style: dict[str, dict[str, Any]]) -> None:
    from matplotlib.ticker import MaxNLocator

    (ax,) = axes
    drawn = 0
    for name, cells in panel.lines.items():
        profile = median_profile(_stack([r.signal for r in cells]))
        x = np.arange(len(profile))
        shown = np.isfinite(profile) & (profile > 0)
        drawn += int(shown.any())
        ax.plot(x[shown], profile[shown], markersize=3, linewidth=1.4, **style[name])
    if drawn:
        _log(ax)
    else:
        _empty(ax, "no finite signal")
    ax.set_title(panel.title, fontsize=9, loc="left")
    ax.xaxis.set_major_locator(MaxNLocator(6, integer=True))
    ax.set_xlabel("layer (forward order: input -> output)", fontsize=8)
    ax.set_ylabel(SIGNAL_UNIT, fontsize=8)
    ax.grid(True, which="major", axis="y", alpha=0.3)


def metric_figure(summary: StudySummary) -> Figure | None:
    """Final metric against the axis per variant (mean, band: worst to best seed), or per variant."""
    lay = summary.layout
    cells = [r for r in summary.cells if r.ok]
    if not cells:
        return None
    facets = group(cells, lay.facet)
    fig, axes = _figure(min(len(facets), MAX_PANELS))
    style = variant_styles(summary)
    for (facet, chosen), (ax,) in zip(facets.items(), axes):
        by_variant = _lines(chosen, lay.variant, lay.variants)
        if len({axis_value(r) for r in chosen} - {None}) > 1:
            _metric_lines(ax, by_variant, style)
        else:
            _metric_dots(ax, by_variant, style)
        ax.set_title(facet, fontsize=9, loc="left")
        ax.set_ylabel(_metric_unit(summary), fontsize=8)
        _fraction_axis(ax)
        ax.grid(True, alpha=0.3)
    axes_names = sorted({r.spec.axis for r in cells if r.spec.axis is not None})
    against = f"against {' / '.join(axes_names)}" if lay.several_x else "per variant"
    _title(
        fig,
        f"{summary.study}: final test metric {against} (mean over seeds; band or dots: each seed)",
        len(axes),
        len(facets),
    )
    shown = {lay.variant(r) for r in cells}
    _legend(fig, summary, {v: s for v, s in style.items() if v in shown}, "variant")
    return fig


def _metric_lines(
    ax: Axes, by_variant: dict[str, list[CellResult]], style: dict[str, dict[str, Any]]
) -> None:
    """Per variant, the mean over seeds at each axis value, with a band from the worst to the best."""
    every = [r for chosen in by_variant.values() for r in chosen]
    xs = sorted({x for r in every if (x := axis_value(r)) is not None})
    axis = next((r.spec.axis for r in every if r.spec.axis is not None), None)
    for variant, cells in by_variant.items():
        found = [(x, Stat.of(r.metric for r in cells if axis_value(r) == x)) for x in xs]
        stats = [(x, s) for x, s in found if s.n]
        if not stats:
            continue
        where = np.array([x for x, _ in stats])
        ax.plot(where, [s.mean for _, s in stats], markersize=4, linewidth=1.5, **style[variant])
        ax.fill_between(
            where,
            [s.low for _, s in stats],
            [s.high for _, s in stats],
            color=style[variant]["color"],
            alpha=0.12,
            linewidth=0,
        )
    if xs[0] > 0 and xs[-1] / xs[0] >= 8:
        ax.set_xscale("log")
    ax.set_xticks(xs, [show(x) for x in xs], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel(axis_title(axis) + (" (log scale)" if ax.get_xscale() == "log" else ""), fontsize=8)


def _metric_dots(ax: Axes, by_variant: dict[str, list[CellResult]], style: dict[str, dict[str, Any]]) -> None:
    """Each seed a dot, the mean a bar, per variant."""
    for k, (variant, cells) in enumerate(by_variant.items()):
        values = [r.metric for r in cells if math.isfinite(r.metric)]
        color = style[variant]["color"]
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(k + jitter, values, s=14, color=color, marker=style[variant]["marker"], zorder=3)
        if values:
            ax.hlines(float(np.mean(values)), k - 0.3, k + 0.3, color=color, linewidth=2.5)
    ax.set_xticks(range(len(by_variant)), list(by_variant), rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(by_variant) - 0.4)


def curves_figure(summary: StudySummary) -> Figure | None:
    """Learning curves per arm: test metric (top) and training loss (bottom), mean over seeds."""
    positive = all(v > 0 for r in summary.cells for v in r.curve_loss if math.isfinite(v))
    title = f"{summary.study}: learning curves of the chosen learning rate (mean over seeds)"

    def draw(panel: Panel, axes: list[Axes], style: dict[str, dict[str, Any]]) -> None:
        _curves_panel(panel, axes, style, _metric_unit(summary), positive)

    return _panel_figure(summary, lambda r: bool(r.curve_steps), draw, title, rows_per_panel=2)


def _curves_panel(
    panel: Panel, axes: list[Axes], style: dict[str, dict[str, Any]], metric_unit: str, positive: bool
) -> None:
    from matplotlib.ticker import MaxNLocator

    top, bottom = axes
    for name, cells in panel.lines.items():
        steps, metric = _mean_curve([(r.curve_steps, r.curve_metric) for r in cells])
        top.plot(steps, metric, markersize=2.5, linewidth=1.3, **style[name])
        steps, loss = _mean_curve([(r.curve_steps, r.curve_loss) for r in cells])
        keep = np.isfinite(loss)
        bottom.plot(steps[keep], loss[keep], markersize=2.5, linewidth=1.3, **style[name])
    if positive and bottom.get_lines():
        _log(bottom)
    top.set_title(panel.title, fontsize=9, loc="left")
    top.set_ylabel(metric_unit, fontsize=8)
    _fraction_axis(top)
    bottom.set_ylabel("training loss" + (" (log)" if positive else ""), fontsize=8)
    bottom.set_xlabel("training step", fontsize=8)
    for ax in (top, bottom):
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        ax.grid(True, alpha=0.3)


def _mean_curve(curves: list[tuple[list[int], list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Per step (union of the curves' steps), the mean of the finite values; NaN where none."""
    at: dict[int, list[float]] = {}
    for steps, values in curves:
        for step, value in zip(steps, values):
            at.setdefault(int(step), [])
            if value is not None and math.isfinite(value):
                at[step].append(float(value))
    steps = sorted(at)
    means = [float(np.mean(at[s])) if at[s] else math.nan for s in steps]
    return np.asarray(steps, dtype=float), np.asarray(means, dtype=float)


def heatmap_figure(summary: StudySummary) -> Figure | None:
    """Mean metric and mean health score over variants x second factor, at each factor value's
    largest axis value; None without a second factor (the metric figure shows variants x axis)."""
    grid = _heat_grid(summary)
    if grid is None:
        return None
    rows, columns, cell_of, what = grid
    fig, axes = _figure(2, share=False)
    for (ax,), (title, value) in zip(
        axes, (("final test metric", "metric"), ("health score at init", "score"))
    ):
        data = np.array(
            [
                [Stat.of(getattr(r, value) for r in cell_of.get((row, col), [])).mean for col in columns]
                for row in rows
            ]
        )
        _heat(ax, data, rows, columns)
        ax.set_title(f"mean {title}", fontsize=9, loc="left")
        ax.set_xlabel(what, fontsize=8)
        ax.set_ylabel("variant", fontsize=8)
    _title(fig, f"{summary.study}: two-factor grid, mean over seeds (blank: no finite value)", 2, 2)
    return fig


def _heat_grid(
    summary: StudySummary,
) -> tuple[list[str], list[str], dict[tuple[str, str], list[CellResult]], str] | None:
    lay = summary.layout
    cells = [r for r in summary.cells if r.ok]
    if not lay.factors:
        return None
    cells = [r for chosen in group(cells, lay.facet).values() for r in _largest_x(chosen)]
    what = " x ".join(lay.factors) + (" (each at its largest axis value)" if lay.several_x else "")
    cell_of = group(cells, lambda r: (lay.variant(r), lay.facet(r)))
    rows = [v for v in lay.variants if any(k[0] == v for k in cell_of)]
    columns = list(dict.fromkeys(k[1] for k in sorted(cell_of, key=lambda k: _numeric_first(k[1]))))
    if len(rows) < 2 or len(columns) < 2:
        return None
    return rows, columns, cell_of, what


def _numeric_first(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _heat(ax: Axes, data: np.ndarray, rows: list[str], columns: list[str]) -> None:
    from matplotlib import colormaps

    cmap = colormaps[RAMP].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(data):
        if math.isfinite(value):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value < 0.6 else "black",
            )
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)


def time_figure(summary: StudySummary) -> Figure | None:
    """Recurrent cells: backprop signal against steps back, relative to the last step (median
    over seeds), each line's memory horizon dotted."""
    title = (
        f"{summary.study}: backprop signal through time at initialization (median over seeds; "
        f"grey dotted: memory-horizon threshold {HORIZON_FRACTION:g})"
    )
    return _panel_figure(summary, lambda r: bool(r.time_signal), _time_panel, title)


def _time_panel(panel: Panel, axes: list[Axes], style: dict[str, dict[str, Any]]) -> None:
    (ax,) = axes
    for name, cells in panel.lines.items():
        _time_line(ax, cells, style[name])
    ax.axhline(HORIZON_FRACTION, color="0.5", linestyle=":", linewidth=1)
    _log(ax)
    ax.set_title(panel.title, fontsize=9, loc="left")
    ax.set_xlabel("steps back from the last step (0 = last)", fontsize=8)
    ax.set_ylabel("signal / signal at the last step (log)", fontsize=8)
    ax.grid(True, which="major", axis="y", alpha=0.3)


def _time_line(ax: Axes, cells: list[CellResult], style: dict[str, Any]) -> None:
    profile = median_profile(_stack([r.time_signal or [] for r in cells]))
    if not len(profile) or not profile[0] > 0:
        return
    y = profile / profile[0]
    x = np.arange(len(y))
    shown = np.isfinite(y) & (y > 0)
    ax.plot(x[shown], y[shown], linewidth=1.4, **{**style, "marker": None})
    horizon = memory_horizon(profile)
    if 0 < horizon < len(profile):
        ax.axvline(horizon, color=style["color"], linestyle=":", linewidth=1)


def _stack(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Rows of different lengths as one array, NaN-padded on the right."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        out[i, : len(row)] = np.asarray(row, dtype=float)
    return out


def _arm_title(summary: StudySummary) -> str:
    return (summary.layout.axis or "arm") if summary.layout.mode == "axis" else "variant"


# -- the whole lab ---------------------------------------------------------------------------


def score_figure(results: Sequence[CellResult], check: ScoreCheck, studies: Sequence[str]) -> Figure | None:
    """Health score at initialization against the share of its study's best metric each ok cell
    reached, coloured by study; the "trained" line at TARGET_FRACTION."""
    cells = [r for r in results if r.ok and math.isfinite(r.score)]
    if not cells:
        return None
    fig, ((ax,),) = _figure(1)
    colors = styles(list(studies), None)
    for study, chosen in group(cells, lambda r: r.spec.study).items():
        share = [_share(r, check) for r in chosen]
        ax.scatter(
            [r.score for r in chosen],
            share,
            s=12,
            alpha=0.7,
            label=study,
            color=colors.get(study, {"color": "0.5"})["color"],
            marker=colors.get(study, {}).get("marker", "o"),
        )
    ax.axhline(
        TARGET_FRACTION,
        color="0.3",
        linestyle="--",
        linewidth=1,
        label=f"trained: >= {TARGET_FRACTION:.0%} of the best",
    )
    ax.set_xlabel("health score at initialization (checkup, 0 to 1)", fontsize=8)
    ax.set_ylabel("final metric / best of its study and task", fontsize=8)
    ax.set_xlim(-0.03, 1.03)
    ax.grid(True, alpha=0.3)
    _title(fig, f"Health score at initialization against trainability (ROC AUC {check.auc:.3f})", 1, 1)
    fig.legend(loc="outside right upper", fontsize=8, title="study", title_fontsize=8)
    return fig


def _share(result: CellResult, check: ScoreCheck) -> float:
    best = check.best.get((result.spec.study, result.spec.task), math.nan)
    if not (math.isfinite(result.metric) and best > 0):
        return 0.0  # nothing learnt, or nothing to compare with: drawn at the bottom
    return result.metric / best
