"""The one table of the metrics the monitor records: what each is, how it is laid out and shown.

Every module that needs to know about a metric reads it here: the
:class:`~gradmedic.history.History` (how many columns), the flush (which values are checked
for NaN/Inf, in which order), the DDP reducer (how ranks are combined), the sinks (which
metrics go out per layer) and the pictures (title and unit). A new metric is one new row.

Fields of a :class:`Metric`:

* ``columns``: ``"layer"`` (one per observed layer), ``"parameter"`` (one per parameter),
  ``"scalar"`` (one) or ``"time"`` (one block of steps back per recurrent layer);
* ``phase``: when it is measured: ``"forward"``, ``"backward"``, ``"update"`` (across the
  optimizer's step), ``"step"`` (the loss) or ``"time"`` (through time, recurrent layers);
* ``reduction``: how ranks are combined in a distributed run (``"mean"``, ``"rms"``), or None:
  rank 0's own values;
* ``finite_checked``: whether a NaN/Inf value is reported as a non-finite event (a saturated
  fraction is NaN where it does not apply, an update ratio NaN for all-zero weights: not
  overflows);
* ``per_layer_sink``: whether a sink with ``per_layer=True`` receives it per layer;
* ``drawn``: whether the pictures draw it per layer over training;
* ``title`` and ``unit``: the words a picture or a page shows.

Example:
    >>> METRICS["signal_rms"].columns, METRICS["signal_rms"].reduction
    ('layer', 'rms')
    >>> names(phase="forward")
    ('act_mean', 'act_std', 'act_saturated', 'act_dead')
    >>> columns_of("no such metric")  # a metric of a later version: one column
    'scalar'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric the monitor records (see the module docstring for the fields)."""

    name: str
    columns: str
    phase: str
    reduction: str | None
    finite_checked: bool
    per_layer_sink: bool
    drawn: bool
    title: str
    unit: str


_SIGNAL = "Backprop signal per layer ({} of the gradient of the loss w.r.t. each layer's output)"
_SATURATED = (
    "Saturated fraction per layer: share of outputs in the flat tails of\n"
    "Sigmoid/Tanh-like activations, where almost no gradient passes"
)
_DEAD = (
    "Dead fraction per layer: share of ReLU-like units that output 0\n"
    "for the whole batch, so no gradient passes through them"
)

#: name, columns, phase, reduction, finite checked, per layer in sinks, drawn, title, unit.
#: The order is the order of the DDP reducer's packed buffer (the same on every rank).
_ROWS: list[tuple[str, str, str, str | None, bool, bool, bool, str, str]] = [
    ("loss", "scalar", "step", "mean", True, False, False, "Training loss", "loss"),
    ("signal_norm", "layer", "backward", "rms", True, False, True,
     _SIGNAL.format("norm"), "||dLoss/d(output)||"),
    ("signal_rms", "layer", "backward", "rms", True, True, True,
     _SIGNAL.format("RMS"), "RMS of dLoss/d(output)"),
    ("weight_grad_norm", "layer", "backward", "rms", True, True, True,
     "Weight-gradient norm per layer (gradient of the loss w.r.t. each layer's parameters)", "||dLoss/dW||"),
    ("param_grad_norm", "parameter", "backward", "rms", True, False, False,
     "Gradient norm per parameter", "||dLoss/dp||"),
    ("update_ratio", "layer", "update", "rms", False, True, True,
     "Update size per layer: ||w_after - w_before|| / ||w_before|| at each optimizer step",
     "update / weight ratio"),
    ("act_mean", "layer", "forward", "mean", True, False, True, "Mean of each layer's output", "mean"),
    ("act_std", "layer", "forward", "rms", True, False, True,
     "Standard deviation of each layer's output", "standard deviation"),
    ("act_saturated", "layer", "forward", "mean", False, True, True, _SATURATED, "fraction of outputs"),
    ("act_dead", "layer", "forward", "mean", False, True, True, _DEAD, "fraction of units"),
    ("grad_underflow", "layer", "backward", "mean", False, True, False,
     "Gradient underflow per layer: share of non-zero weight-gradient values below the low "
     "precision's smallest normal", "fraction of values"),
    ("time_length", "layer", "time", None, False, False, False,
     "Sequence length seen by each recurrent layer", "steps"),
    ("gate_mean", "layer", "time", None, False, False, False,
     "Mean memory gate (LSTM forget, GRU update) per recurrent layer", "gate activation"),
    ("gate_saturated", "layer", "time", None, False, False, False,
     "Saturated fraction of the memory gates per recurrent layer", "fraction of gates"),
    ("time_signal", "time", "time", None, False, False, False,
     "Backprop signal through time (norm of the gradient at each hidden state, by steps back)",
     "||dLoss/dh_t||"),
]  # fmt: skip

#: Every metric the monitor records, by name.
METRICS: dict[str, Metric] = {row[0]: Metric(*row) for row in _ROWS}


def names(columns: str | None = None, phase: str | None = None) -> tuple[str, ...]:
    """The metrics with these columns and phase (None: any), in table order.

    Example:
        >>> names(columns="time")
        ('time_signal',)
    """
    return tuple(
        m.name
        for m in METRICS.values()
        if (columns is None or m.columns == columns) and (phase is None or m.phase == phase)
    )


def columns_of(metric: str) -> str:
    """The columns of ``metric``; ``"scalar"`` for a name the table does not know."""
    known = METRICS.get(metric)
    return known.columns if known is not None else "scalar"


__all__ = ["METRICS", "Metric", "columns_of", "names"]
