"""Tests of gradmedic.plots: structure of each picture, edge cases, files written, lazy import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.image import imread  # noqa: E402

import plot_helpers as ph  # noqa: E402
from gradmedic import plots  # noqa: E402
from gradmedic.errors import ConfigError  # noqa: E402
from gradmedic.history import History  # noqa: E402
from gradmedic.layers import LayerInfo  # noqa: E402

SPECIAL = {plots._NON_FINITE, plots._ZERO}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, History]:
    """Recorded histories, saved as JSON Lines and loaded back."""
    folder = tmp_path_factory.mktemp("histories")
    recorded = {"vanishing": ph.vanishing(), "healthy": ph.healthy(), "non_finite": ph.with_non_finite()}
    return {name: ph.reload(h, folder, f"{name}.jsonl") for name, h in recorded.items()}


def tick_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def layer_lines(ax) -> list:
    """The lines that draw data (not the red crosses / zero triangles on the edges)."""
    return [line for line in ax.get_lines() if line.get_label() not in SPECIAL]


def marks(ax, label: str) -> np.ndarray:
    """x positions of the edge marks with ``label``."""
    xs = [line.get_xdata() for line in ax.get_lines() if line.get_label() == label]
    return np.concatenate(xs) if xs else np.zeros(0)


def span_y(patch) -> tuple[float, float]:
    """Data y range of a patch drawn by axhspan (a Rectangle or a Polygon, by matplotlib version)."""
    y = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 1]
    return float(y.min()), float(y.max())


def patch_labelled(ax, start: str):
    return next(p for p in ax.patches if p.get_label().startswith(start))


def all_texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


# -- import and dependency -------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_matplotlib_is_imported_lazily_with_install_advice_and_without_pyplot() -> None:
    result = run_python(
        """
        import sys
        import numpy as np
        import gradmedic.plots as plots
        from gradmedic.history import History
        from gradmedic.layers import LayerInfo
        assert "matplotlib" not in sys.modules, "imported at import time"
        h = History([LayerInfo("a", "Linear", "param", forward_index=0)], [])
        h.append("signal_rms", [0], np.array([[1.0]]))
        sys.modules["matplotlib"] = None  # as if it were not installed
        try:
            plots.flow(h)
        except ImportError as error:
            assert error.__suppress_context__, "raise ... from None"
            print(error)
        del sys.modules["matplotlib"]
        plots.flow(h)
        assert "matplotlib" in sys.modules
        assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gradmedic's pictures need matplotlib: pip install 'gradmedic[plot]'"


# -- flow ------------------------------------------------------------------------------------


def test_flow_draws_one_point_per_param_layer_in_forward_order(saved: dict[str, History]) -> None:
    history = saved["vanishing"]
    fig = plots.flow(history)
    top, bottom = fig.axes[:2]
    params = [layer for layer in history.layers if layer.kind == "param"]
    assert len(params) == 13
    assert tick_texts(bottom) == [f"{layer.name} (Linear)" for layer in params]
    (signal,) = layer_lines(top)
    assert list(signal.get_xdata()) == list(range(13))
    assert top.get_yscale() == "log" and bottom.get_yscale() == "log"
    assert len(layer_lines(bottom)[0].get_xdata()) == 13


def test_flow_vanishing_zone_is_relative_to_the_last_layer(saved: dict[str, History]) -> None:
    top = plots.flow(saved["vanishing"]).axes[0]
    y = layer_lines(top)[0].get_ydata()
    _, vanish_top = span_y(patch_labelled(top, "vanishing zone"))
    explode_bottom, _ = span_y(patch_labelled(top, "exploding zone"))
    assert vanish_top == pytest.approx(plots.VANISH_FACTOR * y[-1])
    assert explode_bottom == pytest.approx(plots.EXPLODE_FACTOR * y[-1])
    assert y[0] < vanish_top  # the deep sigmoid net's first layer has vanished
    low, high = top.get_ylim()
    assert low < y.min() and high > explode_bottom


def test_flow_healthy_model_stays_out_of_the_vanishing_zone(saved: dict[str, History]) -> None:
    top = plots.flow(saved["healthy"]).axes[0]
    y = layer_lines(top)[0].get_ydata()
    assert y.min() > span_y(patch_labelled(top, "vanishing zone"))[1]


