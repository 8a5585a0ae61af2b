"""Watch a plain training loop, then read the diagnosis and save the run.

A 12-layer tanh MLP with PyTorch's default initialisation trains on scikit-learn's digits with
SGD. The monitor records the backprop signal per layer on every step of the first 50, then on
every 20th (the default; ``gradients_every=1`` for every step); at the end the diagnosis
names what held training back and the run is saved as JSON Lines for ``gradmedic report``.

Run::

    python examples/watch_training_loop.py [--steps 200] [--out run.jsonl]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import gradmedic
from gradmedic.datasets import load_digits_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default="run.jsonl")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_digits_split(seed=0)
    blocks = [m for _ in range(12) for m in (nn.Linear(64, 64), nn.Tanh())]
    model = nn.Sequential(*blocks, nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()

    with gradmedic.watch(model, optimizer) as monitor:
        for _ in range(args.steps):
            batch = torch.randint(0, len(data.x_train), (64,))
            optimizer.zero_grad()
            loss = loss_fn(model(data.x_train[batch]), data.y_train[batch])
            loss.backward()
            optimizer.step()
            monitor.step(loss)
        report = monitor.diagnose()

    print(report)
    path = monitor.history.save(args.out)
    print(f"run saved to {path}: `gradmedic report {path} -o report.html` draws it")


if __name__ == "__main__":
    main()
