"""What the integrations share: lazy imports with install advice, the flow picture, the report file,
the callbacks' settings and end-of-run work.

Example:
    >>> require("json", "json", "tests").__name__
    'json'
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor, nn

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..diagnosis import Report
    from ..history import History
    from ..monitor import Monitor

#: File name of the report an integration writes at the end of training.
REPORT_NAME = "gradmedic_report.json"

#: The statistics prefix in dashboards and trainer logs.
PREFIX = "gradmedic/"

BatchToInputs = Callable[[Any], tuple[Any, Any]]


def require(module: str, package: str, extra: str) -> ModuleType:
    """Import ``module``; if it is missing, say which extra installs it.

    Raises:
        ImportError: ``"... needs <package>: pip install 'gradmedic[<extra>]'"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"gradmedic's {extra} integration needs {package} ({error}): pip install 'gradmedic[{extra}]'"
        ) from error


def flow_image(history: History, report: Report | None = None, dpi: int = 60) -> np.ndarray:
    """The gradient-flow picture (:func:`gradmedic.plots.flow`) as an RGB ``uint8`` array ``[H, W, 3]``.

    Layers named by a finding are marked with its kind. The figure is drawn once at ``dpi`` on the
    canvas (:func:`gradmedic.canvas.rgb_pixels`: the same pixels as its PNG).
    """
    from .. import plots
    from ..canvas import rgb_pixels

    marks: dict[str, str] = {}
    for finding in report.findings if report is not None else []:
        for layer in finding.layers:
            marks.setdefault(layer, finding.kind)
    return np.ascontiguousarray(rgb_pixels(plots.flow(history, marks=marks), dpi))


def diagnosis_scalars(report: Report) -> dict[str, float]:
    """The numbers of a report worth a dashboard series: health score and finding counts.

    Example:
        >>> from gradmedic.diagnosis import Report
        >>> diagnosis_scalars(Report([], 1.0, "monitor"))
        {'health_score': 1.0, 'findings': 0.0, 'warnings': 0.0}
    """
    from ..diagnosis import Severity

    serious = sum(1 for f in report.findings if f.severity >= Severity.WARNING)
    return {
        "health_score": float(report.score),
        "findings": float(len(report.findings)),
        "warnings": float(serious),
    }


def default_batch_to_inputs(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch: ``(x, y, ...)`` tuple or list; a dict or tensor has no targets.

    Raises:
        ConfigError: for a batch of another shape (pass ``batch_to_inputs=``).

    Example:
        >>> import torch
        >>> x, y = default_batch_to_inputs((torch.zeros(2, 3), torch.ones(2)))
        >>> tuple(x.shape), tuple(y.shape)
        ((2, 3), (2,))
    """
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, (tuple, list)) and len(batch) == 1:
        return batch[0], None
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, dict):
        return batch, None
    raise ConfigError(
        f"cannot tell inputs from targets in a batch of type {type(batch).__name__}: pass "
        "batch_to_inputs=lambda batch: (inputs, targets)"
    )


def save_report(report: Report, directory: str | Path, name: str = REPORT_NAME) -> Path:
    """Write ``report`` as JSON into ``directory`` (created if needed) and return the path."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    report.to_json(path)
    return path


def _inputs_without_targets(batch: Any) -> tuple[Any, Any]:
    return batch, None


class CallbackCore:
    """The settings, state, first-batch checkup and end-of-run report that the Lightning and Hugging
    Face callbacks share; each subclass documents the settings and names its defaults for
    ``batch_to_inputs`` and ``loss_fn`` (:attr:`default_batch_to_inputs`, :attr:`default_loss_fn`).
    """

    default_batch_to_inputs: BatchToInputs = staticmethod(_inputs_without_targets)
    default_loss_fn: Callable[..., Any] | None = None

    def __init__(
        self,
        *,
        per_layer: bool = False,
        series: Sequence[str] | None = None,
        checkup_first_batch: bool = False,
        batch_to_inputs: BatchToInputs | None = None,
        loss_fn: Callable[..., Any] | None = None,
        report_name: str | None = REPORT_NAME,
        print_report: bool = True,
        **watch_options: Any,
    ) -> None:
        super().__init__()
        self.per_layer = per_layer
        self.series = series
        self.checkup_first_batch = checkup_first_batch
        self.batch_to_inputs = batch_to_inputs or self.default_batch_to_inputs
        self.loss_fn = loss_fn or self.default_loss_fn
        self.report_name = report_name
        self.print_report = print_report
        self.watch_options = dict(watch_options)
        self.monitor: Monitor | None = None
        self.history: History | None = None
        self.report: Report | None = None
        self.checkup_report: Report | None = None
        self.report_path: Path | None = None

    def _checkup(self, model: nn.Module, first_batch: Callable[[], Any]) -> None:
        """Check ``model`` up on ``first_batch()``; a failure is a warning, never an error (a
        diagnostic must not stop the training it watches)."""
        from ..diagnosis import checkup

        try:
            inputs, targets = self.batch_to_inputs(first_batch())
            self.checkup_report = checkup(model, inputs, targets, self.loss_fn)
        except Exception as error:
            warnings.warn(f"gradmedic: the first-batch checkup failed: {error}", RuntimeWarning, stacklevel=3)
            return
        if self.print_report:
            print("gradmedic checkup of the first batch:")
            print(self.checkup_report)

    def _report(self, monitor: Monitor, directory: str | Path) -> None:
        """Diagnose the run, save the report into ``directory`` and print it, as the settings say."""
        self.report = monitor.diagnose()  # the sinks log its health score
        if self.report_name is not None:
            self.report_path = save_report(self.report, directory, self.report_name)
        if self.print_report:
            print(self.report)
            if self.report_path is not None:
                print(f"gradmedic: report saved to {self.report_path}")


class TrainerLogSink:
    """What the Lightning and Hugging Face sinks share: choosing series, prefixing, offsetting.

    Subclasses say where a row goes, in :meth:`_log`.

    Args:
        per_layer: also write the per-layer series.
        series: names to keep (a summary series, or a per-layer metric such as
            ``"signal_rms"``); ``None`` keeps all.
        prefix: prepended to every key.
        offset: added to the monitor's step.
    """

    def __init__(
        self,
        per_layer: bool = False,
        series: Sequence[str] | None = None,
        prefix: str = PREFIX,
        offset: int = 0,
    ) -> None:
        self.per_layer = per_layer
        self.series = set(series) if series is not None else None
        self.prefix = prefix
        self.offset = offset

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        chosen = self.series
        self._log(step, {k: v for k, v in scalars.items() if chosen is None or k.split("/")[0] in chosen})

    def write_diagnosis(self, step: int, history: History, report: Report) -> None:
        """Log the report's health score and finding counts (whatever series were chosen)."""
        self._log(step, diagnosis_scalars(report))

    def _prefixed(self, scalars: Mapping[str, float]) -> dict[str, float]:
        return {self.prefix + name: float(value) for name, value in scalars.items()}

    def _log(self, step: int, scalars: Mapping[str, float]) -> None:
        raise NotImplementedError  # each subclass writes to its trainer
