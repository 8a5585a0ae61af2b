"""What gradmedic costs a model trained under ``torch.compile``: graph breaks, graphs, recompilations, time.

For each workload of ``overhead.py`` (``mlp``, ``cnn``, ``lstm``, ``transformer``) and each way
users write it, three replicas of the workload (same seed, weights and batch) train side by side,
one step of each in turn: the model compiled without gradmedic (the baseline), the same with
gradmedic watching it (``gradients_every=2``: even steps recorded, odd steps not), and the eager model
without gradmedic (for scale). The ways (``--orders``):

- ``watch+compile``: ``gradmedic.watch(model, opt)``, then ``torch.compile(model)``;
- ``compile+watch``: ``compiled = torch.compile(model)``, then ``gradmedic.watch(compiled, opt)``;
- ``model.compile``: ``model.compile()`` (in place), then ``gradmedic.watch(model, opt)``.

Counted over the whole run of the gradmedic replica (warm-up included, where compiling happens):
graph breaks (``torch._dynamo.utils.counters["graph_break"]``), graphs compiled (calls of the
backend, which a counting wrapper sees), recompilations (dynamo's ``recompiles`` log records),
and, per step, the compiled graphs that ran and the operations in them. Timed (after the
warm-up): each step, ``zero_grad`` to ``optimizer.step()`` and ``monitor.step``; the table shows
the median over recorded and over unrecorded steps divided by the baseline's median. Also checked:
the losses and final weights of the gradmedic replica against the baseline's (``same``: bit-identical).

    python benchmarks/compile.py                                  # aot_eager, all workloads and orders
    python benchmarks/compile.py --backend inductor --workloads mlp --steps 10
    python benchmarks/compile.py --quick --workloads mlp          # smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch._dynamo
from torch import Tensor, nn
from torch._dynamo.utils import counters

import gradmedic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import SEED, WORKLOADS, Workload

ORDERS = ("watch+compile", "compile+watch", "model.compile")
DEFAULT_WORKLOADS = ("mlp", "cnn", "lstm", "transformer")


class CountingBackend:
    """A dynamo backend that compiles with ``backend`` and counts graphs compiled and run."""

    def __init__(self, backend: str) -> None:
        self.inner = torch._dynamo.lookup_backend(backend)
        self.compiled = 0
        self.runs: list[int] = []  # the operations of each compiled graph run since the last take

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable[..., Any]:
        self.compiled += 1
        ops = sum(1 for node in graph.graph.nodes if node.op == "call_function")
        compiled = self.inner(graph, example_inputs)

        def run(*args: Any) -> Any:
            self.runs.append(ops)
            return compiled(*args)

        return run

    def take(self) -> list[int]:
        runs, self.runs = self.runs, []
        return runs


class RecompileCounter(logging.Handler):
    """Counts dynamo's ``recompiles`` log records (one per recompilation)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@dataclass
class Replica:
    """One workload replica: what is called for the forward pass, and what each step cost."""

    workload: Workload
    forward: Callable[[Tensor], Tensor]
    backend: CountingBackend | None = None
    monitor: gradmedic.Monitor | None = None
    times: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})
    graphs_per_step: dict[bool, list[int]] = field(default_factory=lambda: {True: [], False: []})
    ops_per_step: dict[bool, list[int]] = field(default_factory=lambda: {True: [], False: []})
    losses: list[float] = field(default_factory=list)
    breaks: int = 0
    recompiles: int = 0

    def step(self, index: int, timed: bool, recompiles: RecompileCounter) -> None:
        """Step ``index``: its time (if ``timed``), the graphs it ran and the dynamo events. Every
        replica's step ``index`` starts from the same seed (dropout draws the same masks)."""
        work, recorded = self.workload, index % 2 == 0
        torch.manual_seed(SEED + index)
        breaks, recompiled = sum(counters["graph_break"].values()), recompiles.count
        start = time.perf_counter()
        work.optimizer.zero_grad()
        loss = work.loss_fn(self.forward(work.inputs), work.targets)
        loss.backward()
        work.optimizer.step()
        if self.monitor is not None:
            self.monitor.step(loss)
        elapsed = time.perf_counter() - start
        self.breaks += sum(counters["graph_break"].values()) - breaks
        self.recompiles += recompiles.count - recompiled
        self.losses.append(loss.item())
        runs = self.backend.take() if self.backend is not None else []
        if timed:
            self.times[recorded].append(elapsed)
            self.graphs_per_step[recorded].append(len(runs))
            self.ops_per_step[recorded].append(sum(runs))


def compiled_forward(model: nn.Module, order: str, backend: CountingBackend) -> Callable[[Tensor], Tensor]:
    """What the training loop calls when ``model`` is compiled the way ``order`` says."""
    if order == "model.compile":
        model.compile(backend=backend)
        return model
    return torch.compile(model, backend=backend)  # type: ignore[return-value]


