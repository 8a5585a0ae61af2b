"""What watching a model sharded with FSDP2 (``fully_shard``) costs per step, on 2 gloo ranks (CPU).

The model: 8 x (Linear 256 + Tanh) and a linear head, each Linear sharded, then the root; SGD,
batch 64, the same batch on both ranks. Four ways of running the same steps, interleaved in
blocks on the same two processes (their order rotates every block):

* ``plain``: no monitor;
* ``default``: ``gradmedic.watch(model, optimizer)`` with its default schedules;
* ``every step``: ``watch(..., **ALL_STATS)``, every statistic on every step (one all_reduce of
  the shards' sums per step);
* ``gathered``: no monitor, but each step's per-layer weight-gradient norms computed the way
  gradmedic does not: by gathering every full gradient (``full_tensor()``), for comparison.

Each block divides each way's median step time (rank 0) by the plain way's of the same block;
the table shows the median ratio over the blocks and its interquartile range.

Run::

    python benchmarks/fsdp_overhead.py [--blocks 5] [--steps 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradmedic
from gradmedic.monitor import ALL_STATS

WAYS = ("plain", "default", "every step", "gathered")


def _model() -> nn.Sequential:
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = nn.Sequential(
        *[m for _ in range(8) for m in (nn.Linear(256, 256), nn.Tanh())], nn.Linear(256, 10)
    )
    for module in model:
        if isinstance(module, nn.Linear):
            fully_shard(module)
    fully_shard(model)
    return model


def _gathered_norms(model: nn.Module) -> list[float]:
    return [float(p.grad.full_tensor().norm()) for p in model.parameters()]  # type: ignore[union-attr]


def _times(way: str, steps: int, warmup: int) -> list[float]:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    options: dict[str, Any] | None = {"default": {}, "every step": dict(ALL_STATS)}.get(way)
    monitor = gradmedic.watch(model, opt, **options) if options is not None else None
    after: Callable[[], object] = (lambda: _gathered_norms(model)) if way == "gathered" else (lambda: None)
    x, y = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)), torch.randint(0, 10, (64,))
    times = []
    for step in range(warmup + steps):
        dist.barrier()
        start = time.perf_counter()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        after()
        opt.step()
        if monitor is not None:
            monitor.step(loss)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    if monitor is not None:
        monitor.detach()
    return times


def _worker(rank: int, port: int, blocks: int, steps: int, warmup: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    ratios: dict[str, list[float]] = {way: [] for way in WAYS[1:]}
    for block in range(blocks):
        order = WAYS[block % len(WAYS) :] + WAYS[: block % len(WAYS)]
        medians = {way: statistics.median(_times(way, steps, warmup)) for way in order}
        for way in WAYS[1:]:
            ratios[way].append(medians[way] / medians["plain"])
        if rank == 0 and block == 0:
            print(f"plain step (rank 0, block 0): {medians['plain'] * 1e3:.2f} ms")
    if rank == 0:
        print(f"{'way':12s} ratio to plain (median over {blocks} blocks) [IQR]")
        for way, values in ratios.items():
            q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
            print(f"{way:12s} {statistics.median(values):.3f} [{q[0]:.3f}, {q[2]:.3f}]")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    mp.spawn(_worker, args=(port, args.blocks, args.steps, args.warmup), nprocs=2)


if __name__ == "__main__":
    main()
