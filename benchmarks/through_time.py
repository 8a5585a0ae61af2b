"""Cost of the statistics through time of an LSTM: the backward recurrence by hand against an
autograd replay of every step, and against one plain training step, on the overhead benchmark's
LSTM (input 16, hidden 128, 100 steps, batch 32), medians of ``--repeats`` interleaved runs.

Run::

    python benchmarks/through_time.py              # 1 thread
    python benchmarks/through_time.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from overhead import build_lstm

from gradmedic.recurrent_stats import bptt_squared_norms, replay


def autograd_replay(lstm: torch.nn.LSTM, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The method replaced: the recurrence replayed with a graph, then ``autograd.grad`` at every state."""
    with torch.enable_grad():
        run = replay(lstm, x)
        states = run.directions[0].states
        loss = (torch.stack(states) * grad.transpose(0, 1)).sum()
        grads = torch.autograd.grad(loss, states)
    return torch.stack([g.double().pow(2).sum() for g in grads])


def median_ms(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        work()
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    workload = build_lstm()
    lstm, x = workload.model.lstm, workload.inputs
    out, _ = lstm(x)
    grad = torch.zeros_like(out)
    grad[:, -1] = torch.randn(len(x), out.shape[-1])  # the head reads the last step
    by_hand = bptt_squared_norms(lstm, x, None, grad, output=out.detach())[0]
    torch.testing.assert_close(by_hand, autograd_replay(lstm, x, grad), rtol=1e-4, atol=0)

    def plain_step() -> None:
        workload.optimizer.zero_grad()
        workload.loss_fn(workload.model(x), workload.targets).backward()
        workload.optimizer.step()

    works = {
        "plain training step": plain_step,
        "backward recurrence by hand": lambda: bptt_squared_norms(lstm, x, None, grad, output=out.detach()),
        "autograd replay": lambda: autograd_replay(lstm, x, grad),
    }
    totals: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(args.repeats):  # interleaved: a burst of load slows all three alike
        for name, work in works.items():
            totals[name].append(median_ms(work, 1))
    print(f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, median of {args.repeats}:")
    for name, values in totals.items():
        print(f"  {name:28s} {statistics.median(values):7.2f} ms")


if __name__ == "__main__":
    main()
