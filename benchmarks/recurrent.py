"""Benchmark: a long-memory task before and after ``gradmedic.treat``, on CPU.

A vanilla tanh ``nn.RNN`` (batch first, a linear head) cannot carry information across 100 time
steps: backpropagation through time multiplies one factor per step and the signal of the loss
at the end never reaches the early steps. This script checks it up (the memory horizon:
how many steps back the signal stays above 1e-3 of its value at the last step), lets
``gradmedic.treat`` choose and apply remedies, then trains the sick and the treated model with
the same budget and reports test scores next to the horizons.

* ``--task adding`` (default): the adding problem (:func:`gradmedic.tasks.adding_problem`);
  always predicting 1 scores MSE 0.167, a sequence is solved when its squared error is < 0.04.
* ``--task copy``: copy memory (:func:`gradmedic.tasks.copy_memory`); the memoryless baseline is
  ``10 log 8 / (T + 20)`` cross-entropy per step.

Both models train with Adam at the same learning rate (``--lr``), gradients clipped to norm 1,
on fresh seeded batches each step; the test set is one fixed seeded batch.

Run::

    python benchmarks/recurrent.py                       # adding problem, T=100, 3000 steps
    python benchmarks/recurrent.py --T 50 --steps 1000   # shorter
    python benchmarks/recurrent.py --quick               # smoke run (seconds), used by the tests
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import gradmedic
from gradmedic import tasks
from gradmedic.diagnosis import Report


class LastStep(nn.Module):
    """A recurrent layer and a linear head on its last output (adding problem)."""

    def __init__(self, inputs: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class EveryStep(LastStep):
    """A recurrent layer and a linear head on every output (copy memory)."""

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out)


@dataclass
class Task:
    name: str
    make: Callable[..., tuple[Tensor, Tensor]]
    model: Callable[[int], nn.Module]
    loss: Callable[[Tensor, Tensor], Tensor]
    baseline: float

    def score(self, output: Tensor, targets: Tensor) -> dict[str, float]:
        loss = float(self.loss(output, targets))
        if self.name == "adding":
            return {"test_mse": loss, "solved": tasks.solved_fraction(output, targets)}
        return {"test_ce": loss, "of_baseline": loss / self.baseline}


def make_task(name: str, length: int) -> Task:
    if name == "adding":
        return Task("adding", tasks.adding_problem, lambda h: LastStep(2, h, 1),
                    nn.functional.mse_loss, tasks.ADDING_BASELINE)  # fmt: skip
    return Task("copy", tasks.copy_memory, lambda h: EveryStep(10, h, 10), tasks.copy_memory_loss,
                tasks.copy_memory_baseline(length))  # fmt: skip


def horizon(report: Report) -> str:
    """'13 / 100' from the checkup's through-time finding (or '-' when there is none)."""
    for finding in report.findings:
        if "horizon" in finding.numbers and "length" in finding.numbers:
            return f"{finding.numbers['horizon']:.0f} / {finding.numbers['length']:.0f}"
    return "-"


