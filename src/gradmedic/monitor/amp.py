"""Everything the monitor reads of a ``torch.amp.GradScaler``'s private state, in one place.

A GradScaler does not say, in public, which loss scale the gradients were made with, whether
``unscale_`` already ran for an optimizer, or whether ``update()`` skipped a step. These three
functions read it from ``_scale`` and ``_per_optimizer_states`` (stable since torch 1.6); they
return the neutral answer when a scaler lacks them (a look-alike object, a future torch).

Example:
    >>> import torch
    >>> scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    >>> loss_scale(scaler) is None  # no scale tensor before the first scaler.scale(loss)
    True
    >>> _ = scaler.scale(torch.tensor(1.0))
    >>> loss_scale(scaler).item()
    1024.0
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def scaler_round(scaler: object) -> object:
    """An object that ``scaler.update()`` replaces: unchanged within one round of the scaler."""
    return getattr(scaler, "_per_optimizer_states", None)


def loss_scale(scaler: object) -> Tensor | None:
    """The loss scale in effect for this step (a device tensor: no host sync), or None."""
    scale = getattr(scaler, "_scale", None) if scaler is not None else None
    return scale if isinstance(scale, Tensor) else None


def grads_still_scaled(scaler: object, optimizer: object) -> bool:
    """Whether the ``.grad`` of ``optimizer``'s parameters still hold scaled gradients (its
    ``scaler.unscale_(optimizer)`` has not run this round; with no such optimizer known to the
    scaler: whether none of its optimizers was unscaled)."""
    states = getattr(scaler, "_per_optimizer_states", None) or {}
    mine = [states[id(optimizer)]] if id(optimizer) in states else list(states.values())
    return not any(getattr(state.get("stage"), "name", "") == "UNSCALED" for state in mine)


class Scaler:
    """The GradScaler of one monitor (or none) and the optimizer it unscales, for the collector.

    Example:
        >>> import torch
        >>> scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
        >>> _ = scaler.scale(torch.tensor(1.0))
        >>> Scaler(scaler, None).unscaled(torch.tensor([32.0])).tolist()
        [2.0]
    """

    def __init__(self, scaler: object, optimizer: Callable[[], object] | None) -> None:
        self.scaler = scaler
        self._optimizer = optimizer  # a weak reference (or None: no optimizer given)

    @property
    def active(self) -> bool:
        """Whether a GradScaler was given."""
        return self.scaler is not None

    def scale(self) -> Tensor | None:
        """The loss scale in effect for this step (a device tensor), or None."""
        return loss_scale(self.scaler)

    def grads_scaled(self) -> bool:
        """Whether ``.grad`` still holds scaled gradients (``scaler.unscale_`` has not run)."""
        optimizer = self._optimizer() if self._optimizer is not None else None
        return grads_still_scaled(self.scaler, optimizer)

    def unscaled(self, squared: Tensor, scaled: bool = True) -> Tensor:
        """Squared norms divided by the square of the loss scale (when ``scaled``)."""
        scale = self.scale()
        if scale is None or not scaled:
            return squared
        return squared / scale.to(squared.device, torch.float64).square()

    def round(self) -> object:
        """The scaler's round (see :func:`scaler_round`)."""
        return scaler_round(self.scaler)
