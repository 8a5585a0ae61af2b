"""Weights & Biases: summary (and per-layer) series, and the gradient flow as an image.

Install with ``pip install 'gradmedic[wandb]'``. The sink logs into a run you started with
``wandb.init`` (or the active ``wandb.run``):

* at each monitor flush, one row per recorded step with ``gradmedic/step`` and the series
  ``gradmedic/<series>`` (see :mod:`gradmedic.sinks`); ``gradmedic/step`` is declared as their
  x axis (``run.define_metric("gradmedic/*", step_metric="gradmedic/step")``), so the rows of
  past steps that a flush brings plot at the right place;
* at each ``monitor.diagnose()``, the image ``gradmedic/flow`` and ``gradmedic/health_score``,
  ``gradmedic/findings`` and ``gradmedic/warnings``.

Each row is its own ``run.log`` call, which advances W&B's own ``_step``: log your metrics
without ``step=`` (declare your own step metric with ``define_metric`` if you need one).

Example:
    >>> import tempfile
    >>> import wandb
    >>> run = wandb.init(project="doctest", mode="offline", dir=tempfile.mkdtemp(),
    ...                  settings=wandb.Settings(silent=True))
    >>> sink = WandbSink(run)
    >>> sink.write(3, {"loss": 0.5})
    >>> run.summary["gradmedic/loss"], run.summary["gradmedic/step"]
    (0.5, 3)
    >>> run.finish()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ._common import PREFIX, diagnosis_scalars, flow_image, require

if TYPE_CHECKING:
    from ..diagnosis import Report
    from ..history import History


class WandbSink:
    """Logs gradmedic's series and gradient-flow pictures to a W&B run.

    Args:
        run: the run to log into (default: the active ``wandb.run``).
        per_layer: also log ``<metric>/<layer>`` series for every layer.
        prefix: prepended to every key.
        images: log the gradient flow at each diagnosis (needs matplotlib).

    Raises:
        ImportError: if wandb is not installed (with the pip command).
        ConfigError: if no run is given and none is active.
    """

    def __init__(
        self, run: Any = None, *, per_layer: bool = False, prefix: str = PREFIX, images: bool = True
    ) -> None:
        wandb = require("wandb", "wandb", "wandb")
        run = run if run is not None else wandb.run
        if run is None:
            raise ConfigError("WandbSink: no active W&B run; call wandb.init(...) first or pass run=")
        self._wandb = wandb
        self.run = run
        self.per_layer = per_layer
        self.prefix = prefix
        self.images = images
        run.define_metric(prefix + "*", step_metric=prefix + "step")

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        row: dict[str, Any] = {self.prefix + "step": int(step)}
        row.update({self.prefix + name: float(value) for name, value in scalars.items()})
        self.run.log(row)

    def write_diagnosis(self, step: int, history: History, report: Report) -> None:
        """Log the gradient-flow image and the report's score and finding counts at ``step``."""
        row: dict[str, Any] = {self.prefix + "step": int(step)}
        row.update({self.prefix + name: value for name, value in diagnosis_scalars(report).items()})
        if self.images:
            caption = ", ".join(report.kinds) or "healthy"
            row[self.prefix + "flow"] = self._wandb.Image(flow_image(history, report), caption=caption)
        self.run.log(row)

    def close(self) -> None:
        """Nothing to release: the run stays open (finish it with ``run.finish()``)."""


__all__ = ["WandbSink"]