def test_flow_compares_histories_on_one_axis(saved: dict[str, History]) -> None:
    fig = plots.flow([saved["vanishing"], saved["healthy"]], ["before", "after"], activations=True)
    top = fig.axes[0]
    lines = layer_lines(top)
    assert [line.get_label() for line in lines] == ["before", "after"]
    assert len(lines[0].get_xdata()) == 25 and len(lines[1].get_xdata()) == 7
    assert len(tick_texts(fig.axes[1])) == 25  # the healthy net's layers share names with the deep one
    assert lines[0].get_marker() != lines[1].get_marker()
    assert [t.get_text() for t in top.get_legend().get_texts()][:2] == ["before", "after"]


def test_flow_merges_different_layer_names_keeping_each_order() -> None:
    a = ph.synthetic(3, {"signal_rms": np.ones((1, 3))})
    b = History(
        [LayerInfo(n, "Linear", "param", forward_index=i) for i, n in enumerate(["layer0", "bn", "layer2"])],
        [],
    )
    b.append("signal_rms", [0], np.ones((1, 3)))
    ticks = [t.split(" ")[0] for t in tick_texts(plots.flow([a, b]).axes[1])]
    assert sorted(ticks) == ["bn", "layer0", "layer1", "layer2"]
    for names in (["layer0", "layer1", "layer2"], ["layer0", "bn", "layer2"]):
        positions = [ticks.index(n) for n in names]
        assert positions == sorted(positions)


def test_flow_uses_forward_order_not_definition_order() -> None:
    layers = [LayerInfo(f"l{i}", "Linear", "param", forward_index=2 - i) for i in range(3)]
    history = History(layers, [])
    history.append("signal_rms", [0], np.array([[3.0, 2.0, 1.0]]))
    fig = plots.flow(history)
    assert tick_texts(fig.axes[1]) == ["l2 (Linear)", "l1 (Linear)", "l0 (Linear)"]
    assert list(layer_lines(fig.axes[0])[0].get_ydata()) == [1.0, 2.0, 3.0]


def test_flow_step_picks_the_closest_row_and_default_is_a_recent_median() -> None:
    rows = np.array([[10.0**k, 2 * 10.0**k] for k in range(7)])
    history = ph.synthetic(2, {"signal_rms": rows}, steps=[0, 10, 20, 30, 40, 50, 60])
    at = layer_lines(plots.flow(history, step=22).axes[0])[0].get_ydata()
    assert list(at) == [100.0, 200.0]
    median = layer_lines(plots.flow(history).axes[0])[0].get_ydata()
    assert list(median) == list(np.median(rows[-plots.RECENT_ROWS :], axis=0))


def test_flow_signal_norm_and_marks() -> None:
    history = ph.synthetic(3, {"signal_norm": [[1e-6, 1e-3, 1.0]], "weight_grad_norm": [[1.0, 1.0, 1.0]]})
    fig = plots.flow(history, signal="signal_norm", marks={"layer0": "vanished", "ghost": "?"})
    top, bottom = fig.axes[:2]
    assert "norm of the gradient" in top.get_title(loc="left")
    assert [t.get_text() for t in top.texts] == ["vanished"]
    assert "marked but not drawn: ghost" in bottom.get_xlabel()
    assert 0 in [line.get_xdata()[0] for line in top.get_lines() if line.get_linestyle() == ":"]


def test_flow_marks_non_finite_and_zero_values(saved: dict[str, History]) -> None:
    history = saved["non_finite"]
    top = plots.flow(history, step=2).axes[0]
    assert list(marks(top, plots._NON_FINITE)) == [1]  # Inf at layer1, step 2
    assert list(layer_lines(top)[0].get_xdata()) == [0, 2, 3]
    top = plots.flow(history, step=4).axes[0]
    assert list(marks(top, plots._ZERO)) == [0]  # exactly 0 at layer0, step 4
    top = plots.flow(history, step=3).axes[0]
    assert list(marks(top, plots._NON_FINITE)) == [3]  # the NaN event of layer3, step 3


