"""Calibration set of the trial: runs whose fate is known by training them, against the verdict of a
default trial (and of the checkup) on the same model, data and optimizer.

Each case is a model, an optimizer and a task: 10 classes from a fixed random linear teacher on
32 Gaussian inputs (1,024 training samples, 1,024 test samples, batches of 128 cycled), which
every model here can learn. A case is labelled by training it for ``--steps`` steps (default
600): it **trains** when its training loss, mean of the last 50 steps, falls below half its value
at the first step, with every loss finite (trainability: gradmedic diagnoses whether a model
learns, not whether it generalizes; the test accuracy is printed beside).
The label never sees the trial; the trial never sees the label. Printed: per case the label, the
checkup's and the trial's verdicts and scores, and the trial's findings; then the recall of the
failing runs and the false alarms on the runs that train, for the checkup and for the trial.
Run: ``python benchmarks/trial_calibration.py [--steps N] [--cases name ...]``.
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

import gradmedic

Case = Callable[[], tuple[nn.Module, torch.optim.Optimizer]]


def mlp(depth: int, act: type[nn.Module] = nn.ReLU, width: int = 64, he: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        linear = nn.Linear(32 if i == 0 else width, width)
        if he:
            nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)
        layers += [linear, act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def task(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.randn(32, 10, generator=generator)
    x = torch.randn(2048, 32, generator=generator)
    y = (x @ teacher).argmax(1)
    return x[:1024], y[:1024], x[1024:], y[1024:]


def _opt(kind: str, lr: float, **options: float) -> Callable[[nn.Module], torch.optim.Optimizer]:
    return lambda model: getattr(torch.optim, kind)(model.parameters(), lr=lr, **options)


#: name -> (model builder, optimizer builder)
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], torch.optim.Optimizer]]] = {
    "adam_relu4": (lambda: mlp(4), _opt("Adam", 1e-3)),
    "adamw_relu8_he": (lambda: mlp(8, he=True), _opt("AdamW", 1e-3)),
    "sgd_momentum_relu4": (lambda: mlp(4), _opt("SGD", 0.05, momentum=0.9)),
    "sgd_tanh3": (lambda: mlp(3, nn.Tanh), _opt("SGD", 0.1)),
    "rmsprop_relu4": (lambda: mlp(4), _opt("RMSprop", 1e-3)),
    "adagrad_relu4": (lambda: mlp(4), _opt("Adagrad", 0.05)),
    "sgd_rate_too_high": (lambda: mlp(4), _opt("SGD", 0.5, momentum=0.9)),
    "sgd_rate_far_too_high": (lambda: mlp(6), _opt("SGD", 5.0)),
    "adam_rate_too_high": (lambda: mlp(4), _opt("Adam", 0.5)),
    "rmsprop_rate_too_high": (lambda: mlp(6), _opt("RMSprop", 0.1)),
    "tanh_sgd_rate_too_high": (lambda: mlp(4, nn.Tanh), _opt("SGD", 2.0)),
    "sgd_rate_too_low": (lambda: mlp(4), _opt("SGD", 1e-6)),
    "deep_sigmoid_sgd": (lambda: mlp(10, nn.Sigmoid), _opt("SGD", 0.01)),
}


def label(
    model: nn.Module, optimizer_of: Callable[[nn.Module], torch.optim.Optimizer], steps: int
) -> tuple[bool, float]:
    """Train a copy for ``steps`` steps: (trains, test accuracy)."""
    x, y, x_test, y_test = task()
    torch.manual_seed(1)
    model = copy.deepcopy(model)
    optimizer = optimizer_of(model)
    losses = []
    for step in range(steps):
        index = slice((step * 128) % 1024, (step * 128) % 1024 + 128)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            return False, math.nan
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    return sum(losses[-50:]) / len(losses[-50:]) < 0.5 * losses[0], accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=600, help="training steps of the label (default 600)")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    x, y, _, _ = task()
    loader = [(x[i : i + 128], y[i : i + 128]) for i in range(0, 1024, 128)]
    counts = {"checkup": [0, 0, 0, 0], "trial": [0, 0, 0, 0]}  # caught, missed, false alarm, quiet
    for name in args.cases:
        build, optimizer_of = CASES[name]
        torch.manual_seed(0)
        model = build()
        trains, accuracy = label(model, optimizer_of, args.steps)
        check = gradmedic.checkup(model, x[:128], y[:128])
        report = gradmedic.trial(model, loader, optimizer=optimizer_of(model))
        for key, verdict in (("checkup", check.healthy), ("trial", report.healthy)):
            counts[key][(0 if not verdict else 1) if not trains else (2 if not verdict else 3)] += 1
        kinds = [f.kind for f in report.findings if f.severity >= gradmedic.Severity.WARNING]
        print(f"{name:<24} {'trains' if trains else 'FAILS':<6} acc {accuracy:5.2f} | checkup "
              f"{'healthy' if check.healthy else 'sick':<7} {check.score:.2f} | trial "
              f"{'healthy' if report.healthy else 'sick':<7} {report.score:.2f} {kinds}")  # fmt: skip
    for key, (caught, missed, alarms, quiet) in counts.items():
        print(
            f"{key}: failing runs caught {caught}/{caught + missed}; false alarms {alarms}/{alarms + quiet}"
        )


if __name__ == "__main__":
    main()
