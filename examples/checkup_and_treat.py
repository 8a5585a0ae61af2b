"""Check a deep sigmoid network up before training, treat a copy, and prove the treatment.

The 20-layer sigmoid MLP is the textbook vanishing-gradient case: the checkup measures the
backprop signal per layer and names the problem; ``treat`` applies remedies to a copy and keeps
only those that a second checkup scores better. Both models then train for the same budget.

Run::

    python examples/checkup_and_treat.py [--steps 150]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import gradmedic
from gradmedic.datasets import load_digits_split
from gradmedic.training import accuracy


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Adam at 1e-3 on batches of 64; returns the last loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = torch.randint(0, len(x), (64,), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # vanishing signals are denormal floats: slow on CPU without this
    data = load_digits_split(seed=0)
    blocks = [m for _ in range(20) for m in (nn.Linear(64, 64), nn.Sigmoid())]
    sick = nn.Sequential(*blocks, nn.Linear(64, 10))

    report = gradmedic.checkup(sick, data.x_train[:256], data.y_train[:256])
    print(report)
    treatment = gradmedic.treat(sick, data.x_train[:256], data.y_train[:256])
    print(treatment.summary())

    for name, model in (("sick", sick), ("treated", treatment.model)):
        loss = train(model, data.x_train, data.y_train, args.steps)
        test_accuracy = accuracy(model, data.x_test, data.y_test)
        print(f"{name:>8}: last loss {loss:.3f}, test accuracy {test_accuracy:.1%}")


if __name__ == "__main__":
    main()
