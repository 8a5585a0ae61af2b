"""The Hugging Face callback with a real Trainer on a tiny BERT built from a config (no download)."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import gradmedic
from gradmedic.hooks import count_module_hooks
from gradmedic.integrations.transformers import GradMedicCallback

STEPS = 4


def _bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def _data(n: int = 32) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        {
            "input_ids": torch.randint(0, 60, (10,), generator=gen),
            "attention_mask": torch.ones(10, dtype=torch.long),
            "labels": torch.tensor(i % 2),
        }
        for i in range(n)
    ]


def _train(tmp_path, callback: GradMedicCallback) -> tuple[Trainer, BertForSequenceClassification]:
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=STEPS,
        per_device_train_batch_size=4,
        logging_steps=2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    model = _bert()
    trainer = Trainer(model=model, args=args, train_dataset=_data(), callbacks=[callback])
    trainer.train()
    return trainer, model


def test_callback_puts_series_in_the_log_history_and_reports(tmp_path, capsys):
    callback = GradMedicCallback(checkup_first_batch=True, flush_every=2)
    trainer, model = _train(tmp_path, callback)
    history = trainer.state.log_history
    ours = [entry for entry in history if "gradmedic/signal_first" in entry]
    assert [entry["step"] for entry in ours] == list(range(1, STEPS + 1))  # global_step after each update
    for entry in ours:
        assert entry["gradmedic/signal_ratio_min"] <= entry["gradmedic/signal_ratio_median"] <= 1.0
        assert not any(key.count("/") > 1 for key in entry)  # summary only
    # the Trainer's own grad_norm and ours describe the same update
    trainer_norms = {entry["step"]: entry["grad_norm"] for entry in history if "grad_norm" in entry}
    ours_norms = {entry["step"]: entry["gradmedic/grad_norm"] for entry in ours}
    for step, norm in trainer_norms.items():
        assert ours_norms[step] == pytest.approx(norm, rel=1e-4)
    logged_losses = {entry["step"]: entry["loss"] for entry in history if "loss" in entry}
    recorded = {entry["step"]: entry["gradmedic/loss"] for entry in history if "gradmedic/loss" in entry}
    assert recorded == pytest.approx(logged_losses)

    assert callback.checkup_report is not None and callback.checkup_report.source == "checkup"
    assert callback.report is not None and callback.report_path == tmp_path / "gradmedic_report.json"
    assert gradmedic.Report.from_json(callback.report_path.read_text()).kinds == callback.report.kinds
    assert any(
        entry.get("gradmedic/health_score") == pytest.approx(callback.report.score) for entry in history
    )
    assert "checkup of the first batch" in capsys.readouterr().out
    assert count_module_hooks(model) == 0 and callback.monitor is None
    names = {layer.name for layer in callback.history.layers}
    assert "bert.encoder.layer.1.attention.self.query" in names


def test_per_layer_series_when_asked(tmp_path):
    callback = GradMedicCallback(
        per_layer=True, series=["weight_grad_norm"], report_name=None, print_report=False
    )
    trainer, _ = _train(tmp_path, callback)
    ours = [
        entry
        for entry in trainer.state.log_history
        if any(k.startswith("gradmedic/weight_grad_norm/") for k in entry)
    ]
    assert len(ours) == STEPS
    assert "gradmedic/weight_grad_norm/classifier" in ours[0] and "gradmedic/signal_first" not in ours[0]
    assert not (tmp_path / "gradmedic_report.json").exists()
