"""What the monitor knows of the step in progress: a fresh :class:`StepState` per step.

Example:
    >>> state = StepState.open(5, signal_on=False, acts_on=True, time_on=False)
    >>> state.recorded, state.record.step, state.forward_seen
    (True, 5, False)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .flush import StepRecord


@dataclass
class StepState:
    """One step's schedule decisions and what its forward and backward passes left so far.

    A new one replaces the last when a step closes (or when a GradScaler skipped it), so no
    field of a step can leak into the next.
    """

    record: StepRecord  #: the values of this step, on the device
    signal_on: bool  #: the backprop signal, weight-gradient norms and loss are recorded
    acts_on: bool  #: activation statistics (and the activation modules' signal) are recorded
    time_on: bool  #: statistics through time of recurrent layers are recorded
    forward_seen: bool = False  #: a hooked forward call happened this step
    acts: dict[int, list[Tensor | list[float]]] = field(default_factory=dict)  #: per layer, per call
    pending_loss: Tensor | None = None  #: a loss given before the step closed
    closure_step: bool = False  #: ``optimizer.step(closure)``: collect after the step
    low_dtype: torch.dtype | None = None  #: float16/bfloat16 when the forward pass ran in it
    scaler_round: object = None  #: the GradScaler's round at this step's first forward call

    @classmethod
    def open(cls, step: int, signal_on: bool, acts_on: bool, time_on: bool) -> StepState:
        """The state of step ``step`` before anything ran."""
        return cls(StepRecord(step), signal_on, acts_on, time_on)

    @property
    def recorded(self) -> bool:
        """Whether any statistic needs the model's hooks this step."""
        return self.signal_on or self.acts_on or self.time_on
