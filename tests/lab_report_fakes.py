"""Fake but plausible lab results for all of the classic remedies' studies, for tests of the report.

The grid follows the names and parameters of ``gradmedic.lab.studies`` (variants such as
``tanh/he``, ``mlp+batchnorm``, ``lstm/forget-bias-1``, ``sigmoid-mlp-16/before``; the layernorm
study mixing a depth axis and a length axis). Each cell gets a hidden *trainability* ``h`` in
[0, 1] from its variant and parameters (deep sigmoid nets low, He-initialised ReLU nets high ...).
The health score is ``h`` plus a little noise, the final metric rises with ``h``, the backprop
signal per layer decays faster the lower ``h`` is, and recurrent cells get a signal through time
that decays per step by their variant's factor. A few cells are made awkward on purpose: failed
cells, a NaN metric, a NaN score, an Inf in a signal and NaNs in a loss curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from gradmedic.lab.schema import CellResult, CellSpec

Cell = tuple[str, str, str, str, dict[str, Any], "str | None", float]

ACTIVATIONS = {"sigmoid": 0.0, "tanh": 0.45, "relu": 0.85, "leaky_relu": 0.88, "elu": 0.82, "selu": 0.9,
               "silu": 0.75, "gelu": 0.8}  # fmt: skip
INITS = {"default": 0.3, "xavier": 0.7, "he": 0.8, "lecun": 0.75, "orthogonal": 0.85, "lsuv": 0.9}
MATCHED = {("relu", "he"), ("tanh", "xavier"), ("selu", "lecun")}
MEMORY = {
    "rnn": 0.8,
    "rnn/orthogonal": 0.93,
    "irnn": 0.9,
    "lstm": 0.985,
    "lstm/forget-bias-1": 0.99,
    "gru": 0.975,
}
OPTIMIZERS = {"sgd": 0.35, "momentum": 0.6, "rmsprop": 0.8, "adagrad": 0.65, "adam": 0.85}
BEST = {"digits": 0.97, "digits_image": 0.98, "adding": 1.0, "copy": 0.9}
CHANCE = {"digits": 0.1, "digits_image": 0.1, "adding": 0.0, "copy": 0.125}
FAILED = {("activations", "selu", 32, 1), ("recurrent", "gru", 50, 2)}


def grid() -> Iterator[Cell]:
    """(study, task, recipe, variant, params, axis, trainability) of every cell, seeds aside."""
    yield from _activations()
    yield from _init()
    yield from _normalization()
    yield from _residual()
    yield from _clipping()
    yield from _recurrent()
    yield from _optimizers()
    yield from _depth()
    yield from _treat()


def _activations() -> Iterator[Cell]:
    for act, q in ACTIVATIONS.items():
        for depth in (8, 32):
            params = {"depth": depth, "activation": act, "init": "auto"}
            yield "activations", "digits", "mlp", act, params, "depth", 1 - (1 - q) * depth / 32


def _init() -> Iterator[Cell]:
    for act in ("tanh", "relu", "selu"):
        for scheme, q in INITS.items():
            h = min(1.0, q + (0.15 if (act, scheme) in MATCHED else 0.0))
            params = {"depth": 16, "activation": act, "init": scheme}
            yield "init", "digits", "mlp", f"{act}/{scheme}", params, "depth", h


def _normalization() -> Iterator[Cell]:
    for study in ("batchnorm", "layernorm"):
        for norm in (False, True):
            for depth in (4, 16, 32):
                h = 0.95 - (0.0 if norm else 0.6 * depth / 32)
                params = {"depth": depth, "activation": "relu", "norm": study if norm else None}
                yield study, "digits", "mlp", f"mlp+{study}" if norm else "mlp", params, "depth", h
    for norm in (False, True):
        yield (
            "batchnorm",
            "digits_image",
            "cnn",
            "cnn+batchnorm" if norm else "cnn",
            {"depth": 6, "activation": "relu", "norm": "batch" if norm else None},
            "depth",
            0.9 if norm else 0.6,
        )
        for length in (10, 40):
            params = {"cell": "loop", "hidden": 64, "layernorm": norm, "length": length}
            h = 0.9 - (0.0 if norm else 0.5 * length / 40)
            yield "layernorm", "adding", "rnn", "rnn+layernorm" if norm else "rnn", params, "length", h


def _residual() -> Iterator[Cell]:
    for variant, q in (("plain", 0.0), ("residual", 0.8), ("rezero", 0.9)):
        for depth in (8, 32, 48):
            params = {"depth": depth, "activation": "relu", "residual": variant}
            yield "residual", "digits", "mlp", f"relu/{variant}", params, "depth", 1 - (1 - q) * depth / 48


def _clipping() -> Iterator[Cell]:
    for net, risk in (("stable", 0.1), ("exploding", 1.0)):
        for mode, q in (("none", 0.0), ("norm", 0.9), ("value", 0.7), ("agc", 0.85)):
            params = {"depth": 8 if net == "stable" else 20, "optimizer": "momentum", "clip": mode}
            yield "clipping", "digits", "mlp", f"{net}/{mode}", params, None, 0.95 - risk * (1 - q) * 0.8


def _recurrent() -> Iterator[Cell]:
    for variant, memory in MEMORY.items():
        for length in (10, 25, 50):
            params = {"cell": variant.split("/")[0], "hidden": 64, "length": length}
            yield "recurrent", "adding", "rnn", variant, params, "length", min(1.0, memory ** (length / 10))
    for variant in ("rnn", "lstm/forget-bias-1", "gru"):
        for length in (5, 10):
            params = {"cell": variant.split("/")[0], "hidden": 64, "length": length, "every_step": True}
            yield "recurrent", "copy", "rnn", variant, params, "length", min(1.0, MEMORY[variant] ** length)


def _optimizers() -> Iterator[Cell]:
    for net, health in (("healthy", 1.0), ("vanishing", 0.6)):
        for opt, q in OPTIMIZERS.items():
            yield (
                "optimizers",
                "digits",
                "mlp",
                f"{net}/{opt}",
                {"optimizer": opt, "net": net},
                None,
                q * health,
            )


def _depth() -> Iterator[Cell]:
    for act, q in (("sigmoid", 0.1), ("tanh", 0.5), ("relu", 0.9)):
        for blocks in (1, 4, 16, 32):
            params = {"depth": blocks, "cut_from": 32, "activation": act}
            yield "depth", "digits", "mlp", act, params, "depth", 1 - (1 - q) * blocks / 32


def _treat() -> Iterator[Cell]:
    sick = {"sigmoid-mlp-16": ("digits", "mlp", 0.1), "relu-mlp-24": ("digits", "mlp", 0.3),
            "rnn-adding-50": ("adding", "rnn", 0.05)}  # fmt: skip
    for name, (task, recipe, h) in sick.items():
        for when in ("before", "after"):
            params = {"depth": 16, "treat": when == "after"}
            yield "treat", task, recipe, f"{name}/{when}", params, None, h if when == "before" else 0.85


def fake_results(seeds: tuple[int, ...] = (0, 1, 2)) -> list[CellResult]:
    """Every cell of :func:`grid` for each seed (about 300 cells with three seeds)."""
    rng = np.random.default_rng(0)
    results = []
    for study, task, recipe, variant, params, axis, h in grid():
        for seed in seeds:
            spec = CellSpec(study, task, recipe, variant, params, seed, 200, (0.001, 0.003), axis)
            results.append(_cell(spec, h, rng))
    _awkward(results)
    return results


def _cell(spec: CellSpec, h: float, rng: np.random.Generator) -> CellResult:
    key = (spec.study, spec.variant, spec.params.get(spec.axis or ""), spec.seed)
    if key in FAILED:
        error = ("RuntimeError: mat1 and mat2 shapes cannot be multiplied (8x64 and 32x64)\n"
                 'Traceback (most recent call last):\n  File "cell.py", line 42, in run_cell')  # fmt: skip
        return CellResult(spec, status="error", wall_time=0.3, error=error)
    h = float(np.clip(h + rng.normal(0, 0.03), 0, 1))
    best, chance = BEST[spec.task], CHANCE[spec.task]
    metric = float(np.clip(chance + (best - chance) * h**2 + rng.normal(0, 0.01), 0, 1))
    steps = list(range(0, spec.steps + 1, 20))
    rise = 1 - np.exp(-np.asarray(steps) / (20 + 200 * (1 - h)))
    curve_metric = (chance + (metric - chance) * rise).tolist()
    depth = int(spec.params.get("depth", 2))
    decay = 10 ** (-(1 - h) * 0.4)
    signal = [float(1e-2 * decay ** (depth - i)) for i in range(depth + 1)]
    time_signal = None
    if spec.recipe == "rnn" and "length" in spec.params:
        memory = MEMORY.get(spec.variant, 0.8 + 0.15 * h)
        time_signal = [float(memory**k * 0.1) for k in range(int(spec.params["length"]))]
    return CellResult(
        spec, score=float(np.clip(h + rng.normal(0, 0.04), 0, 1)), healthy=h > 0.6,
        findings=[] if h > 0.6 else ["vanishing_gradient"], layer_names=[str(i) for i in range(depth + 1)],
        signal=signal, time_signal=time_signal, lr=0.003, by_lr={"0.001": metric * 0.8, "0.003": metric},
        curve_steps=steps, curve_loss=list(2.3 * np.exp(-3 * h * rise) + 0.01), curve_metric=curve_metric,
        metric_name="solved" if spec.task == "adding" else "accuracy", metric=metric,
        steps_to_target=next((s for s, m in zip(steps, curve_metric) if m >= 0.9 * best), None),
        wall_time=float(rng.uniform(1, 5)),
    )  # fmt: skip


def _awkward(results: list[CellResult]) -> None:
    """A diverged run (NaN metric and loss), a NaN score, an Inf and a NaN in signals."""
    by_label = {r.spec.label: r for r in results}
    diverged = by_label["clipping/exploding/none/seed=0"]
    diverged.metric = math.nan
    diverged.curve_loss = [*diverged.curve_loss[:3], math.nan, math.inf][: len(diverged.curve_loss)]
    by_label["optimizers/healthy/sgd/seed=1"].score = math.nan
    exploding = by_label["clipping/exploding/none/seed=1"]
    exploding.signal = [math.inf, 1e8, *exploding.signal[2:]]
    by_label["depth/tanh/depth=32/seed=0"].signal[3] = math.nan
