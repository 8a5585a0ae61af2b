"""The Lightning callback with a real Trainer on CPU: series in the CSV logger, a first-batch checkup,
a report on disk at the end of fit, every hook removed."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

import gradmedic
from gradmedic.hooks import count_module_hooks
from gradmedic.integrations.lightning import GradMedic

STEPS = 6


class SigmoidNet(L.LightningModule):
    """A 12-layer sigmoid MLP: its backprop signal vanishes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, callback: GradMedic) -> tuple[L.Trainer, SigmoidNet, dict[str, dict[int, float]]]:
    data = TensorDataset(torch.randn(64, 16), torch.randint(0, 3, (64,)))
    trainer = L.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        logger=CSVLogger(tmp_path),
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    model = SigmoidNet()
    trainer.fit(model, DataLoader(data, batch_size=8))
    series: dict[str, dict[int, float]] = {}
    with open(f"{trainer.logger.log_dir}/metrics.csv", newline="") as lines:
        for row in csv.DictReader(lines):
            for key, value in row.items():
                if value and key not in ("step", "epoch"):
                    series.setdefault(key, {})[int(row["step"])] = float(value)
    return trainer, model, series


def test_callback_logs_summary_series_checks_up_and_reports(tmp_path, capsys):
    callback = GradMedic(checkup_first_batch=True, flush_every=2)
    _, model, series = _fit(tmp_path, callback)
    for name in (
        "signal_first",
        "signal_last",
        "signal_ratio_min",
        "signal_ratio_median",
        "grad_norm",
        "loss",
    ):
        assert sorted(series[f"gradmedic/{name}"]) == list(range(STEPS)), name
    assert series["gradmedic/saturated_max"].keys() == {0}  # activations sampled every 10 steps
    assert not any("/" in key.removeprefix("gradmedic/") for key in series)  # no per-layer series
    # the monitor's steps are the Trainer's: the loss it recorded is the one Lightning logged
    for step, loss in series["train_loss"].items():
        assert series["gradmedic/loss"][step] == pytest.approx(loss, rel=1e-6)
    assert series["gradmedic/signal_ratio_min"][0] < 1e-3  # vanishing, in the dashboard

    assert callback.checkup_report is not None and "vanishing_gradient" in callback.checkup_report.kinds
    assert callback.report is not None and "vanishing_gradient" in callback.report.kinds
    assert (
        callback.report_path is not None
        and callback.report_path.parent == tmp_path / "lightning_logs" / "version_0"
    )
    saved = gradmedic.Report.from_json(callback.report_path.read_text())
    assert saved.kinds == callback.report.kinds
    assert series["gradmedic/health_score"] == {STEPS - 1: pytest.approx(callback.report.score)}
    printed = capsys.readouterr().out
    assert "checkup of the first batch" in printed and "vanishing_gradient" in printed
    assert count_module_hooks(model) == 0 and callback.monitor is None
    assert callback.history is not None and callback.history.array("signal_norm")[0].tolist() == list(
        range(STEPS)
    )


def test_per_layer_series_when_asked_and_only_the_chosen_ones(tmp_path):
    callback = GradMedic(
        per_layer=True, series=["signal_first", "signal_rms"], report_name=None, print_report=False, every=2
    )
    _, _, series = _fit(tmp_path, callback)
    names = {key for key in series if key.startswith("gradmedic/")}
    layers = [f"net.{i}" for i in range(0, 25, 2)]
    assert names == {
        "gradmedic/signal_first",
        *[f"gradmedic/signal_rms/{name}" for name in layers],
        *[f"gradmedic/signal_rms/net.{i}" for i in range(1, 24, 2)],
        "gradmedic/health_score",
        "gradmedic/findings",
        "gradmedic/warnings",
    }
    assert sorted(series["gradmedic/signal_first"]) == [0, 2, 4]  # every=2
    assert callback.report_path is None
    first = series["gradmedic/signal_rms/net.0"][0]
    assert math.isclose(first, series["gradmedic/signal_first"][0], rel_tol=1e-9)


def test_a_failing_checkup_warns_and_training_goes_on(tmp_path):
    callback = GradMedic(
        checkup_first_batch=True,
        batch_to_inputs=lambda batch: (batch[0][:, :3], batch[1]),
        print_report=False,
        report_name=None,
    )
    with pytest.warns(RuntimeWarning, match="checkup failed"):
        _, _, series = _fit(tmp_path, callback)
    assert callback.checkup_report is None and len(series["gradmedic/signal_first"]) == STEPS
