"""Pictures of a :class:`~gradmedic.history.History`: where the gradient dies, and when.

Each picture is one function that returns a :class:`matplotlib.figure.Figure` and, given
``path``, also saves it (PNG or SVG, chosen by the suffix):

- :func:`flow`: backprop signal and weight-gradient norm per layer; several runs share one axis;
- :func:`flow_over_time`: heatmap of a per-layer metric, layers by training step;
- :func:`activations`: saturated and dead fractions per layer over training;
- :func:`update_ratios`: size of each update relative to the weights, per layer over training.
- :func:`through_time`: backprop signal of recurrent layers against steps back, with each
  line's memory horizon marked.
- :func:`flow_profiles`: backprop signal per layer from Reports (a checkup before and after
  treatment), one axis, no History needed.

matplotlib is optional (``pip install 'gradmedic[plot]'``) and imported only when a picture is
drawn. Figures are drawn on :mod:`gradmedic.canvas` (an Agg canvas: no pyplot, no global backend
change, no window). In a notebook, a figure shows when it is the value of a cell.

In every picture NaN means "not recorded" and is left blank; values that were recorded but not
finite (NaN or Inf, see :attr:`History.non_finite`) are marked with a red cross, and values that are
exactly zero (which a log axis cannot show) with a triangle on the bottom edge.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import gradmedic
    >>> from gradmedic import plots
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 1))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> with gradmedic.watch(model, opt) as monitor:
    ...     for _ in range(3):
    ...         opt.zero_grad()
    ...         model(torch.randn(16, 4)).pow(2).mean().backward()
    ...         opt.step()
    >>> fig = plots.flow(monitor.history)
    >>> [tick.get_text() for tick in fig.axes[1].get_xticklabels()]
    ['0 (Linear)', '2 (Linear)']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .canvas import EXPLODE_FACTOR as EXPLODE_FACTOR
from .canvas import (
    HEALTHY_COLOR,
    NON_FINITE_COLOR,
    RAMP,
    RAMP_END,
    check_picture_path,
    depth_colors,
    new_figure,
    save_figure,
    shade_zones,
    thinned,
)
from .canvas import MISSING_MATPLOTLIB as MISSING_MATPLOTLIB
from .canvas import VANISH_FACTOR as VANISH_FACTOR
from .errors import ConfigError
from .history import FORWARD_METRICS, History
from .layers import LayerInfo
from .metrics import METRICS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .diagnosis.findings import Report

#: With ``step=None``, :func:`flow` draws the median of this many most recent rows.
RECENT_ROWS = 5
#: The band :func:`update_ratios` shades as the usual healthy range (around the classic 1e-3).
HEALTHY_UPDATE = (1e-4, 1e-2)
#: Per-layer pictures label at most this many layers; the others keep an unlabelled tick.
MAX_TICK_LABELS = 40
#: Time-series pictures name layers in a legend up to this count, else with a depth colour bar.
MAX_LEGEND_LAYERS = 10

#: Title and unit of each metric drawn per layer over training (see :mod:`gradmedic.metrics`).
TITLES = {name: metric.title for name, metric in METRICS.items() if metric.drawn}
UNITS = {name: metric.unit for name, metric in METRICS.items() if metric.drawn}
_NON_FINITE = "non-finite value (NaN/Inf)"
_ZERO = "exactly 0 (below float precision)"


# -- the pictures ----------------------------------------------------------------------------


def flow(
    histories: History | Sequence[History],
    labels: Sequence[str] | None = None,
    *,
    step: int | None = None,
    signal: str = "signal_rms",
    activations: bool = False,
    marks: dict[str, str] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Backprop signal (top) and weight-gradient norm (bottom) per layer, input to output.

    Layers are on x in forward order, values on a log y axis, one line per History, so several
    models (or a model before and after treatment) share the axes; layers are matched by name.
    The top panel shades two zones, measured on the first History: *vanishing* below
    ``VANISH_FACTOR`` (1e-3) times the signal at its last drawn layer (the one next to the
    loss), and *exploding* above ``EXPLODE_FACTOR`` (1e3) times it: the thresholds of the
    diagnosis's depth rule (:data:`gradmedic.diagnosis.rules.VANISH_WARNING`).

    Args:
        histories: one History, or several to compare.
        labels: one legend label per History (default: the model class, else "run i").
        step: the recorded step to draw (the closest row of each History); ``None`` draws the
            median of the last ``RECENT_ROWS`` rows, which is robust to noisy single steps.
        signal: ``"signal_rms"`` (comparable across layer widths) or ``"signal_norm"``.
        activations: also draw activation modules (Sigmoid, ReLU...), not only layers with
            parameters.
        marks: short labels to write on layers, by layer name (e.g. findings).
        path: if given, also save the picture there (``.png`` or ``.svg``).

    Returns:
        The figure; ``fig.axes[0]`` is the signal panel, ``fig.axes[1]`` the weight gradients.

    Raises:
        ConfigError: for an unknown ``signal``, a ``labels`` of the wrong length or a ``path``
            that is neither ``.png`` nor ``.svg``.

    Example:
        >>> import numpy as np
        >>> from gradmedic.history import History
        >>> from gradmedic.layers import LayerInfo
        >>> layers = [LayerInfo(str(i), "Linear", "param", forward_index=i) for i in range(3)]
        >>> history = History(layers, [])
        >>> history.append("signal_rms", [0], np.array([[1e-7, 1e-4, 1e-2]]))
        >>> fig = flow(history, marks={"0": "vanishing"})
        >>> fig.axes[0].get_yscale(), len(fig.axes[0].get_xticks())
        ('log', 3)
    """
    check_picture_path(path)
    if signal not in ("signal_rms", "signal_norm"):
        raise ConfigError(f"signal={signal!r}: choose 'signal_rms' or 'signal_norm'")
    runs = [histories] if isinstance(histories, History) else list(histories)
    names = _run_labels(runs, labels)
    columns = [_flow_columns(h, activations) for h in runs]
    order, layer_of = _merge_layers(runs, columns)
    longest = max((len(_layer_label(layer)) for layer in layer_of.values()), default=0)
    fig, (top, bottom) = _figure(_width(len(order)), 7.0 + min(3.0, 0.05 * longest), rows=2)
    drawn = []
    for k, (history, cols) in enumerate(zip(runs, columns, strict=True)):
        style = _run_style(k)
        drawn.append(_flow_line(top, history, signal, cols, order, step, names[k], style))
        _flow_line(bottom, history, "weight_grad_norm", cols, order, step, names[k], style)
    _shade_zones(top, drawn)
    _flow_axes(fig, (top, bottom), order, layer_of, signal, step)
    _mark_layers((top, bottom), order, marks or {})
    return save_figure(fig, path)


