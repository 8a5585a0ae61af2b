"""Watch a PyTorch Lightning run with the GradMedic callback (``pip install 'gradmedic[lightning]'``).

The callback watches the LightningModule and its optimizer, checks the model up on the first
batch, logs a few summary series through the Trainer's loggers and diagnoses the run when
``fit`` ends (printed, and saved as ``gradmedic_report.json`` in the Trainer's log folder).

Run::

    python examples/lightning_callback.py [--steps 60] [--out lightning_logs]
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gradmedic.datasets import load_digits_split
from gradmedic.integrations.lightning import GradMedic


class DigitsNet(L.LightningModule):
    """A small ReLU MLP on the 64 pixels of a digit."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="lightning_logs")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_digits_split(seed=0)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=64, shuffle=True)
    callback = GradMedic(checkup_first_batch=True)
    trainer = L.Trainer(
        max_steps=args.steps, callbacks=[callback], default_root_dir=args.out,
        enable_progress_bar=False, enable_model_summary=False, logger=True,
    )  # fmt: skip
    trainer.fit(DigitsNet(), loader)
    print(f"report saved to {callback.report_path}")


if __name__ == "__main__":
    main()
