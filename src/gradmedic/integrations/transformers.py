"""Hugging Face transformers: a TrainerCallback that watches the model while ``Trainer.train`` runs.

Install with ``pip install 'gradmedic[transformers]'``.

``GradMedicCallback`` attaches a monitor to the model and its optimizer when training begins,
and at each flush appends the summary series to the Trainer's log history
(``trainer.state.log_history``: one ``{"step": ..., "gradmedic/<series>": ...}`` entry per
recorded step, ``step`` being the Trainer's ``global_step`` after that update). The loss the
Trainer logs (``logging_steps``) is given to the monitor. At the end of training it diagnoses the
run: the report is printed, kept as :attr:`GradMedicCallback.report`, saved as
``gradmedic_report.json`` in ``args.output_dir``, and its health score is appended to the log
history. With ``checkup_first_batch=True`` it first runs :func:`gradmedic.checkup` on the first
``per_device_train_batch_size`` examples of the training set (taken in order, so the
Trainer's shuffling is untouched), with the loss the model returns (``output.loss``). Under
distributed training the statistics are reduced over the processes and only the main process
logs, prints and saves.

Example:
    >>> from gradmedic.integrations.transformers import GradMedicCallback
    >>> callback = GradMedicCallback(checkup_first_batch=True)
    >>> callback.report is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..monitor import Monitor
from ..sinks import Sink
from ._common import CallbackCore, TrainerLogSink, require

require("transformers", "transformers", "transformers")
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments  # noqa: E402


class LogHistorySink(TrainerLogSink):
    """Appends series to a Trainer's ``state.log_history``, one entry per step.

    Args:
        state: the ``TrainerState`` whose log history receives the entries.
        offset: added to the monitor's step (1 + the ``global_step`` when watching began, so
            that an entry's step is the ``global_step`` after its update).
        **options: ``per_layer``, ``series``, ``prefix``: see :class:`TrainerLogSink`.
    """

    def __init__(self, state: TrainerState, offset: int = 1, **options: Any) -> None:
        super().__init__(offset=offset, **options)
        self.state = state

    def _log(self, step: int, scalars: Mapping[str, float]) -> None:
        kept = self._prefixed(scalars)
        if kept:
            self.state.log_history.append({**kept, "step": step + self.offset})

    def close(self) -> None:
        """Nothing to release: the entries live in the Trainer's state."""


def model_loss(output: Any, targets: Any = None) -> torch.Tensor:
    """The loss a Hugging Face model returns when the batch has labels (``output.loss``).

    Raises:
        ValueError: if the output holds no loss (pass ``loss_fn=`` or labels in the batch).
    """
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    if not isinstance(loss, torch.Tensor):
        raise ValueError(
            "the model returned no loss: put the labels in the batch, or give loss_fn=... to the callback"
        )
    return loss


class GradMedicCallback(CallbackCore, TrainerCallback):
    """Watch a Hugging Face model's gradients during ``Trainer.train``; diagnose at the end.

    Args:
        per_layer: also log one series per layer and metric (many series on a deep model).
        series: the series to log (default: all summary series); see :mod:`gradmedic.sinks`.
        checkup_first_batch: run :func:`gradmedic.checkup` on the first batch of the training set.
        batch_to_inputs: ``batch -> (inputs, targets)`` for the checkup (default: the collated
            batch as keyword arguments, no targets: the model's own loss is used).
        loss_fn: ``loss_fn(output[, targets])`` for the checkup (default: ``output.loss``).
        report_name: file name of the report written at the end (``None``: none).
        print_report: print the reports (main process).
        **watch_options: options of :func:`gradmedic.watch` (``every``, ``flush_every``,
            ``sinks``, ``scaler``...).

    Attributes:
        monitor: the monitor while training runs.
        history: the run's History once training has ended.
        report: the diagnosis at the end of training (main process).
        checkup_report: the first batch's checkup, if asked (main process).
        report_path: where the report was written.
    """

    default_loss_fn = staticmethod(model_loss)
    _has_optimizer = False  # set when training begins: whether a torch optimizer's hooks mark steps

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        model = kwargs["model"]
        if self.checkup_first_batch and state.is_world_process_zero:
            loader, size = kwargs.get("train_dataloader"), args.per_device_train_batch_size
            device = lambda: next(model.parameters()).device  # noqa: E731
            self._checkup(model, lambda: _to_device(_first_batch(loader, size), device()))
        options = dict(self.watch_options)
        sinks: list[Sink] = [*(options.pop("sinks", None) or []), LogHistorySink(
            state, offset=state.global_step + 1, per_layer=self.per_layer, series=self.series)]  # fmt: skip
        if args.world_size > 1:
            options.setdefault("distributed", True)
        optimizer = _torch_optimizer(kwargs.get("optimizer"))
        self._has_optimizer = optimizer is not None
        self.monitor = Monitor(model, optimizer, sinks=sinks, **options).attach()

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.monitor is not None and not self._has_optimizer:  # no torch optimizer to hook
            self.monitor.step()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.monitor is not None and logs and "loss" in logs and self._has_optimizer:
            self.monitor.step(float(logs["loss"]))  # recorded for the step that just ended

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        monitor.flush()  # a collective in distributed training: every process is here
        if state.is_world_process_zero:
            self._report(monitor, args.output_dir or ".")
        monitor.detach()
        self.history = monitor.history


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer | None:
    """The torch optimizer inside accelerate's wrapper (whose own step hooks do not run)."""
    seen = 0
    while optimizer is not None and hasattr(optimizer, "optimizer") and seen < 5:
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer if isinstance(optimizer, torch.optim.Optimizer) else None


def _first_batch(loader: Any, size: int) -> Any:
    """The first ``size`` examples of the loader's dataset, collated; else the loader's first batch."""
    if loader is None:
        raise ValueError("the Trainer gave no training dataloader")
    dataset = getattr(loader, "dataset", None)
    collate = getattr(loader, "collate_fn", None)
    if (
        dataset is not None
        and collate is not None
        and hasattr(dataset, "__getitem__")
        and hasattr(dataset, "__len__")
    ):
        return collate([dataset[i] for i in range(min(size, len(dataset)))])
    return next(iter(loader))


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


__all__ = ["GradMedicCallback", "LogHistorySink", "model_loss"]
