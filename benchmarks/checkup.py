"""Benchmark: wall time of one ``gradmedic.checkup`` of a 100-layer MLP of width 256, batch 128.

Prints the median over repeats, beside the time of one plain forward/backward pass of the same
model measured in the same run (the checkup's cost is that pass plus the statistics and rules).
Run: ``python benchmarks/checkup.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import gradmedic


def deep_mlp(depth: int = 100, width: int = 256) -> nn.Sequential:
    blocks = [m for _ in range(depth) for m in (nn.Linear(width, width), nn.Tanh())]
    return nn.Sequential(*blocks, nn.Linear(width, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = deep_mlp()
    x, y = torch.randn(128, 256), torch.randint(0, 10, (128,))
    gradmedic.checkup(model, x, y)  # warm-up
    plain, check = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        nn.functional.cross_entropy(model(x), y).backward()
        plain.append(time.perf_counter() - started)
        model.zero_grad(set_to_none=True)
        started = time.perf_counter()
        report = gradmedic.checkup(model, x, y)
        check.append(time.perf_counter() - started)
    check_s, plain_s = statistics.median(check), statistics.median(plain)
    print(
        f"threads {torch.get_num_threads()}: checkup of a 100-layer MLP (width 256, batch 128): "
        f"median {check_s:.3f} s (plain forward+backward {plain_s:.3f} s; {len(report.findings)} findings)"
    )


if __name__ == "__main__":
    main()