def replicas(name: str, order: str, backend: str) -> tuple[Replica, Replica, Replica]:
    """The baseline (compiled), the watched compiled replica and the eager one, in that order."""
    base, watched, eager = (WORKLOADS[name](1) for _ in range(3))
    base_backend, watched_backend = CountingBackend(backend), CountingBackend(backend)
    baseline = Replica(base, compiled_forward(base.model, order, base_backend), base_backend)
    options = {"gradients_every": 2}
    if order == "watch+compile":
        monitor = gradmedic.watch(watched.model, watched.optimizer, **options)
        forward = compiled_forward(watched.model, order, watched_backend)
    else:
        forward = compiled_forward(watched.model, order, watched_backend)
        monitor = gradmedic.watch(forward, watched.optimizer, **options)  # type: ignore[arg-type]
    replica = Replica(watched, forward, watched_backend, monitor)
    return baseline, replica, Replica(eager, eager.model)


def measure(name: str, order: str, backend: str, warmup: int, steps: int) -> dict[str, Any]:
    """One row of the table: ``name`` trained the ``order`` way, with and without gradmedic."""
    torch._dynamo.reset()
    counters.clear()
    recompiles = RecompileCounter()
    logging.getLogger("torch._dynamo.guards.__recompiles").addHandler(recompiles)
    try:
        baseline, watched, eager = replicas(name, order, backend)
    except gradmedic.GradmedicError as error:
        return {"refused": f"{type(error).__name__}: {error}"}
    runs = [baseline, watched, eager]
    try:
        for step in range(warmup + steps):
            for replica in runs[step % 3 :] + runs[: step % 3]:  # the order rotates
                replica.step(step, timed=step >= warmup, recompiles=recompiles)
    except gradmedic.GradmedicError as error:
        return {"refused": f"{type(error).__name__}: {error}"}
    finally:
        if watched.monitor is not None:
            watched.monitor.detach()
        logging.getLogger("torch._dynamo.guards.__recompiles").removeHandler(recompiles)
    return summary(baseline, watched, eager)


def summary(baseline: Replica, watched: Replica, eager: Replica) -> dict[str, Any]:
    """Counts, median ratios and the equality check of one workload and order."""
    base_ms = statistics.median(baseline.times[True] + baseline.times[False]) * 1e3
    row: dict[str, Any] = {
        "compiled ms/step": base_ms,
        "eager ms/step": statistics.median(eager.times[True] + eager.times[False]) * 1e3,
        "graph breaks": watched.breaks,
        "baseline graph breaks": baseline.breaks,
        "graphs compiled": watched.backend.compiled if watched.backend else 0,
        "baseline graphs compiled": baseline.backend.compiled if baseline.backend else 0,
        "recompilations": watched.recompiles,
    }
    for recorded, label in ((True, "recorded"), (False, "unrecorded")):
        row[f"{label} ratio"] = statistics.median(watched.times[recorded]) * 1e3 / base_ms
        row[f"{label} graphs/step"] = statistics.median(watched.graphs_per_step[recorded])
        row[f"{label} ops/step"] = statistics.median(watched.ops_per_step[recorded])
    row["baseline graphs/step"] = statistics.median(baseline.graphs_per_step[False])
    row["baseline ops/step"] = statistics.median(baseline.ops_per_step[False])
    row["same losses"] = watched.losses == baseline.losses
    pairs = zip(watched.workload.model.parameters(), baseline.workload.model.parameters())
    row["same weights"] = all(torch.equal(a, b) for a, b in pairs)
    assert watched.monitor is not None
    history = watched.monitor.history
    row["recorded steps"] = len(history.array("signal_norm")[0])
    return row


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The results as a Markdown table, one line per workload and order."""
    head = (
        "| workload | order | compiled ms/step | eager ms/step | graph breaks | graphs compiled "
        "| recompilations | graphs/step unrec. (baseline) | recorded ratio | unrecorded ratio | same losses |"
    )
    lines = [head, "|" + "---|" * 11]
    for name, orders in results.items():
        for order, row in orders.items():
            if "refused" in row:
                lines.append(f"| {name} | {order} | refused: {row['refused'][:90]} |")
                continue
            lines.append(
                f"| {name} | {order} | {row['compiled ms/step']:.1f} | {row['eager ms/step']:.1f} "
                f"| {row['graph breaks']} | {row['graphs compiled']} ({row['baseline graphs compiled']}) "
                f"| {row['recompilations']} "
                f"| {row['unrecorded graphs/step']:g} ({row['baseline graphs/step']:g}) "
                f"| {row['recorded ratio']:.2f}x | {row['unrecorded ratio']:.2f}x "
                f"| {'yes' if row['same losses'] and row['same weights'] else 'no'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS))
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--backend", default="aot_eager", help="aot_eager (default), inductor, eager")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps (compiling happens here)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps, half of them recorded")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 warm-up and 4 timed steps: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 2, 4
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch._logging.set_logs(recompiles=True)
    logging.getLogger("torch._dynamo.guards.__recompiles").propagate = False  # counted, not printed
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.workloads.split(","):
        for order in args.orders.split(","):
            results.setdefault(name, {})[order] = measure(name, order, args.backend, args.warmup, args.steps)
            print(f"{name} {order}: {results[name][order]}", file=sys.stderr, flush=True)
    environment = {
        "torch": torch.__version__,
        "gradmedic": gradmedic.__version__,
        "backend": args.backend,
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
    }
    print(f"torch {torch.__version__}, backend {args.backend}, {args.threads} thread(s), "
          f"{args.warmup} warm-up + {args.steps} timed steps (gradients_every=2)")  # fmt: skip
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps({"environment": environment, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
