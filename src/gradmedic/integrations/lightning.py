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

from collections.abc import Mapping
from typing import Any

from ..monitor import Monitor
from ..sinks import Sink
from ._common import CallbackCore, TrainerLogSink, default_batch_to_inputs, require

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


class GradMedic(CallbackCore, Callback):
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

    default_batch_to_inputs = staticmethod(default_batch_to_inputs)
    _batch_is_step = False  # set when watching starts: without one optimizer each batch is a step
    _sink: LoggerSink | None = None

    # -- Lightning hooks -------------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.monitor, self.report, self.checkup_report, self.report_path = None, None, None, None

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.monitor is not None:
            return
        if self.checkup_first_batch and trainer.is_global_zero:
            self._checkup(pl_module, lambda: batch)
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
            self._report(monitor, trainer.log_dir or trainer.default_root_dir)
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


__all__ = ["GradMedic", "LoggerSink"]
