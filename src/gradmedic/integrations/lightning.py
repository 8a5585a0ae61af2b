"""PyTorch Lightning: a Callback that watches the LightningModule while ``Trainer.fit`` runs.

Install with ``pip install 'gradmedic[lightning]'``.

``GradMedic`` attaches a monitor to the LightningModule (and its optimizer, and the GradScaler of
a ``precision="16-mixed"`` run) at the first training batch, writes the summary series through
the Trainer's loggers (``logger.log_metrics``, keys ``gradmedic/<series>``, see
:mod:`gradmedic.sinks`) at each flush, and at the end of ``fit`` diagnoses the run: the report is
printed, kept as :attr:`GradMedic.report`, and saved as ``gradmedic_report.json`` in
``trainer.log_dir`` (or ``default_root_dir`` without a logger), and its health score is logged
as ``gradmedic/health_score``. With ``checkup_first_batch=True`` it first runs
:func:`gradmedic.checkup` on the first batch (model left as found; report in
:attr:`GradMedic.checkup_report`, printed). Under DDP the statistics are reduced over the ranks
and only rank 0 logs, prints and saves.

Example:
    >>> from gradmedic.integrations.lightning import GradMedic
    >>> callback = GradMedic(checkup_first_batch=True, flush_every=8)
    >>> callback.report is None
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..diagnosis import Report, checkup
from ..history import History
from ..monitor import Monitor
from ..sinks import Sink
from ._common import BatchToInputs, TrainerLogSink, default_batch_to_inputs, require, save_report

require("lightning", "lightning", "lightning")
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402


class LoggerSink(TrainerLogSink):
    """Writes series to every logger of a Lightning ``Trainer`` (``log_metrics(metrics, step)``).

    Args:
        trainer: the Trainer whose loggers receive the series.
        offset: added to the monitor's step (the Trainer's ``global_step`` when watching began).
        **options: ``per_layer``, ``series``, ``prefix``: see :class:`TrainerLogSink`.
    """

    def __init__(self, trainer: Trainer, offset: int = 0, **options: Any) -> None:
        super().__init__(offset=offset, **options)
        self.trainer = trainer

    def _log(self, step: int, scalars: Mapping[str, float]) -> None:
        kept = self._prefixed(scalars)
        if kept:
            for logger in self.trainer.loggers:
                logger.log_metrics(kept, step=step + self.offset)

    def close(self) -> None:
        """Ask each logger to save what it holds (the CSV logger writes its file)."""
        for logger in self.trainer.loggers:
            logger.save()


class GradMedic(Callback):
    """Watch a LightningModule's gradients during ``fit``; diagnose at the end.

    Args:
        per_layer: also log one series per layer and metric (many series on a deep model).
        series: the series to log (default: all summary series); see :mod:`gradmedic.sinks`.
        checkup_first_batch: run :func:`gradmedic.checkup` on the first training batch.
        batch_to_inputs: ``batch -> (inputs, targets)`` for the checkup; the default takes
            ``batch[0], batch[1]`` of a tuple or list (targets ``None`` for a dict or a tensor).
        loss_fn: ``loss_fn(output, targets)`` for the checkup (default: cross-entropy for
            integer targets, mean squared error for float targets).
        report_name: file name of the report written at the end of ``fit`` (``None``: none).
        print_report: print the reports (rank 0).
        **watch_options: options of :func:`gradmedic.watch` (``every``, ``activations_every``,
            ``updates_every``, ``flush_every``, ``log_path``, ``sinks``, ``scaler``...).

    Attributes:
        monitor: the monitor while ``fit`` runs (``None`` before the first batch).
        history: the run's History once ``fit`` has ended.
        report: the diagnosis at the end of ``fit`` (rank 0).
        checkup_report: the first batch's checkup, if asked (rank 0).
        report_path: where the report was written.
    """

    def __init__(
        self,
        *,
        per_layer: bool = False,
        series: Sequence[str] | None = None,
        checkup_first_batch: bool = False,
        batch_to_inputs: BatchToInputs | None = None,
        loss_fn: Callable[..., Any] | None = None,
        report_name: str | None = "gradmedic_report.json",
        print_report: bool = True,
        **watch_options: Any,
    ) -> None:
        super().__init__()
        self.per_layer = per_layer
        self.series = series
        self.checkup_first_batch = checkup_first_batch
        self.batch_to_inputs = batch_to_inputs or default_batch_to_inputs
        self.loss_fn = loss_fn
        self.report_name = report_name
        self.print_report = print_report
        self.watch_options = dict(watch_options)
        self.monitor: Monitor | None = None
        self.history: History | None = None
        self._batch_is_step = False
        self.report: Report | None = None
        self.checkup_report: Report | None = None
        self.report_path: Path | None = None
        self._sink: LoggerSink | None = None

    # -- Lightning hooks -------------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.monitor, self.report, self.checkup_report, self.report_path = None, None, None, None

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is not None:
            return
        if self.checkup_first_batch and trainer.is_global_zero:
            self._checkup(pl_module, batch)
        self.monitor = self._watch(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        monitor = self.monitor
        if monitor is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if self._batch_is_step or loss is not None:  # without an optimizer, this closes the step
            monitor.step(loss)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        monitor.flush()  # a collective under DDP: every rank is here
        if trainer.is_global_zero:
            self.report = monitor.diagnose()  # the loggers get its health score
            self._save(trainer)
        monitor.detach()
        self.history = monitor.history

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is not None and trainer.world_size == 1:  # under DDP a flush would wait for the others
            monitor.detach()

    # -- helpers -----------------------------------------------------------------------------

    def _watch(self, trainer: Trainer, pl_module: LightningModule) -> Monitor:
        options = dict(self.watch_options)
        self._sink = LoggerSink(
            trainer, offset=trainer.global_step, per_layer=self.per_layer, series=self.series
        )
        sinks: list[Sink] = [*(options.pop("sinks", None) or []), self._sink]
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            options.setdefault("scaler", scaler)
        if trainer.world_size > 1:
            options.setdefault("distributed", True)
        optimizer = trainer.optimizers[0] if len(trainer.optimizers) == 1 else None
        self._batch_is_step = optimizer is None  # several optimizers: each batch is one step
        return Monitor(pl_module, optimizer, sinks=sinks, **options).attach()

    def _checkup(self, pl_module: LightningModule, batch: Any) -> None:
        try:
            inputs, targets = self.batch_to_inputs(batch)
            self.checkup_report = checkup(pl_module, inputs, targets, self.loss_fn)
        except Exception as error:  # a diagnostic must not stop the training it watches
            warnings.warn(f"gradmedic: the first-batch checkup failed: {error}", RuntimeWarning, stacklevel=2)
            return
        if self.print_report:
            print("gradmedic checkup of the first batch:")
            print(self.checkup_report)

    def _save(self, trainer: Trainer) -> None:
        assert self.report is not None
        if self.report_name is not None:
            directory = trainer.log_dir or trainer.default_root_dir
            self.report_path = save_report(self.report, directory, self.report_name)
        if self.print_report:
            print(self.report)
            if self.report_path is not None:
                print(f"gradmedic: report saved to {self.report_path}")


__all__ = ["GradMedic", "LoggerSink"]
