"""Try your own training on a copy before you commit to it: ``gradmedic.trial`` with a DataLoader.

A 6-layer ReLU MLP looks healthy at initialisation, so a one-batch checkup passes it. Trained
with SGD at lr 0.5 and momentum 0.9 (a setting that works for shallow nets), its loss blows up
within a few dozen steps. ``gradmedic.trial`` runs that very training (your optimizer, your
DataLoader) for a short while on a deep copy, names what goes wrong, and tries the rate /10
and /100 on further copies to say what would work. Your model and optimizer are left as found;
the script then trains two copies for real, at your rate and at the one the trial found.

Run::

    python examples/trial_with_dataloader.py [--steps 60] [--lr 0.5] [--train-steps 200]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gradmedic
from gradmedic.datasets import load_digits_split


def make_model() -> nn.Module:
    """Six He-initialised Linear+ReLU blocks on the 8x8 digits, then a 10-way classifier."""
    blocks = [m for width in (64, 128, 128, 128, 128, 128) for m in (nn.Linear(width, 128), nn.ReLU())]
    for layer in blocks[::2]:
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    return nn.Sequential(*blocks, nn.Linear(128, 10))


def train(model: nn.Module, loader: DataLoader, lr: float, steps: int) -> float:
    """SGD with momentum 0.9 for ``steps`` batches; returns the mean loss of the last ten."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses: list[float] = []
    while len(losses) < steps:
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return sum(losses[-10:]) / 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--train-steps", type=int, default=200)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_digits_split(seed=0)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=64, shuffle=True)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    x, y = next(iter(loader))
    healthy = gradmedic.checkup(model, x, y).healthy
    print("checkup (one batch, before training):", "healthy" if healthy else "not healthy")

    report = gradmedic.trial(model, loader, optimizer=optimizer, steps=args.steps)
    print(report)
    worked = [f.numbers["lr_that_worked"] for f in report.findings if "lr_that_worked" in f.numbers]
    if not worked:
        print("the trial found no rate that works: see the remedies above")
        return
    for name, lr in (("your rate", args.lr), ("the trial's rate", worked[0])):
        torch.manual_seed(1)
        loss = train(make_model(), loader, lr, args.train_steps)
        print(f"trained at {name} {lr:g}: mean loss of the last 10 steps {loss:.3g}")


if __name__ == "__main__":
    main()