def flow_over_time(history: History, metric: str = "signal_rms", path: str | Path | None = None) -> Figure:
    """Heatmap of a per-layer metric: layers (forward order, input at the top) by training step.

    Gradient metrics use a logarithmic colour scale, so a gradient that dies as training goes
    on shows as rows turning dark. Cells not recorded are blank (white), cells exactly 0 are
    black, and non-finite values are marked with a red cross.

    Args:
        history: the record to draw.
        metric: any per-layer metric (``signal_rms``, ``signal_norm``, ``weight_grad_norm``,
            ``update_ratio``, ``act_*``); the ``act_*`` fractions and moments use a linear scale.
        path: if given, also save the picture there (``.png`` or ``.svg``).

    Returns:
        The figure: the heatmap axes, then its colour bar.

    Raises:
        ConfigError: if ``metric`` is not a per-layer metric, or for a bad ``path`` suffix.

    Example:
        >>> import numpy as np
        >>> from gradmedic.history import History
        >>> from gradmedic.layers import LayerInfo
        >>> history = History([LayerInfo("fc", "Linear", "param", forward_index=0)], [])
        >>> history.append("signal_rms", [0, 1, 2], np.array([[1.0], [0.1], [np.nan]]))
        >>> fig = flow_over_time(history)
        >>> fig.axes[0].collections[0].get_array().shape
        (1, 3)
    """
    from matplotlib.ticker import MaxNLocator

    check_picture_path(path)
    if metric not in TITLES:
        raise ConfigError(f"metric={metric!r} is not a per-layer metric; choose one of {', '.join(TITLES)}")
    series = _series(history, metric)
    cols = _columns_with_data(history, metric, series[1]) if series is not None else []
    fig, (ax,) = _figure(10.0, _height(len(cols)))
    ax.set_title(f"{TITLES[metric]}, over training", fontsize=10, loc="left", wrap=True)
    if series is None or not cols:
        _note_empty(ax, metric)
        return save_figure(fig, path)
    steps, values = series
    data = values[:, cols].T
    mesh = _heatmap(ax, steps, data, log=metric not in FORWARD_METRICS)
    _mark_heatmap(ax, history, metric, steps, data, cols)
    zeros = " (black: exactly 0)" if np.any(data == 0) and metric not in FORWARD_METRICS else ""
    fig.colorbar(mesh, ax=ax, label=UNITS[metric] + zeros)
    _layer_ticks(ax, [_layer_label(history.layers[i]) for i in cols], axis="y")
    ax.set_ylabel("layer (input at the top, output at the bottom)")
    ax.set_xlabel("training step  (white: not recorded, red x: NaN/Inf)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save_figure(fig, path)


def activations(history: History, path: str | Path | None = None) -> Figure:
    """Saturated (top) and dead (bottom) fractions per layer over training, y in [0, 1].

    Each panel draws only the layers that have that statistic: saturation exists for activations
    with flat tails (Sigmoid, Tanh, Hardtanh...), dead units for the ReLU family.

    Args:
        history: the record to draw (recorded with ``activations_every`` on).
        path: if given, also save the picture there (``.png`` or ``.svg``).

    Returns:
        The figure; ``fig.axes[0]`` is the saturation panel, ``fig.axes[1]`` the dead units.

    Example:
        >>> import numpy as np
        >>> from gradmedic.history import History
        >>> from gradmedic.layers import LayerInfo
        >>> history = History([LayerInfo("act", "Sigmoid", "activation", forward_index=0)], [])
        >>> history.append("act_saturated", [0, 1], np.array([[0.1], [0.6]]))
        >>> fig = activations(history)
        >>> fig.axes[0].get_ylim() == (0, 1), len(fig.axes[0].get_lines())
        (True, 1)
    """
    check_picture_path(path)
    fig, axes = _figure(10.0, 7.5, rows=2)
    for ax, metric in zip(axes, ("act_saturated", "act_dead"), strict=True):
        _time_panel(fig, ax, history, metric, log=False)
        ax.set_ylim(0.0, 1.0)
    return save_figure(fig, path)


def update_ratios(history: History, path: str | Path | None = None) -> Figure:
    """Update-to-weight ratio per layer over training, log y, with the usual healthy band shaded.

    The ratio ``||w_after - w_before|| / ||w_before||`` of one optimizer step is commonly around
    1e-3; the band ``HEALTHY_UPDATE`` (1e-4 to 1e-2) is shaded. Layers far below it barely learn
    (a vanished gradient, or a learning rate too small); far above it, training is unstable.

    Args:
        history: the record to draw (recorded with ``updates_every`` on).
        path: if given, also save the picture there (``.png`` or ``.svg``).

    Returns:
        The figure; ``fig.axes[0]`` holds the lines (a depth colour bar follows for many layers).

    Example:
        >>> import numpy as np
        >>> from gradmedic.history import History
        >>> from gradmedic.layers import LayerInfo
        >>> history = History([LayerInfo("fc", "Linear", "param", forward_index=0)], [])
        >>> history.append("update_ratio", [0, 1], np.array([[2e-3], [1e-3]]))
        >>> update_ratios(history).axes[0].get_yscale()
        'log'
    """
    check_picture_path(path)
    fig, (ax,) = _figure(10.0, 5.0)
    ax.axhspan(*HEALTHY_UPDATE, color=HEALTHY_COLOR, alpha=0.12, label="usual healthy range (1e-4 to 1e-2)")
    _time_panel(fig, ax, history, "update_ratio", log=True)
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, HEALTHY_UPDATE[0] / 3), max(high, HEALTHY_UPDATE[1] * 3))
    return save_figure(fig, path)


