"""A vanilla RNN that cannot remember: measure its memory horizon, then treat it.

On the adding problem the target depends on two values marked anywhere in the sequence, so the
loss at the last step must send its gradient back across many steps. The checkup measures the
backprop signal at each time step and the memory horizon (how many steps back it stays above
1e-3 of its value at the last step); ``treat`` swaps the RNN for an LSTM with forget-gate bias 1.

Run::

    python examples/recurrent_memory.py [--length 60]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import gradmedic
from gradmedic.tasks import adding_problem


class Regressor(nn.Module):
    """A batch-first recurrent layer and a linear head on its last output."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.rnn = nn.RNN(2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=60)
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = adding_problem(128, args.length, seed=0)
    model = Regressor()
    report = gradmedic.checkup(model, x, y)
    print(report)
    treatment = gradmedic.treat(model, x, y, allow=["recurrent"])
    print(treatment.summary())
    print(f"treated model: {treatment.model}")


if __name__ == "__main__":
    main()
