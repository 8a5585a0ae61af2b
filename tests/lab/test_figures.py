"""Unit tests of :mod:`gradmedic.lab.figures`: line styles, and pictures that draw the numbers
they claim (the plotted signal profile is the numpy median over seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from gradmedic.lab.figures import BASELINE_STYLE, signal_figure, styles, time_figure
from gradmedic.lab.schema import CellResult, CellSpec
from gradmedic.lab.summary import summarize_study

pytest.importorskip("matplotlib")


def test_styles_give_the_baseline_its_own_look_and_every_other_name_a_distinct_colour() -> None:
    names = [f"v{i}" for i in range(12)]  # more than tab10 holds
    found = styles(names, "v3")
    assert list(found) == names and found["v3"] == BASELINE_STYLE
    colours = [tuple(found[n]["color"]) for n in names if n != "v3"]
    assert len(set(colours)) == len(colours)
    assert all(found[n]["linestyle"] == "-" for n in names if n != "v3")
    assert "v9" not in styles(names[:3], "v9")  # a baseline not among the names is not added


def test_sequential_styles_run_along_one_ramp_in_order() -> None:
    found = styles(["d=2", "d=8", "d=32"], None, sequential=True)
    greens = [found[n]["color"][1] for n in ("d=2", "d=8", "d=32")]  # viridis: green rises along the ramp
    assert greens == sorted(greens) and len(set(greens)) == 3


def cells(rng: np.random.Generator) -> tuple[list[CellResult], dict[str, np.ndarray]]:
    results, signals = [], {}
    for variant in ("sigmoid", "relu"):
        rows = rng.lognormal(sigma=2.0, size=(3, 5))
        signals[variant] = rows
        for seed, row in enumerate(rows):
            spec = CellSpec("activations", "digits", "mlp", variant, {"depth": 4}, seed, 10, (0.1,))
            results.append(CellResult(spec, signal=list(row), metric=0.5))
    return results, signals


def test_signal_figure_draws_the_median_profile_of_each_arm() -> None:
    import matplotlib.pyplot as plt

    results, signals = cells(np.random.default_rng(0))
    figure = signal_figure(summarize_study(results))
    assert figure is not None
    try:
        drawn = sorted(tuple(np.round(line.get_ydata(), 12)) for line in figure.axes[0].get_lines())
        expected = sorted(tuple(np.round(np.median(rows, axis=0), 12)) for rows in signals.values())
        assert drawn == expected
        assert figure.axes[0].get_yscale() == "log"
    finally:
        plt.close(figure)


def test_time_figure_is_none_without_recurrent_cells() -> None:
    results, _ = cells(np.random.default_rng(1))
    assert time_figure(summarize_study(results)) is None
