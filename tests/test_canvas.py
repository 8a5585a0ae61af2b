"""Tests of gradmedic.canvas: the one place pictures are put on a canvas, turned into bytes or pixels,
and shaded by the diagnosis's own thresholds."""

from __future__ import annotations

import base64
import io
import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.image import imread  # noqa: E402

import gradmedic  # noqa: E402
from gradmedic import canvas, html_report, plots  # noqa: E402
from gradmedic.diagnosis import rules  # noqa: E402
from gradmedic.errors import ConfigError  # noqa: E402
from gradmedic.history import History  # noqa: E402
from gradmedic.layers import LayerInfo  # noqa: E402


def small_flow() -> History:
    layers = [LayerInfo(str(i), "Linear", "param", forward_index=i) for i in range(4)]
    history = History(layers, [])
    history.append("signal_rms", [0, 1], np.array([[1e-7, 1e-5, 1e-3, 1e-1], [2e-7, 1e-5, 2e-3, 1e-1]]))
    return history


def test_the_zones_are_the_diagnosis_thresholds_everywhere_they_are_drawn() -> None:
    assert canvas.VANISH_FACTOR == rules.VANISH_WARNING and canvas.EXPLODE_FACTOR == rules.EXPLODE_WARNING
    for module in (plots, html_report):
        assert module.VANISH_FACTOR is canvas.VANISH_FACTOR
        assert module.EXPLODE_FACTOR is canvas.EXPLODE_FACTOR


def test_the_rows_shaded_vanishing_are_the_layers_the_vanishing_rule_names() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        *[m for _ in range(14) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 3)
    )
    report = gradmedic.checkup(model, torch.randn(32, 16), torch.randint(0, 3, (32,)))
    named = {n for f in report.findings if f.kind == "vanishing_gradient" for n in f.layers}
    last = [s.signal_rms for s in report.layers if np.isfinite(s.signal_rms) and s.signal_rms > 0][-1]
    shaded = {s.name for s in report.layers if canvas.zone(s.signal_rms, last) == "vanishing"}
    assert named and shaded == named
    page = html_report.report_html(report)
    assert page.count('<tr class="vanishing">') == len(named)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.99e-3, "vanishing"),
        (1e-3, ""),
        (1.0, ""),
        (1e3, ""),
        (1.01e3, "exploding"),
        (0.0, ""),
        (np.inf, ""),
    ],
)
def test_zone_compares_with_the_reference_at_the_thresholds(value: float, expected: str) -> None:
    assert canvas.zone(value, 1.0) == expected
    assert canvas.zone(value * 4.0, 4.0) == expected


def test_shaded_zones_span_the_thresholds_times_the_reference() -> None:
    fig = canvas.new_figure(4.0, 3.0)
    ax = fig.subplots()
    values = np.array([1e-9, 1e-2, 2.0])
    ax.set_yscale("log")
    canvas.shade_zones(ax, 2.0, values)
    spans = sorted((p.get_y(), p.get_y() + p.get_height()) for p in ax.patches)  # type: ignore[attr-defined]
    assert spans[0][1] == pytest.approx(2.0 * rules.VANISH_WARNING)
    assert spans[1][0] == pytest.approx(2.0 * rules.EXPLODE_WARNING)
    low, high = ax.get_ylim()
    assert low <= 1e-9 and high >= 2.0 * rules.EXPLODE_WARNING


@pytest.mark.parametrize("dpi", [40, 90])
def test_rgb_pixels_are_the_pixels_of_the_saved_png(dpi: int) -> None:
    """Drawn once on the canvas, the pixels equal those of matplotlib's own PNG, decoded."""
    buffer = io.BytesIO()
    plots.flow(small_flow()).savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    reference = (np.asarray(imread(buffer, format="png"))[..., :3] * 255).round().astype(np.uint8)
    pixels = canvas.rgb_pixels(plots.flow(small_flow()), dpi)
    assert pixels.dtype == np.uint8 and pixels.shape == reference.shape
    np.testing.assert_array_equal(pixels, reference)


def test_png_bytes_decode_to_the_figure_and_are_the_same_on_every_draw() -> None:
    first = canvas.png_bytes(plots.flow(small_flow()), dpi=50)
    assert first == canvas.png_bytes(plots.flow(small_flow()), dpi=50)
    assert b"Software" not in first  # no version string: the page is the same on every machine
    decoded = imread(io.BytesIO(first), format="png")
    assert decoded.shape[:2] == canvas.rgb_pixels(plots.flow(small_flow()), 50).shape[:2]


def test_encode_png_and_data_uri_round_trip_the_pixels() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    png = canvas.encode_png(pixels)
    uri = canvas.data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    decoded = imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")
    np.testing.assert_array_equal((decoded[..., :3] * 255).round().astype(np.uint8), pixels)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 40, 41, 79, 80, 81, 500])
@pytest.mark.parametrize("most", [1, 8, 40])
def test_thinned_keeps_the_first_tick_evenly_spaced_and_at_most_most(n: int, most: int) -> None:
    kept = list(canvas.thinned(n, most))
    assert len(kept) <= most
    assert kept[:1] == ([0] if n else [])
    assert len({b - a for a, b in itertools.pairwise(kept)}) <= 1  # one step between labels
    if n <= most:
        assert kept == list(range(n))
    else:  # the finest step that fits: one finer would label more than ``most``
        step = kept[1] - kept[0] if len(kept) > 1 else n
        assert step >= 2 and len(range(0, n, step - 1)) > most


def test_check_picture_path_refuses_other_suffixes_before_drawing(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"save pictures as \.png or \.svg"):
        plots.flow(small_flow(), path=tmp_path / "flow.jpg")
    assert not list(tmp_path.iterdir())
    canvas.check_picture_path(tmp_path / "ok.SVG")


def test_save_figure_writes_the_format_of_the_suffix_at_file_dpi(tmp_path) -> None:
    fig = plots.flow(small_flow(), path=tmp_path / "flow.png")
    image = imread(tmp_path / "flow.png")
    width, height = fig.get_size_inches() * canvas.FILE_DPI
    assert image.shape[:2] == (round(height), round(width))
    canvas.save_figure(fig, tmp_path / "flow.svg")
    assert (tmp_path / "flow.svg").read_text().count("<svg") == 1


def test_drawing_leaves_pyplot_unimported_and_the_backend_unchanged() -> None:
    code = textwrap.dedent(
        """
        import sys, matplotlib
        backend = dict.__getitem__(matplotlib.rcParams, "backend")  # read without resolving it
        from gradmedic import canvas
        fig = canvas.new_figure(2.0, 2.0)
        fig.subplots().plot([1, 2])
        canvas.png_bytes(fig)
        canvas.rgb_pixels(fig, 30)
        after = dict.__getitem__(matplotlib.rcParams, "backend")
        print("matplotlib.pyplot" in sys.modules, after is backend)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


def test_without_matplotlib_a_picture_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install 'gradmedic\[plot\]'"):
        canvas.new_figure(1.0, 1.0)
    with pytest.raises(ImportError, match=r"pip install 'gradmedic\[plot\]'"):
        plots.flow(small_flow())