def flow_profiles(
    reports: Report | Sequence[Report],
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Backprop signal per layer from one or more reports (``Report.layers``), on one log axis.

    Needs no History: a checkup's (or a diagnosis's) :class:`~gradmedic.diagnosis.Report` keeps
    the signal of every parametrised layer, so a model before and after treatment can share one
    axis. Layers are matched by name; the vanishing and exploding zones are those of :func:`flow`,
    measured on the first report. Each legend entry gives the ratio first/last layer.

    Args:
        reports: one Report, or several to compare.
        labels: one legend label per report (default: the report's source, e.g. "checkup").
        title: the axes title (default: what the picture shows).
        path: if given, also save the picture there (``.png`` or ``.svg``).

    Returns:
        The figure; ``fig.axes[0]`` holds one line per report.

    Raises:
        ConfigError: for ``labels`` of the wrong length or a ``path`` that is neither ``.png``
            nor ``.svg``.

    Example:
        >>> from gradmedic.diagnosis.findings import LayerSummary, Report
        >>> sick = Report([], 0.0, "checkup", layers=[LayerSummary("0", "Linear", 1e-9),
        ...                                           LayerSummary("2", "Linear", 1e-2)])
        >>> fixed = Report([], 1.0, "checkup", layers=[LayerSummary("0", "Linear", 5e-3),
        ...                                            LayerSummary("2", "Linear", 1e-2)])
        >>> fig = flow_profiles([sick, fixed], ["sick", "treated"])
        >>> [text.split("  ")[0] for text in fig.axes[0].get_legend_handles_labels()[1][:2]]
        ['sick', 'treated']
    """
    check_picture_path(path)
    given = list(reports) if isinstance(reports, Sequence) else [reports]
    runs = [_report_history(r) for r in given]
    names = [f"{name}  {_first_over_last(r)}".rstrip() for name, r in zip(_run_labels(runs, labels), given)]
    columns = [_flow_columns(h, False) for h in runs]
    order, layer_of = _merge_layers(runs, columns)
    longest = max((len(_layer_label(layer)) for layer in layer_of.values()), default=0)
    fig, (ax,) = _figure(_width(len(order)), 4.5 + min(3.0, 0.05 * longest))
    drawn = []
    for k, (history, cols) in enumerate(zip(runs, columns, strict=True)):
        drawn.append(_flow_line(ax, history, "signal_rms", cols, order, None, names[k], _run_style(k)))
    _shade_zones(ax, drawn)
    ax.set_title(title or TITLES["signal_rms"], fontsize=10, loc="left", wrap=True)
    ax.set_ylabel(UNITS["signal_rms"] + " (log)")
    ax.set_yscale("log")
    ax.grid(True, which="major", axis="y", alpha=0.3)
    if not any(len(values) for _, values in drawn):
        _note_empty(ax, "signal_rms")
    _layer_ticks(ax, [_layer_label(layer_of[name]) for name in order])
    ax.set_xlim(-0.5, max(len(order), 1) - 0.5)
    ax.set_xlabel("layer, in forward order (input on the left, output on the right)")
    _legend(ax)
    return save_figure(fig, path)


def _report_history(report: Report) -> History:
    """A one-row History of a report's per-layer signal, so the flow helpers can draw it."""
    layers = [LayerInfo(s.name, s.type, "param", forward_index=i) for i, s in enumerate(report.layers)]
    history = History(layers, [], meta={"model": report.source})
    if layers:
        history.append("signal_rms", [0], np.array([[s.signal_rms for s in report.layers]]))
    return history


def _first_over_last(report: Report) -> str:
    """'(first/last layer: 3.8e-18)' from a report's layers, or '' with fewer than two signals."""
    values = [s.signal_rms for s in report.layers if math.isfinite(s.signal_rms) and s.signal_rms > 0]
    return f"(first/last layer: {values[0] / values[-1]:.1e})" if len(values) >= 2 else ""


# -- figure plumbing -------------------------------------------------------------------------


def _figure(width: float, height: float, rows: int = 1) -> tuple[Figure, list[Axes]]:
    """A new figure on the canvas (:func:`gradmedic.canvas.new_figure`), with ``rows`` axes sharing x."""
    fig = new_figure(width, height)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _width(n_layers: int) -> float:
    """Room for the legend on the right, plus a little for each layer."""
    return min(20.0, max(11.0, 7.0 + 0.22 * min(n_layers, MAX_TICK_LABELS * 2)))


def _height(n_layers: int) -> float:
    return min(12.0, max(3.5, 2.0 + 0.22 * min(n_layers, MAX_TICK_LABELS)))


_ONLY = {
    "act_saturated": "only activations with flat tails (Sigmoid, Tanh...) have it",
    "act_dead": "only ReLU-like activations have it",
}


def _note_empty(ax: Axes, metric: str) -> None:
    """A centred note in place of the data: 'no <metric> recorded', and why when it is known."""
    why = f"\n({_ONLY[metric]})" if metric in _ONLY else ""
    ax.text(
        0.5, 0.5, f"no {metric} recorded{why}", transform=ax.transAxes, ha="center", va="center", color="0.4"
    )


def _legend(ax: Axes, inside: bool = False) -> None:
    """A legend, outside the axes on the right unless ``inside``, one entry per distinct label."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    unique = dict(sorted(unique.items(), key=lambda item: item[0] in (_NON_FINITE, _ZERO)))  # marks last
    if unique and inside:
        ax.legend(unique.values(), unique.keys(), loc="best", fontsize=8, framealpha=0.9)
    elif unique:
        ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _layer_label(layer: LayerInfo) -> str:
    return f"{layer.name or '(model)'} ({layer.type})"


def _layer_ticks(ax: Axes, labels: list[str], axis: str = "x") -> None:
    """One tick per layer; at most ``MAX_TICK_LABELS`` labels (every k-th), small when many."""
    kept = set(thinned(len(labels), MAX_TICK_LABELS))
    shown = [label if i in kept else "" for i, label in enumerate(labels)]
    size = 8 if len(labels) > 12 else 9
    if axis == "y":
        ax.set_yticks(range(len(labels)), shown, fontsize=size)
        return
    rotate = len(labels) > 6 or max(map(len, labels), default=0) > 12
    angle = (90 if len(labels) > 20 else 60) if rotate else 0  # vertical when dense: no overlap
    ax.set_xticks(
        range(len(labels)),
        shown,
        fontsize=size,
        rotation=angle,
        ha="right" if rotate else "center",
        va="center" if angle == 90 else "top",
        rotation_mode="anchor",
    )


# -- data selection --------------------------------------------------------------------------


def _series(history: History, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Steps and values of ``metric``, or ``None`` when it has no row."""
    if metric not in history.metrics:
        return None
    steps, values = history.array(metric)
    return (steps, values) if len(steps) else None


def _columns_with_data(history: History, metric: str, values: np.ndarray) -> list[int]:
    """Layers (forward order) with a recorded value of ``metric`` (not NaN, or a non-finite event)."""
    # For the act_* fractions NaN also means "cannot saturate / die", and the monitor reports
    # it as a non-finite event: there, only values that are not NaN count.
    fractions = metric in ("act_saturated", "act_dead")
    named = {e.layer for e in history.non_finite if e.metric == metric and not fractions}
    seen = ~np.all(np.isnan(values), axis=0)
    return [i for i in history.forward_order() if seen[i] or history.layers[i].name in named]


def _pick_rows(steps: np.ndarray, step: int | None) -> np.ndarray:
    """Row indices: the last ``RECENT_ROWS``, or the one row closest to ``step``."""
    if step is None:
        return np.arange(max(0, len(steps) - RECENT_ROWS), len(steps))
    return np.array([int(np.argmin(np.abs(steps - step)))])


def _summary(rows: np.ndarray) -> np.ndarray:
    """Per column, the median of the finite values (NaN where there is none)."""
    finite = np.where(np.isfinite(rows), rows, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(finite, axis=0)


def _bad_layers(history: History, metric: str, steps: np.ndarray) -> set[str]:
    """Layers with a non-finite event of ``metric`` at one of ``steps``."""
    wanted = set(steps.tolist())
    return {e.layer for e in history.non_finite if e.metric == metric and e.step in wanted}


# -- flow ------------------------------------------------------------------------------------


def _flow_columns(history: History, activations: bool) -> list[int]:
    keep = ("param", "activation") if activations else ("param",)
    return [i for i in history.forward_order() if history.layers[i].kind in keep]


def _run_labels(runs: list[History], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(runs):
            raise ConfigError(f"{len(labels)} labels for {len(runs)} histories: give one label per history")
        return list(labels)
    names = [str(h.meta.get("model", f"run {k + 1}")) for k, h in enumerate(runs)]
    return [f"{n} ({k + 1})" if names.count(n) > 1 else n for k, n in enumerate(names)]


def _run_style(k: int) -> dict[str, Any]:
    markers = "osD^vP*X"
    return {"color": f"C{k % 10}", "marker": markers[k % len(markers)], "markersize": 5, "linewidth": 1.5}


def _merge_layers(runs: list[History], columns: list[list[int]]) -> tuple[list[str], dict[str, LayerInfo]]:
    """Layer names of all runs in one order: each new name goes right after its predecessor."""
    order: list[str] = []
    layer_of: dict[str, LayerInfo] = {}
    for history, cols in zip(runs, columns, strict=True):
        at = 0
        for i in cols:
            name = history.layers[i].name
            if name in layer_of:
                at = order.index(name) + 1
                continue
            layer_of[name] = history.layers[i]
            order.insert(at, name)
            at += 1
    return order, layer_of


def _flow_line(
    ax: Axes,
    history: History,
    metric: str,
    cols: list[int],
    order: list[str],
    step: int | None,
    label: str,
    style: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one run's metric per layer; return the x positions and values drawn (finite, > 0)."""
    series = _series(history, metric)
    if series is None or not cols:
        return np.zeros(0), np.zeros(0)
    steps, values = series
    rows = _pick_rows(steps, step)
    picked = values[np.ix_(rows, np.array(cols))]
    value = _summary(picked)
    x = np.array([order.index(history.layers[i].name) for i in cols], dtype=float)
    shown = np.isfinite(value) & (value > 0)
    ax.plot(x[shown], value[shown], label=label, **style)
    bad = _bad_layers(history, metric, steps[rows])
    non_finite = np.isinf(picked).any(axis=0) | np.array([history.layers[i].name in bad for i in cols])
    _edge_marks(ax, x[non_finite], top=True)
    _edge_marks(ax, x[(value == 0) & ~non_finite], top=False)
    return x[shown], value[shown]


def _edge_marks(ax: Axes, x: np.ndarray, top: bool, color: Any = "0.3") -> None:
    """A red cross on the top edge (non-finite) or triangles on the bottom edge (exactly 0) at ``x``."""
    if len(x) == 0:
        return
    style = (
        {"marker": "x", "color": NON_FINITE_COLOR, "markersize": 9}
        if top
        else {"marker": "v", "color": color}
    )
    ax.plot(
        x,
        np.full(len(x), 0.99 if top else 0.01),
        linestyle="none",
        transform=ax.get_xaxis_transform(),
        clip_on=False,
        in_layout=False,
        label=_NON_FINITE if top else _ZERO,
        **style,
    )


def _shade_zones(ax: Axes, drawn: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Shade the vanishing and exploding zones around the first run's last-layer signal."""
    x, values = drawn[0]
    if len(values) == 0:
        return
    shade_zones(ax, float(values[np.argmax(x)]), np.concatenate([v for _, v in drawn]))


def _flow_axes(
    fig: Figure,
    axes: tuple[Axes, Axes],
    order: list[str],
    layer_of: dict[str, LayerInfo],
    signal: str,
    step: int | None,
) -> None:
    """Titles, log scales, layer ticks, legends and empty-panel notes of :func:`flow`."""
    when = (
        f"at step {step} (closest recorded)"
        if step is not None
        else (f"median of the last {RECENT_ROWS} recorded steps")
    )
    fig.suptitle(f"Gradient flow through the layers, input -> output ({when})", fontsize=11)
    for ax, metric in zip(axes, (signal, "weight_grad_norm"), strict=True):
        ax.set_title(TITLES[metric], fontsize=10, loc="left")
        ax.set_ylabel(UNITS[metric] + " (log)")
        ax.set_yscale("log")
        ax.grid(True, which="major", axis="y", alpha=0.3)
        if not any(len(line.get_xdata()) for line in ax.get_lines()):  # type: ignore[arg-type]
            _note_empty(ax, metric)
    _legend(axes[0])
    if set(axes[1].get_legend_handles_labels()[1]) - set(axes[0].get_legend_handles_labels()[1]):
        _legend(axes[1])
    _layer_ticks(axes[1], [_layer_label(layer_of[name]) for name in order])
    axes[1].set_xlim(-0.5, max(len(order), 1) - 0.5)
    axes[1].set_xlabel("layer, in forward order (input on the left, output on the right)")


def _mark_layers(axes: tuple[Axes, Axes], order: list[str], marks: dict[str, str]) -> None:
    """A dotted line through both panels and a short label at the top, for each marked layer."""
    placed = [name for name in marks if name in order]
    for k, name in enumerate(placed):
        x = order.index(name)
        for ax in axes:
            ax.axvline(x, color="tab:purple", linestyle=":", linewidth=1.2)
        right = x > 0.7 * (len(order) - 1) and x > 0
        axes[0].annotate(
            marks[name],
            (x, 0.96 - 0.08 * (k % 3)),
            xycoords=axes[0].get_xaxis_transform(),
            xytext=(-4 if right else 4, 0),
            textcoords="offset points",
            ha="right" if right else "left",
            va="top",
            fontsize=8,
            color="tab:purple",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85, "edgecolor": "none"},
        )
    missing = [name for name in marks if name not in order]
    if missing:
        label = axes[1].get_xlabel()
        axes[1].set_xlabel(f"{label}\nmarked but not drawn: {', '.join(missing)}")


# -- heatmap ---------------------------------------------------------------------------------


def _step_edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around each step: midpoints, and half a gap beyond the ends."""
    steps = steps.astype(float)
    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    middle = (steps[1:] + steps[:-1]) / 2
    return np.concatenate([[2 * steps[0] - middle[0]], middle, [2 * steps[-1] - middle[-1]]])


def _heatmap(ax: Axes, steps: np.ndarray, data: np.ndarray, log: bool) -> Any:
    """Draw ``data`` (layers by steps); blank where not finite, black where 0 on a log scale."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize

    finite = np.isfinite(data) & ((data > 0) if log else True)
    shown = data[finite]
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (1e-12, 1.0)
    cmap = colormaps[RAMP].with_extremes(bad=(0, 0, 0, 0), under="black")
    if log:
        high = max(high, low * 10)
        norm: Normalize = LogNorm(low, high)
        plotted = np.where(np.isfinite(data) & (data == 0), low / 10, data)
    else:
        norm, plotted = Normalize(low, max(high, low + 1e-12)), data
    masked = np.ma.masked_invalid(plotted)
    rows = np.arange(data.shape[0] + 1) - 0.5
    mesh = ax.pcolormesh(_step_edges(steps), rows, masked, cmap=cmap, norm=norm)
    ax.set_ylim(rows[-1], rows[0])  # input at the top
    return mesh


def _mark_heatmap(
    ax: Axes, history: History, metric: str, steps: np.ndarray, data: np.ndarray, cols: list[int]
) -> None:
    """A red cross on each cell recorded as Inf, or named by a non-finite event."""
    row_of = {history.layers[i].name: r for r, i in enumerate(cols)}
    where = {(int(r), int(steps[c])) for r, c in zip(*np.nonzero(np.isinf(data)), strict=True)}
    where |= {
        (row_of[e.layer], e.step) for e in history.non_finite if e.metric == metric and e.layer in row_of
    }
    if where:
        rows, xs = zip(*sorted(where), strict=True)
        ax.plot(
            xs, rows, linestyle="none", marker="x", color=NON_FINITE_COLOR, markersize=8, label=_NON_FINITE
        )


# -- time series -----------------------------------------------------------------------------


def _time_panel(fig: Figure, ax: Axes, history: History, metric: str, log: bool) -> None:
    """One line per layer that has ``metric``, over the recorded steps."""
    from matplotlib.ticker import MaxNLocator

    ax.set_title(TITLES[metric], fontsize=10, loc="left")
    ax.set_ylabel(UNITS[metric] + (" (log)" if log else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_subplotspec().is_last_row():  # type: ignore[union-attr]
        ax.set_xlabel("training step")
    if log:
        ax.set_yscale("log")
    series = _series(history, metric)
    cols = _columns_with_data(history, metric, series[1]) if series is not None else []
    if series is None or not cols:
        _note_empty(ax, metric)
        _legend(ax)
        return
    steps, values = series
    colors = depth_colors(len(cols))
    named = len(cols) <= MAX_LEGEND_LAYERS
    for k, i in enumerate(cols):
        label = _layer_label(history.layers[i]) if named else f"_layer {k}"
        _time_line(ax, history, metric, steps, values[:, i], i, label, colors[k], log)
    if not named:
        _depth_colorbar(fig, ax, [_layer_label(history.layers[i]) for i in cols])
    _legend(ax, inside=not named)


def _time_line(
    ax: Axes,
    history: History,
    metric: str,
    steps: np.ndarray,
    column: np.ndarray,
    index: int,
    label: str,
    color: Any,
    log: bool,
) -> None:
    """One layer's line (finite values; > 0 on a log axis), plus its non-finite and zero marks."""
    shown = np.isfinite(column) & ((column > 0) if log else True)
    marker = "o" if len(steps) <= 30 else None
    ax.plot(
        steps[shown],
        column[shown],
        color=color,
        label=label,
        marker=marker,
        markersize=3,
        linewidth=1.2,
        clip_on=log,
        in_layout=False,
    )  # fractions at exactly 0 or 1 stay visible on the [0, 1] axis
    name = history.layers[index].name
    event_steps = {e.step for e in history.non_finite if e.metric == metric and e.layer == name}
    bad = np.isinf(column) | np.isin(steps, list(event_steps))
    _edge_marks(ax, steps[bad], top=True)
    if log:
        _edge_marks(ax, steps[(column == 0) & ~bad], top=False, color=color)


def _depth_colorbar(fig: Figure, ax: Axes, labels: list[str]) -> None:
    """A colour bar mapping line colours to layers (input at the bottom), with a few names."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    colors = colormaps[RAMP](np.linspace(0, RAMP_END, 256))
    mappable = ScalarMappable(Normalize(0, len(labels) - 1), ListedColormap(colors))
    bar = fig.colorbar(mappable, ax=ax, label="layer depth (line colour)", pad=0.01)
    ticks = list(thinned(len(labels), 8))
    bar.set_ticks(ticks, labels=[labels[t] for t in ticks])
    bar.ax.tick_params(labelsize=7)


# -- through time ----------------------------------------------------------------------------


def through_time(
    runs: History | Sequence[History] | Mapping[str, Sequence[float] | np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    step: int | None = None,
    relative: bool = True,
    path: str | Path | None = None,
) -> Figure:
    """Backprop signal of recurrent layers against steps back, log scale, memory horizon marked.

    One line per recurrent layer of each History (the monitor's ``time_signal``), or per entry
    of a mapping ``label -> profile`` (the signal by steps back, 0 = the last step, as in
    :func:`gradmedic.recurrent_stats.memory_horizon`). With ``relative`` each line is divided by
    its value at the last step, so lines of different models share the memory-horizon threshold
    (:data:`gradmedic.recurrent_stats.HORIZON_FRACTION`, drawn dashed); a dotted vertical line in
    each line's colour marks where it falls below it (its memory horizon), and the legend gives
    the horizon against the sequence length.

    Args:
        runs: a History, several Histories (each layer's label is prefixed with the run's), or a
            mapping from label to profile.
        labels: one label per History (default: the model class); not used with a mapping.
        step: the recorded step to draw (the closest row); ``None`` draws the median of the last
            ``RECENT_ROWS`` rows.
        relative: divide each line by its value at the last step.
        path: if given, also save the picture there (``.png`` or ``.svg``).

    Returns:
        The figure; ``fig.axes[0]`` holds the lines.

    Raises:
        ConfigError: for ``labels`` of the wrong length or a bad ``path`` suffix.

    Example:
        >>> import numpy as np
        >>> fig = through_time({"RNN": 0.6 ** np.arange(100), "LSTM": 0.97 ** np.arange(100)})
        >>> ax = fig.axes[0]
        >>> ax.get_yscale(), [ln.get_label() for ln in ax.get_lines() if ln.get_label()[0] != "_"][:2]
        ('log', ['RNN: horizon 14 of 100 steps', 'LSTM: horizon 100 of 100 steps'])
    """
    check_picture_path(path)
    from .recurrent_stats import HORIZON_FRACTION

    profiles = _time_profiles(runs, labels, step)
    fig, (ax,) = _figure(10.0, 5.5)
    what = "relative to the last step" if relative else "norm"
    ax.set_title(
        f"Backprop signal through time: ||dLoss/dh_t|| {what}, against steps back from the last step",
        fontsize=10,
        loc="left",
    )
    ax.set_yscale("log")
    ax.set_xlabel("steps back from the last step (0 = the last step; right = earlier inputs)")
    ax.set_ylabel("signal / signal at the last step (log)" if relative else "||dLoss/dh_t|| (log)")
    if not profiles:
        ax.text(0.5, 0.5, "no time_signal recorded\n(only recurrent layers have it: nn.RNN, nn.LSTM, "
                "nn.GRU and their cells)", transform=ax.transAxes, ha="center", va="center",
                color="0.4")  # fmt: skip
        return save_figure(fig, path)
    for k, (label, profile) in enumerate(profiles):
        _time_signal_line(ax, label, profile, f"C{k % 10}", relative)
    if relative:
        ax.axhline(HORIZON_FRACTION, color="0.35", linestyle="--", linewidth=1,
                   label=f"memory horizon threshold: {HORIZON_FRACTION:g} x the last step")  # fmt: skip
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.set_xlim(left=-0.5)
    _legend(ax)
    return save_figure(fig, path)


def _time_profiles(
    runs: History | Sequence[History] | Mapping[str, Sequence[float] | np.ndarray],
    labels: Sequence[str] | None,
    step: int | None,
) -> list[tuple[str, np.ndarray]]:
    """(label, profile by steps back) for every line to draw."""
    from .recurrent_stats import median_profile

    if isinstance(runs, Mapping):
        return [(str(label), np.asarray(profile, dtype=np.float64)) for label, profile in runs.items()]
    histories = [runs] if isinstance(runs, History) else list(runs)
    names = _run_labels(histories, labels)
    profiles = []
    for name, history in zip(names, histories, strict=True):
        for column in history.time_layers if "time_signal" in history.metrics else []:
            steps, rows = history.time_rows(history.layers[column].name)
            layer = _layer_label(history.layers[column])
            label = layer if len(histories) == 1 else f"{name}: {layer}"
            profiles.append((label, median_profile(rows[_pick_rows(steps, step)])))
    return profiles


def _time_signal_line(ax: Axes, label: str, profile: np.ndarray, color: str, relative: bool) -> None:
    """One profile, its exact zeros on the bottom edge, and its memory horizon as a dotted line."""
    from .recurrent_stats import memory_horizon, span

    values = span(profile)
    if len(values) == 0:
        return
    scale = values[0] if relative and values[0] > 0 else 1.0
    y = values / scale
    x = np.arange(len(values), dtype=float)
    shown = np.isfinite(y) & (y > 0)
    horizon = memory_horizon(values)
    text = f"{label}: horizon {horizon} of {len(values)} steps"
    ax.plot(x[shown], y[shown], color=color, linewidth=1.5, label=text)
    _edge_marks(ax, x[np.isfinite(y) & (y == 0)], top=False, color=color)
    if 0 < horizon < len(values):
        ax.axvline(horizon, color=color, linestyle=":", linewidth=1.2)