def test_flow_rejects_bad_arguments(tmp_path: Path) -> None:
    history = ph.synthetic(2, {"signal_rms": [[1.0, 1.0]]})
    with pytest.raises(ConfigError, match="signal_rms"):
        plots.flow(history, signal="loss")
    with pytest.raises(ConfigError, match="one label per history"):
        plots.flow([history, history], ["only one"])
    with pytest.raises(ConfigError, match=r"\.png or \.svg"):
        plots.flow(history, path=tmp_path / "flow.jpg")
    assert not (tmp_path / "flow.jpg").exists()


# -- flow over time --------------------------------------------------------------------------


def test_flow_over_time_has_one_row_per_layer_and_one_column_per_step(saved: dict[str, History]) -> None:
    history = saved["vanishing"]
    fig = plots.flow_over_time(history)
    ax = fig.axes[0]
    mesh = ax.collections[0]
    steps, _ = history.array("signal_rms")
    assert mesh.get_array().shape == (25, len(steps))
    assert isinstance(mesh.norm, LogNorm)
    assert mesh.colorbar is not None and len(fig.axes) == 2
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "0 (Linear)" and labels[-1] == "24 (Linear)"
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # input at the top
    values = mesh.get_array()
    assert values[0].mean() < values[-1].mean()  # the signal is weakest at the input


def test_flow_over_time_blank_nan_cells_and_marks(saved: dict[str, History]) -> None:
    # rows are steps 0, 1, 2; columns are layer0..layer2
    values = np.array([[1.0, np.nan, 1e-2], [np.nan, np.nan, 0.0], [1e-3, np.nan, np.inf]])
    history = ph.synthetic(3, {"update_ratio": values})
    ax = plots.flow_over_time(history, metric="update_ratio").axes[0]
    mesh = ax.collections[0]
    shown = mesh.get_array()
    assert shown.shape == (2, 3)  # layer1 never recorded: no row
    assert list(np.ma.getmaskarray(shown).ravel()) == [False, True, False, False, False, True]
    assert shown[1, 1] < mesh.norm.vmin  # exactly 0: drawn in the "under" colour
    crosses = next(line for line in ax.get_lines() if line.get_label() == plots._NON_FINITE)
    assert list(crosses.get_xdata()) == [2] and list(crosses.get_ydata()) == [1]
    ax = plots.flow_over_time(saved["non_finite"]).axes[0]
    assert len(next(line for line in ax.get_lines()).get_xdata()) == 2  # an Inf and a NaN event


def test_flow_over_time_linear_scale_for_fractions_and_rejects_other_metrics() -> None:
    history = ph.synthetic(2, {"act_dead": [[0.0, 0.5], [1.0, 0.25]], "loss": [[1.0], [0.5]]})
    mesh = plots.flow_over_time(history, metric="act_dead").axes[0].collections[0]
    assert not isinstance(mesh.norm, LogNorm)
    with pytest.raises(ConfigError, match="per-layer"):
        plots.flow_over_time(history, metric="loss")


# -- activations and update ratios -----------------------------------------------------------


def test_activations_draw_only_layers_that_have_the_statistic(saved: dict[str, History]) -> None:
    fig = plots.activations(saved["vanishing"])
    saturated, dead = fig.axes[:2]
    assert len(layer_lines(saturated)) == 12  # the 12 Sigmoid modules
    assert saturated.get_ylim() == (0, 1) and dead.get_ylim() == (0, 1)
    assert "no act_dead recorded" in " ".join(t.get_text() for t in dead.texts)
    assert len(fig.axes) == 3  # 12 layers: a depth colour bar instead of 12 legend entries
    fig = plots.activations(saved["healthy"])
    saturated, dead = fig.axes[:2]
    assert [line.get_label() for line in layer_lines(dead)] == ["1 (ReLU)", "3 (ReLU)", "5 (ReLU)"]
    assert "no act_saturated recorded" in " ".join(t.get_text() for t in saturated.texts)


