"""TensorBoard: summary (and per-layer) series as scalars, the gradient flow as an image.

Install with ``pip install 'gradmedic[tensorboard]'``. The sink writes through
``torch.utils.tensorboard.SummaryWriter``; give it a log directory or a writer of your own.

What it writes:

* at each monitor flush, one scalar per series and step, tagged ``gradmedic/<series>``
  (see :mod:`gradmedic.sinks` for the series; per-layer ones with ``per_layer=True``);
* at each ``monitor.diagnose()``, the image ``gradmedic/flow`` (backprop signal and weight
  gradient per layer, layers named by a finding marked with its kind) and the scalars
  ``gradmedic/health_score``, ``gradmedic/findings`` and ``gradmedic/warnings``.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> import gradmedic
    >>> from gradmedic.integrations.tensorboard import TensorBoardSink
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> sink = TensorBoardSink(tempfile.mkdtemp())
    >>> with gradmedic.watch(model, sinks=[sink]) as monitor:
    ...     model(torch.randn(16, 4)).pow(2).mean().backward()
    ...     monitor.step(1.0)
    ...     report = monitor.diagnose()   # also draws the flow into TensorBoard
    >>> sink.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import PREFIX, diagnosis_scalars, flow_image, require

if TYPE_CHECKING:
    from ..diagnosis import Report
    from ..history import History


class TensorBoardSink:
    """Writes gradmedic's series and gradient-flow pictures to a TensorBoard log directory.

    Args:
        log_dir: directory for a new ``SummaryWriter`` (closed by :meth:`close`); or
        writer: a ``SummaryWriter`` of your own (flushed, not closed, by :meth:`close`).
        per_layer: also write ``<metric>/<layer>`` series for every layer.
        prefix: prepended to every tag.
        images: draw the gradient flow at each diagnosis (needs matplotlib).

    Raises:
        ImportError: if tensorboard is not installed (with the pip command).
    """

    def __init__(
        self,
        log_dir: str | Path | None = None,
        *,
        writer: Any = None,
        per_layer: bool = False,
        prefix: str = PREFIX,
        images: bool = True,
    ) -> None:
        require("tensorboard", "tensorboard", "tensorboard")
        if (log_dir is None) == (writer is None):
            raise TypeError("TensorBoardSink: give either log_dir or writer")
        if writer is None:
            writer = require("torch.utils.tensorboard", "tensorboard", "tensorboard").SummaryWriter(
                str(log_dir)
            )
            self._owned = True
        else:
            self._owned = False
        self.writer = writer
        self.per_layer = per_layer
        self.prefix = prefix
        self.images = images

    @property
    def log_dir(self) -> str:
        """Where the event files are."""
        return str(self.writer.get_logdir())

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(self.prefix + name, value, step)

    def write_diagnosis(self, step: int, history: History, report: Report) -> None:
        """Draw the gradient flow and log the report's score and finding counts at ``step``."""
        self.write(step, diagnosis_scalars(report))
        if self.images:
            self.writer.add_image(self.prefix + "flow", flow_image(history, report), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        """Flush the events; close the writer if this sink created it."""
        self.writer.flush()
        if self._owned:
            self.writer.close()


def read_scalars(log_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """Scalars of a TensorBoard log directory: tag -> (steps, values) (reads the event files).

    Example:
        >>> import tempfile
        >>> sink = TensorBoardSink(tempfile.mkdtemp())
        >>> sink.write(2, {"loss": 0.5}); sink.close()
        >>> read_scalars(sink.log_dir)
        {'gradmedic/loss': ([2], [0.5])}
    """
    accumulator = _accumulator(log_dir)
    out = {}
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        out[tag] = ([e.step for e in events], [float(e.value) for e in events])
    return out


def read_images(log_dir: str | Path) -> dict[str, list[int]]:
    """Images of a TensorBoard log directory: tag -> steps."""
    accumulator = _accumulator(log_dir)
    return {tag: [e.step for e in accumulator.Images(tag)] for tag in accumulator.Tags()["images"]}


def _accumulator(log_dir: str | Path) -> Any:
    module = require("tensorboard.backend.event_processing.event_accumulator", "tensorboard", "tensorboard")
    accumulator = module.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


__all__ = ["TensorBoardSink", "read_images", "read_scalars"]
