"""Benchmark: a default ``gradmedic.trial`` of a 20-layer MLP (width 256, batch 128) against the
same number of plain training steps.

The model is healthy (ReLU, He init), so no counterfactual mini-trial runs: the trial's cost is
its checkup, the copy and the monitored steps. Each repeat times the trial, then the same number
of plain Adam steps on a copy (forward, loss, backward, step), and prints the medians and their
ratio, per thread count. Run: ``python benchmarks/trial.py [--repeats N] [--threads 1 2]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

import gradmedic


def mlp(depth: int = 20, width: int = 256) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def plain_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    model = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return time.perf_counter() - started


def measure(threads: int, repeats: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = mlp()
    x, y = torch.randn(128, 256), torch.randint(0, 10, (128,))
    report = gradmedic.trial(model, (x, y))  # warm-up
    steps = len(report.curves["loss"].steps)
    trials, plains = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        report = gradmedic.trial(model, (x, y))
        trials.append(time.perf_counter() - started)
        plains.append(plain_steps(model, x, y, steps))
    trial_s, plain_s = statistics.median(trials), statistics.median(plains)
    print(
        f"threads {threads}: default trial of a 20-layer MLP (width 256, batch 128), {steps} steps: "
        f"median {trial_s:.3f} s; {steps} plain Adam steps {plain_s:.3f} s; ratio {trial_s / plain_s:.2f}x "
        f"[{min(trials) / max(plains):.2f}-{max(trials) / min(plains):.2f}]; findings {report.kinds}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    for threads in args.threads:
        measure(threads, args.repeats)


if __name__ == "__main__":
    main()
