"""Benchmark: test accuracy on scikit-learn's digits before and after ``gradmedic.treat``.

Every configuration, sick or treated, trains with Adam at the best rate of a small sweep
(chosen on a validation split carved from the training set), for the same step budget, and
reports its test accuracy. Run: ``python benchmarks/treat.py [--stretch] [--steps N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable

import torch
from torch import nn

import gradmedic
from gradmedic.datasets import load_digits_split
from gradmedic.training import sweep_lr


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


CASES = [
    ("100-layer tanh, default init (allow=['init'])", lambda: mlp(100, nn.Tanh), ["init"], 0.95),
    ("20-layer sigmoid, default init", lambda: mlp(20, nn.Sigmoid), None, 0.95),
    ("40-layer ReLU, Xavier init", lambda: mlp(40, nn.ReLU, xavier), None, None),
]
STRETCH = [("1000-layer tanh, default init (allow=['init'])", lambda: mlp(1000, nn.Tanh), ["init"], 0.90)]


def run_case(name: str, make: Callable[[], nn.Module], allow: list[str] | None, steps: int, data) -> dict:
    started = time.perf_counter()
    before = sweep_lr(make, data, steps=steps)
    torch.manual_seed(0)
    sick = make()
    batch = (data.x_train[:256], data.y_train[:256])
    treatment = gradmedic.treat(sick, *batch, allow=allow, suggest_lr=False)
    treated = treatment.model
    after = sweep_lr(lambda: copy.deepcopy(treated), data, steps=steps)
    return {
        "case": name,
        "before": before.test_accuracy,
        "before_lr": before.lr,
        "after": after.test_accuracy,
        "after_lr": after.lr,
        "score_before": treatment.before.score,
        "score_after": treatment.after.score,
        "changes": sorted({c.family for c in treatment.applied}),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=600, help="training steps per run (batch 64)")
    parser.add_argument("--stretch", action="store_true", help="also the 1000-layer tanh MLP")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1: robust on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    data = load_digits_split(seed=0)
    print(f"{'case':<48}{'before':>8}{'after':>8}{'score':>13}  remedies kept", flush=True)
    rows = []
    for name, make, allow, _ in CASES + (STRETCH if args.stretch else []):
        row = run_case(name, make, allow, args.steps, data)
        rows.append(row)
        print(f"{row['case']:<48}{row['before']:>8.1%}{row['after']:>8.1%}"
              f"{row['score_before']:>6.2f}->{row['score_after']:.2f}  {', '.join(row['changes'])}"
              f"  ({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    he_row = {"case": "40-layer ReLU, He init (reference)", **_reference(args.steps, data)}
    print(f"{he_row['case']:<48}{'':>8}{he_row['after']:>8.1%}", flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump([*rows, he_row], out, indent=2)


def _reference(steps: int, data) -> dict:
    result = sweep_lr(lambda: mlp(40, nn.ReLU, he), data, steps=steps)
    return {"after": result.test_accuracy, "after_lr": result.lr}


if __name__ == "__main__":
    main()
