"""Benchmark: test accuracy on scikit-learn's digits before and after ``gradmedic.treat``.

Every configuration, sick, treated or reference, trains with Adam at the best rate of the same
sweep (chosen on a validation split carved from the training set, never on the test set), for
the same step budget, once per seed; the table gives the mean test accuracy over the seeds and
its spread (population standard deviation). A seed fixes the model's initialisation, the
validation split and the order of the batches; the test split (360 digits) is the same for all.
A best rate at an end of the sweep that validated strictly better than its neighbour is marked
``<`` or ``>``: the sweep may not contain the optimum.

Run: ``python benchmarks/treat.py [--seeds 0,1,2] [--jobs N] [--cases main|stretch|all] [--steps N]``
(``--reprint run.json`` prints the table of a saved ``--json`` run).
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

import gradmedic
from gradmedic.datasets import Split, load_digits_split
from gradmedic.training import sweep_lr

#: The rates swept for every configuration, before and after alike: wide enough that every
#: configuration's best rate lies inside it (the 100-layer tanh net's is 1e-4, the sigmoid's 1e-3).
LRS = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
#: The 1000-layer net needs lower rates: at 1e-4 it stays near 19 %, at 1e-5 it learns.
DEEP_LRS = (3e-6, 1e-5, 3e-5, 1e-4)
TREAT_BATCH = 256  # the checkups inside treat see the first 256 training digits


def mlp(depth: int, activation: Callable[[], nn.Module], init: Callable[[torch.Tensor], object] | None = None,
        width: int = 64) -> nn.Sequential:  # fmt: skip
    """``depth`` Linear+activation blocks on 64 digit features, then a 10-way head."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        if init is not None:
            init(linear.weight)
        layers += [linear, activation()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def xavier(w: torch.Tensor) -> object:
    return nn.init.xavier_uniform_(w)


def he(w: torch.Tensor) -> object:
    return nn.init.kaiming_uniform_(w, nonlinearity="relu")


@dataclass(frozen=True)
class Case:
    """A sick network, the families ``treat`` may use, and what the treated one must reach."""

    name: str
    make: Callable[[], nn.Module]
    allow: list[str] | None
    target: float | None = None
    reference: str | None = None  # treated within 1 point of this reference's mean
    lrs: tuple[float, ...] = LRS


@dataclass
class Point:
    """One configuration trained at one rate, for one seed: its validation and test accuracy."""

    case: str
    variant: str  # "before", "after" or "reference"
    seed: int
    lr: float
    val: float
    test: float
    seconds: float
    score_before: float | None = None
    score_after: float | None = None
    remedies: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One configuration and seed at the sweep's best rate (chosen on validation accuracy)."""

    case: str
    variant: str
    seed: int
    test: float
    lr: float
    seconds: float  # the whole sweep's
    score_before: float | None
    score_after: float | None
    remedies: list[str]
    val_by_lr: dict[float, float]


def best(points: list[Point]) -> Run:
    """The sweep's result: the rate with the best validation accuracy (the lowest rate on a tie,
    as :func:`gradmedic.training.sweep_lr` picks)."""
    ordered = sorted(points, key=lambda p: p.lr)
    top = max(ordered, key=lambda p: p.val)  # max keeps the first of equals
    seconds = sum(p.seconds for p in points)
    return Run(top.case, top.variant, top.seed, top.test, top.lr, seconds, top.score_before, top.score_after,
               top.remedies, {p.lr: p.val for p in ordered})  # fmt: skip


def he_reference() -> nn.Module:
    return mlp(40, nn.ReLU, he)


CASES = [
    Case("100-layer tanh, default init (allow=['init'])", lambda: mlp(100, nn.Tanh), ["init"], 0.95),
    Case("20-layer sigmoid, default init", lambda: mlp(20, nn.Sigmoid), None, 0.95),
    Case("40-layer ReLU, Xavier init", lambda: mlp(40, nn.ReLU, xavier), None, None, "He init"),
]
STRETCH = [
    Case(
        "1000-layer tanh, default init (allow=['init'])",
        lambda: mlp(1000, nn.Tanh),
        ["init"],
        0.90,
        lrs=DEEP_LRS,
    )
]
SETS = {"main": CASES, "stretch": STRETCH, "all": CASES + STRETCH}
REFERENCE = "40-layer ReLU, He init (reference)"


def run_point(
    case: Case | None, variant: str, seed: int, lr: float, steps: int, threads: int = 1, device: str = "cpu"
) -> Point:
    """Train one configuration at one rate for one seed: the sick net (``before``), the net
    ``treat`` makes of it (``after``, treated again here: the same seed gives the same net), or
    the ``reference`` (``case`` None: the He-init ReLU net). Sweeping rate by rate lets the rates
    run in parallel; :func:`best` then picks as :func:`gradmedic.training.sweep_lr` does."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    data = load_digits_split(seed=0)
    data = Split(*(t.to(device) for t in (data.x_train, data.y_train, data.x_test, data.y_test)))
    build: Callable[[], nn.Module] = he_reference if case is None else case.make
    make: Callable[[], nn.Module] = lambda: build().to(device)  # noqa: E731
    extra: dict[str, object] = {}
    if variant == "after":
        assert case is not None
        torch.manual_seed(seed)
        batch = (data.x_train[:TREAT_BATCH], data.y_train[:TREAT_BATCH])
        treatment = gradmedic.treat(make(), *batch, allow=case.allow, suggest_lr=False)
        treated = treatment.model
        make = lambda: copy.deepcopy(treated)  # noqa: E731
        extra = {"score_before": treatment.before.score, "score_after": treatment.after.score,
                 "remedies": sorted({c.family for c in treatment.applied})}  # fmt: skip
    result = sweep_lr(make, data, lrs=(lr,), steps=steps, seed=seed)
    name = REFERENCE if case is None else case.name
    return Point(name, variant, seed, lr, result.val_accuracy, result.test_accuracy,
                 time.perf_counter() - started, **extra)  # type: ignore[arg-type]  # fmt: skip


def _task(args: Task) -> Point:
    index, cases, variant, seed, lr, steps, threads, device = args
    case = None if index is None else SETS[cases][index]
    return run_point(case, variant, seed, lr, steps, threads, device)


def spread(values: list[float]) -> str:
    """``mean ± sd`` in percent (``mean`` alone for one value)."""
    mean = statistics.mean(values)
    return f"{mean:.1%}" if len(values) < 2 else f"{mean:.1%} ± {100 * statistics.pstdev(values):.1f}"


def edge(run: Run) -> str:
    """``<``/``>`` when the sweep's lowest/highest rate validates strictly better than the rate next
    to it: the best rate may lie outside the sweep (a tie with the next rate is a plateau inside)."""
    lrs = sorted(run.val_by_lr)
    if len(lrs) < 2 or run.lr not in (lrs[0], lrs[-1]):
        return ""
    inner = lrs[1] if run.lr == lrs[0] else lrs[-2]
    if run.val_by_lr[run.lr] <= run.val_by_lr[inner]:
        return ""
    return "<" if run.lr == lrs[0] else ">"


def rates(runs: list[Run]) -> str:
    return ",".join(f"{r.lr:.0e}{edge(r)}" for r in runs)


def verdict(case: Case, after: list[Run], reference: list[Run]) -> str:
    """Whether the treated net's mean accuracy reaches the case's target."""
    mean = statistics.mean(r.test for r in after)
    if case.target is not None:
        return f">= {case.target:.0%}: {'met' if mean >= case.target else 'MISSED'}"
    if case.reference is not None and reference:
        ref = statistics.mean(r.test for r in reference)
        return f"within 1 pt of {case.reference} ({ref:.1%}): {'met' if mean >= ref - 0.01 else 'MISSED'}"
    return ""


def pick(runs: list[Run], name: str, variant: str) -> list[Run]:
    return sorted((r for r in runs if r.case == name and r.variant == variant), key=lambda r: r.seed)


def row(name: str, before: str, after: str, scores: str, notes: str) -> str:
    return f"{name:<48}{before:>14}{after:>14}  {scores:<11}  {notes}"


def table(cases: list[Case], runs: list[Run]) -> list[str]:
    """One line per case, then the reference: accuracies, health scores, target, best rates."""
    reference = pick(runs, REFERENCE, "reference")
    lines = [row("case", "before", "after", "score", "target; remedies kept; best lr per seed")]
    for case in cases:
        before, after = pick(runs, case.name, "before"), pick(runs, case.name, "after")
        scores = f"{statistics.mean(r.score_before or 0 for r in after):.2f}->"
        scores += f"{statistics.mean(r.score_after or 0 for r in after):.2f}"
        kept = ", ".join(sorted({f for r in after for f in r.remedies})) or "none"
        notes = f"{verdict(case, after, reference)}; {kept}; lr before {rates(before)}, after {rates(after)}"
        lines.append(
            row(case.name, spread([r.test for r in before]), spread([r.test for r in after]), scores, notes)
        )
    if reference:
        lines.append(row(REFERENCE, "", spread([r.test for r in reference]), "", f"lr {rates(reference)}"))
    return lines


Task = tuple[int | None, str, str, int, float, int, int, str]


def tasks(cases: str, seeds: list[int], steps: int, threads: int, device: str) -> list[Task]:
    """Every (case, before/after, seed, rate), and (reference, seed, rate) with the main cases,
    deepest nets first, so that parallel workers finish together."""
    chosen = SETS[cases]
    configs: list[tuple[int | None, str]] = [(i, v) for i in range(len(chosen)) for v in ("before", "after")]
    configs += [(None, "reference")] if cases != "stretch" else []
    work = [
        (i, cases, v, seed, lr, steps, threads, device)
        for i, v in configs
        for seed in seeds
        for lr in (LRS if i is None else chosen[i].lrs)
    ]
    depth = [sum(isinstance(m, nn.Linear) for m in case.make().modules()) for case in chosen]
    return sorted(work, key=lambda t: -(41 if t[0] is None else depth[t[0]]))


def sweeps(points: list[Point]) -> list[Run]:
    """The points grouped by (case, variant, seed), each group reduced to its best rate."""
    groups: dict[tuple[str, str, int], list[Point]] = {}
    for point in points:
        groups.setdefault((point.case, point.variant, point.seed), []).append(point)
    return [best(group) for group in groups.values()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=600, help="training steps per run (batch 64)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument(
        "--cases", choices=list(SETS), default="main", help="stretch: the 1000-layer tanh MLP"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (each with --threads threads)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1: robust on a shared CPU)")
    parser.add_argument("--device", default="cpu", help="where to train, e.g. cuda")
    parser.add_argument("--json", help="write every run (each configuration, seed and rate) here")
    parser.add_argument(
        "--reprint", metavar="JSON", help="print the table of a saved --json run, train nothing"
    )
    args = parser.parse_args()
    cases = SETS[args.cases]
    if args.reprint:
        with open(args.reprint) as saved:
            points = [Point(**p) for p in json.load(saved)]
        print("\n".join(table(cases, sweeps(points))))
        return
    work = tasks(args.cases, [int(s) for s in args.seeds.split(",")], args.steps, args.threads, args.device)
    started = time.perf_counter()
    swept = sorted({lr for case in cases for lr in case.lrs})
    print(f"{len(work)} runs: rates {', '.join(f'{lr:g}' for lr in swept)}; {args.steps} steps each;"
          f" seeds {args.seeds}; {args.jobs} process(es)", flush=True)  # fmt: skip
    points = []
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for point in pool.map(_task, work) if args.jobs > 1 else map(_task, work):
            points.append(point)
            print(f"  {point.case} [{point.variant}, seed {point.seed}, lr {point.lr:g}]: validation"
                  f" {point.val:.1%}, test {point.test:.1%} ({point.seconds:.0f} s)", flush=True)  # fmt: skip
    runs = sweeps(points)
    print("\n".join(table(cases, runs)))
    seconds = {
        c.name.split(",")[0]: statistics.mean(r.seconds for r in runs if r.case == c.name) for c in cases
    }
    print(f"wall time {time.perf_counter() - started:.0f} s; seconds per sweep (with treat): "
          + ", ".join(f"{name} {value:.0f}" for name, value in seconds.items()))  # fmt: skip
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(p) for p in points], out, indent=2)


if __name__ == "__main__":
    main()