def test_update_ratios_log_scale_healthy_band_and_one_line_per_layer(saved: dict[str, History]) -> None:
    ax = plots.update_ratios(saved["healthy"]).axes[0]
    assert ax.get_yscale() == "log"
    assert span_y(patch_labelled(ax, "usual healthy range")) == pytest.approx(plots.HEALTHY_UPDATE)
    assert [line.get_label() for line in layer_lines(ax)] == [f"{i} (Linear)" for i in (0, 2, 4, 6)]
    ax = plots.update_ratios(saved["vanishing"]).axes[0]
    assert len(layer_lines(ax)) == 13
    assert len(marks(ax, plots._ZERO)) > 0  # the first layers' updates are below float precision


# -- edge cases and files --------------------------------------------------------------------

PICTURES = [plots.flow, plots.flow_over_time, plots.activations, plots.update_ratios]


@pytest.mark.parametrize("draw", PICTURES)
def test_empty_history_draws_notes(draw, tmp_path: Path) -> None:
    history = ph.reload(ph.synthetic(3, {}), tmp_path)
    fig = draw(history)
    assert "recorded" in all_texts(fig)
    assert not any(len(line.get_xdata()) for ax in fig.axes for line in ax.get_lines())


def test_empty_notes_name_the_metric() -> None:
    history = ph.synthetic(2, {})
    assert "no signal_rms recorded" in all_texts(plots.flow(history))
    assert "no weight_grad_norm recorded" in all_texts(plots.flow(history))
    assert "no signal_norm recorded" in all_texts(plots.flow_over_time(history, "signal_norm"))
    assert "no update_ratio recorded" in all_texts(plots.update_ratios(history))


@pytest.mark.parametrize("draw", PICTURES)
def test_one_layer_and_nan_rows(draw) -> None:
    rows = np.array([[0.5], [np.nan], [0.25]])
    metrics = ("signal_rms", "weight_grad_norm", "update_ratio", "act_saturated", "act_dead")
    fig = draw(ph.synthetic(1, dict.fromkeys(metrics, rows)))
    drawn = [line for ax in fig.axes for line in layer_lines(ax) if len(line.get_xdata())]
    if draw is plots.flow_over_time:
        assert fig.axes[0].collections[0].get_array().shape == (1, 3)
    else:
        assert drawn and all(len(line.get_xdata()) <= 2 for line in drawn)


@pytest.mark.parametrize("draw", PICTURES)
def test_all_nan_rows_and_non_finite_do_not_raise(draw, saved: dict[str, History]) -> None:
    nan = np.full((3, 4), np.nan)
    metrics = ("signal_rms", "weight_grad_norm", "update_ratio", "act_saturated", "act_dead")
    draw(ph.synthetic(4, dict.fromkeys(metrics, nan)))
    draw(saved["non_finite"])


@pytest.mark.parametrize("draw", PICTURES)
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_pictures_are_saved(draw, suffix: str, saved: dict[str, History], tmp_path: Path) -> None:
    path = tmp_path / f"picture{suffix}"
    fig = draw(saved["healthy"], path=path)
    data = path.read_bytes()
    if suffix == ".svg":
        assert data.startswith(b"<?xml") and b"<svg" in data[:1000] and len(data) > 5_000
        return
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(path).shape[:2]
    expected = fig.get_size_inches() * 110
    assert (width, height) == pytest.approx(tuple(expected), abs=2)


def test_many_layers_tick_labels_are_thinned_and_do_not_overlap() -> None:
    n = 90
    layers = [LayerInfo(f"encoder.blocks.{i}.mlp", "Linear", "param", forward_index=i) for i in range(n)]
    history = History(layers, [])
    rows = 10.0 ** np.linspace(-8, 0, n)[None, :].repeat(3, axis=0)
    history.append("signal_rms", [0, 1, 2], rows)
    for fig, ax, get in [
        (f := plots.flow(history), f.axes[1], "get_xticklabels"),
        (g := plots.flow_over_time(history), g.axes[0], "get_yticklabels"),
    ]:
        fig.canvas.draw()
        labels = [t for t in getattr(ax, get)() if t.get_text()]
        assert len(getattr(ax, get)()) == n  # one tick per layer
        assert 0 < len(labels) <= plots.MAX_TICK_LABELS
        boxes = [t.get_window_extent() for t in labels]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
