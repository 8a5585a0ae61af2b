"""Unit tests of :mod:`gradmedic.lab.summary`: baselines, arms and gains, recomputed with numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradmedic.lab.schema import CellResult, CellSpec
from gradmedic.lab.summary import MARGIN, Stat, axis_value, layout, show, summarize, summarize_study


def cell(
    study: str, variant: str, depth: float | str | None, seed: int, metric: float, **kw: object
) -> CellResult:
    params = {} if depth is None else {"depth": depth}
    params.update(kw.pop("params", {}))  # type: ignore[arg-type]
    spec = CellSpec(
        study, "digits", "mlp", variant, params, seed, 10, (0.1,), "depth" if depth is not None else None
    )
    return CellResult(spec, metric=metric, **kw)  # type: ignore[arg-type]


def grid(rng: np.random.Generator) -> tuple[list[CellResult], dict[tuple[str, int], list[float]]]:
    metrics: dict[tuple[str, int], list[float]] = {}
    cells = []
    for variant in ("sigmoid", "relu", "tanh"):
        for depth in (4, 16):
            values = list(rng.random(3))
            metrics[variant, depth] = values
            cells += [cell("activations", variant, depth, seed, m) for seed, m in enumerate(values)]
    return cells, metrics


def test_stat_is_the_numpy_mean_population_std_and_range_of_finite_values() -> None:
    values = [0.2, math.nan, 0.9, 0.4, None, math.inf]
    stat = Stat.of(values)
    kept = np.array([0.2, 0.9, 0.4])
    assert (stat.mean, stat.std, stat.low, stat.high) == pytest.approx((kept.mean(), kept.std(), 0.2, 0.9))
    assert (stat.n, stat.missing) == (3, 3)
    assert stat.text() == f"{kept.mean():.2f} ± {kept.std():.2f} (3 seeds, 3 NaN)"
    assert Stat.of([]).text() == "n/a" and Stat.of([math.nan]).text() == "n/a (1 NaN)"
    assert (
        Stat.of([0.5]).text() == "0.50 ± 0.00 (1 seed)" and Stat.of([0.5]).text(seeds=False) == "0.50 ± 0.00"
    )


@pytest.mark.parametrize("seed", range(3))
def test_gains_are_mean_differences_with_the_baseline_at_each_depth(seed: int) -> None:
    cells, metrics = grid(np.random.default_rng(seed))
    study = summarize_study(cells)
    assert study.layout.baseline == "sigmoid" and study.layout.mode == "variant"
    assert [arm.arm for arm in study.arms] == ["sigmoid", "relu", "tanh"]
    for arm in study.arms[1:]:
        deltas = {
            f"depth={d}": np.mean(metrics[arm.arm, d]) - np.mean(metrics["sigmoid", d]) for d in (4, 16)
        }
        assert {g.condition: g.delta for g in arm.gains} == pytest.approx(deltas)
        assert arm.mean_gain == pytest.approx(np.mean(list(deltas.values())))
        assert arm.helped == [c for c, d in deltas.items() if d >= MARGIN]
        assert arm.hurt == [c for c, d in deltas.items() if d <= -MARGIN]
    best = max(study.arms[1:], key=lambda a: a.mean_gain)
    assert study.best is not None and study.best.arm == best.arm


def test_failed_and_nan_cells_are_left_out_of_the_means_and_counted() -> None:
    cells = [
        cell("activations", "sigmoid", 4, 0, 0.2), cell("activations", "relu", 4, 0, 0.8),
        cell("activations", "relu", 4, 1, 0.99, status="error", error="boom"),
        cell("activations", "relu", 4, 2, math.nan),
    ]  # fmt: skip
    study = summarize_study(cells)
    relu = study.arms[1]
    assert relu.errors == 1 and relu.metric.n == 1 and relu.metric.missing == 1
    assert relu.gains[0].delta == pytest.approx(0.6)
    assert [r.spec.seed for r in study.errors] == [1]


def test_depth_study_compares_each_depth_with_the_deepest() -> None:
    cells = [cell("depth", "tanh", d, 0, m) for d, m in ((2, 0.9), (8, 0.7), (32, 0.1))]
    study = summarize_study(cells)
    assert study.layout.mode == "axis" and study.layout.baseline == "depth=32"
    assert [arm.arm for arm in study.arms] == ["depth=32", "depth=2", "depth=8"]
    assert [round(arm.mean_gain, 6) for arm in study.arms[1:]] == [0.8, 0.6]
    assert study.best is not None and study.best.arm == "depth=2"


def test_the_baseline_marked_in_params_wins_over_the_conventional_name() -> None:
    cells = [
        cell("activations", "sigmoid", None, 0, 0.1),
        cell("activations", "gelu", None, 0, 0.5, params={"baseline": True}),
    ]
    found = layout(cells)
    assert found.baseline == "gelu" and "marked" in found.why
    unnamed = layout([cell("custom", "b", None, 0, 0.1), cell("custom", "a", None, 0, 0.2)])
    assert unnamed.baseline == "a" and "alphabetically" in unnamed.why


def test_summarize_orders_the_studies_as_the_seed_does() -> None:
    cells = [cell(s, "x", None, 0, 0.5) for s in ("zzz", "depth", "activations", "clipping")]
    assert [s.study for s in summarize(cells)] == ["activations", "clipping", "depth", "zzz"]


def test_axis_value_and_show() -> None:
    assert axis_value(cell("s", "v", 8, 0, 0.1)) == 8.0
    assert axis_value(cell("s", "v", "deep", 0, 0.1)) is None
    assert axis_value(cell("s", "v", math.nan, 0, 0.1)) is None
    assert axis_value(cell("s", "v", None, 0, 0.1)) is None
    assert [show(v) for v in (32.0, 0.5, True, "tanh", None, {"b": 1, "a": [2]})] == [
        "32", "0.5", "true", "tanh", "none", '{"a": [2], "b": 1}'
    ]  # fmt: skip
