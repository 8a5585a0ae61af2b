"""Overhead of ``gradmedic run`` on an unmodified training script, against the same script plain.

One script trains a 20-layer ReLU MLP of width 256 (batch 128, Adam) and prints the median time
of its steps after a warm-up, measured inside the script. Three ways of running it, interleaved
as separate processes (plain, then each other way, in an order that rotates every round):

* ``plain``: ``python train.py``;
* ``watch``: the same loop with ``gradmedic.watch(model, optimizer)`` written into it (the
  default monitor, what a user who edits the script pays);
* ``run``: ``gradmedic run train.py`` (the script untouched); ``run --live``: with the terminal view.

Each round divides every way's median step by the plain run's of the same round; the table
shows the median ratio over the rounds and its interquartile range.

Run::

    python benchmarks/run_overhead.py [--rounds 5] [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SCRIPT = """
import statistics, sys, time, torch
from torch import nn
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
blocks = [m for _ in range(20) for m in (nn.Linear(256, 256), nn.ReLU())]
model = nn.Sequential(*blocks, nn.Linear(256, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
x, y = torch.randn(128, 256), torch.randint(0, 10, (128,))
WATCH = {watch}
if WATCH:
    import gradmedic
    monitor = gradmedic.watch(model, opt)
times = []
for step in range(int(sys.argv[2]) + 20):
    start = time.perf_counter()
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if WATCH:
        monitor.step(loss)
    times.append(time.perf_counter() - start)
print("median_step", statistics.median(times[20:]))
"""


def median_step(command: list[str], env: dict[str, str]) -> float:
    """Run ``command``; return the median step time the script printed."""
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return float(next(line for line in out.splitlines() if line.startswith("median_step")).split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="gradmedic-run-bench-"))
    plain, watched = folder / "train.py", folder / "train_watched.py"
    plain.write_text(textwrap.dedent(SCRIPT.format(watch=False)))
    watched.write_text(textwrap.dedent(SCRIPT.format(watch=True)))
    script_args = [str(args.threads), str(args.steps)]
    run = [sys.executable, "-m", "gradmedic", "run", "--out", str(folder / "out")]
    ways = {
        "watch": [sys.executable, str(watched), *script_args],
        "run": [*run, str(plain), *script_args],
        "run --live": [*run, "--live", str(plain), *script_args],
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    ratios: dict[str, list[float]] = {name: [] for name in ways}
    plain_times = []
    names = list(ways)
    for round_index in range(args.rounds):
        base = median_step([sys.executable, str(plain), *script_args], env)
        plain_times.append(base)
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            ratios[name].append(median_step(ways[name], env) / base)
    print(f"20-layer MLP, width 256, batch 128, Adam; {args.threads} thread(s), {args.rounds} rounds of "
          f"{args.steps} steps; plain step {1e3 * statistics.median(plain_times):.2f} ms")  # fmt: skip
    for name, values in ratios.items():
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        print(f"  {name:<11} {statistics.median(values):.3f}x  (IQR {q1:.3f}-{q3:.3f})")


if __name__ == "__main__":
    main()