def train(model: nn.Module, task: Task, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """Adam, clipping to norm 1, fresh seeded batches; returns the test scores and the time."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    x_test, y_test = task.make(args.test, args.T, seed=10**6 + args.seed)
    started = time.perf_counter()
    for step in range(args.steps):
        x, y = task.make(args.batch, args.T, seed=args.seed * 1_000_003 + step)
        loss = task.loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if args.log_every and (step + 1) % args.log_every == 0:
            with torch.no_grad():
                scores = task.score(model(x_test), y_test)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
            print(f"  [{label}] step {step + 1}: train loss {loss.item():.4f}, {shown} "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)  # fmt: skip
    seconds = time.perf_counter() - started
    with torch.no_grad():
        scores = task.score(model(x_test), y_test)
    return {**scores, "train_s": seconds}


def table(rows: list[dict[str, Any]], task: Task) -> str:
    if task.name == "adding":
        head = ["model", "checkup horizon / T", "after training", "test MSE", "solved (<0.04)", "train s"]
        cells = [[r["model"], r["horizon"], r["horizon_trained"], f"{r['test_mse']:.4f}",
                  f"{r['solved']:.1%}", f"{r['train_s']:.0f}"] for r in rows]  # fmt: skip
    else:
        head = ["model", "checkup horizon / T", "after training", "test CE", "of baseline", "train s"]
        cells = [[r["model"], r["horizon"], r["horizon_trained"], f"{r['test_ce']:.4f}",
                  f"{r['of_baseline']:.1%}", f"{r['train_s']:.0f}"] for r in rows]  # fmt: skip
    widths = [max(len(str(c)) for c in column) for column in zip(head, *cells)]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in [head, *cells]]
    return "\n".join([lines[0], "-+-".join("-" * w for w in widths), *lines[1:]])


def verdict(rows: list[dict[str, Any]], task: Task) -> list[str]:
    sick, treated = rows
    if task.name == "adding":
        near = abs(sick["test_mse"] - task.baseline) < 0.02
        solved = treated["test_mse"] < 0.01 and treated["solved"] >= 0.95
        return [
            f"vanilla RNN near the {task.baseline:.3f} baseline (within 0.02): {'yes' if near else 'NO'}",
            f"treated: test MSE < 0.01 and >= 95% of test sequences solved: {'yes' if solved else 'NO'}",
        ]
    below = treated["of_baseline"] <= 0.1
    return [f"treated at or below 10% of the memoryless baseline: {'yes' if below else 'NO'}"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=["adding", "copy"], default="adding")
    parser.add_argument("--T", type=int, default=100, help="sequence length (copy: the gap)")
    parser.add_argument("--steps", type=int, default=3000, help="training steps per model")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (both models)")
    parser.add_argument("--test", type=int, default=1000, help="test sequences")
    parser.add_argument("--checkup-batch", type=int, default=256, help="sequences of the checkups")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1: robust on a shared CPU)")
    parser.add_argument("--log-every", type=int, default=250, help="test scores every N steps (0: never)")
    parser.add_argument("--json", help="also write the rows and settings to this file")
    parser.add_argument("--plot", help="save the through-time picture (sick vs treated, at init) here")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, a few steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.T, args.steps, args.hidden, args.test, args.checkup_batch, args.log_every = 40, 3, 16, 32, 32, 0
    return args


def time_history(model: nn.Module, task: Task, args: argparse.Namespace) -> gradmedic.History:
    """One monitored forward/backward pass: the History the through-time picture reads."""
    x, y = task.make(args.checkup_batch, args.T, seed=args.seed + 7)
    trial = copy.deepcopy(model)
    with gradmedic.watch(trial, activations_every=1) as monitor:
        task.loss(trial(x), y).backward()
        monitor.step()
    return monitor.history


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # a vanishing signal makes denormals, which slow CPUs down
    task = make_task(args.task, args.T)
    print(f"{task.name}, T={args.T}, hidden {args.hidden}, Adam lr {args.lr:g} with clip_grad_norm_ 1.0, "
          f"{args.steps} steps of batch {args.batch}, test {args.test}; torch {torch.__version__}, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}", flush=True)  # fmt: skip
    torch.manual_seed(args.seed)
    sick = task.model(args.hidden)
    x, y = task.make(args.checkup_batch, args.T, seed=args.seed + 1)
    started = time.perf_counter()
    treatment = gradmedic.treat(sick, x, y if task.name == "adding" else None, loss_fn=_with_targets(task, y),
                                suggest_lr=False)  # fmt: skip
    print(f"treat ({time.perf_counter() - started:.0f}s):\n{treatment.summary()}", flush=True)
    if args.plot:
        from gradmedic import plots

        histories = [time_history(sick, task, args), time_history(treatment.model, task, args)]
        plots.through_time(histories, ["vanilla RNN", "treated"], path=args.plot)
    rows = []
    changes = ", ".join(sorted({c.action.split(" (")[0] for c in treatment.applied})) or "no change"
    for label, model, report in (("vanilla tanh nn.RNN", sick, treatment.before),
                                 (f"treated ({changes})", treatment.model, treatment.after)):  # fmt: skip
        trained = copy.deepcopy(model)
        scores = train(trained, task, args, label.split(" (")[0])
        after = gradmedic.checkup(trained, x, y if task.name == "adding" else None, _with_targets(task, y))
        rows.append({"model": label, "horizon": horizon(report), "horizon_trained": horizon(after), **scores})
    print()
    print(table(rows, task))
    print(f"(baseline {task.baseline:.4f}; horizon: steps back the signal stays above 1e-3 of the last step)")
    for line in verdict(rows, task):
        print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"settings": vars(args), "rows": rows, "treatment": treatment.summary()}, out, indent=2)
    return rows


def _with_targets(task: Task, targets: Tensor) -> Callable[[Tensor], Tensor] | None:
    """The copy task's checkup ``loss_fn``: the loss of the ten recall steps only.

    With a loss at every step, the gradient at each hidden state is mostly that step's own
    loss, and the per-step signal would look healthy whatever the memory; the recall steps are
    the part of the loss that needs the memory, so the checkup measures how far back they reach.
    """
    if task.name == "adding":
        return None
    recall = tasks.COPY_SYMBOLS
    return lambda output: task.loss(output[:, -recall:], targets[:, -recall:])


if __name__ == "__main__":
    main()
