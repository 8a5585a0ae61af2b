"""Remedy 5: gradient clipping, installed on an optimizer as a step pre-hook.

Modes: ``norm`` (the total norm, as ``clip_grad_norm_``), ``value`` (each element, as
``clip_grad_value_``) and ``agc``: adaptive gradient clipping (Brock et al., 2021, NFNets), which
bounds each unit's gradient norm to ``clipping`` times that unit's weight norm.

The clipper keeps its statistics on the device (no host sync per step): how many steps it
clipped and by how much. A monitor watching the same optimizer records them each step as the
``clip_norm`` (total norm before clipping) and ``clip_scale`` (factor applied; 1 = untouched)
metrics.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> clipper = install_gradient_clipping(opt, mode="norm", max_norm=0.5)
    >>> model(torch.full((4, 3), 100.0)).sum().backward()
    >>> opt.step()
    >>> clipper.clipped_steps, round(clipper.last_total_norm(), 1) > 0.5
    (1, True)
    >>> clipper.remove()
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .._deprecation import module_getattr
from ..diagnosis.findings import Family
from ..errors import ConfigError
from .changes import Change

MODES = ("norm", "value", "agc")


def unitwise_norm(tensor: Tensor) -> Tensor:
    """Norm per output unit (row of a Linear weight, filter of a conv), broadcastable to ``tensor``.

    Example:
        >>> unitwise_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]])).flatten().tolist()
        [5.0, 1.0]
    """
    if tensor.dim() <= 1:
        return tensor.norm().reshape(1)
    dims = tuple(range(1, tensor.dim()))
    return torch.linalg.vector_norm(tensor, dim=dims, keepdim=True)


@torch.no_grad()
def adaptive_clip_(parameters: Iterable[nn.Parameter], clipping: float = 0.01, eps: float = 1e-3) -> Tensor:
    """Adaptive gradient clipping in place; returns the smallest scale applied to any unit.

    Each unit's gradient ``g_i`` is scaled to at most ``clipping * max(||w_i||, eps)``.
    """
    smallest = torch.ones(())
    for param in parameters:
        if param.grad is None:
            continue
        limit = unitwise_norm(param.detach()).clamp_min(eps) * clipping
        grad_norm = unitwise_norm(param.grad).clamp_min(1e-6)
        scale = (limit / grad_norm).clamp(max=1.0)
        param.grad.mul_(scale)
        smallest = torch.minimum(smallest.to(scale.device), scale.min())
    return smallest


def _total_norm(grads: list[Tensor]) -> Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class GradientClipper:
    """Clips an optimizer's gradients before each step; :meth:`remove` uninstalls it."""

    def __init__(self, optimizer: torch.optim.Optimizer, mode: str, max_norm: float, clip_value: float,
                 clipping: float) -> None:  # fmt: skip
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
        for name, value in (("max_norm", max_norm), ("clip_value", clip_value), ("clipping", clipping)):
            if not value > 0:
                raise ConfigError(f"{name}={value}: give a positive number")
        self.mode, self.max_norm, self.clip_value, self.clipping = mode, max_norm, clip_value, clipping
        self.optimizer = optimizer
        self.steps = 0
        self._clipped = torch.zeros((), dtype=torch.long)
        self._last_norm = torch.zeros(())
        self._last_scale = torch.ones(())
        self._handle = optimizer.register_step_pre_hook(self._before_step)
        clippers = optimizer.__dict__.setdefault("_gradmedic_clippers", [])
        clippers.append(self)

    def _params(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def _before_step(self, optimizer: object, args: object, kwargs: object) -> None:
        params = self._params()
        if not params:
            return
        grads = [p.grad for p in params if p.grad is not None]
        total = _total_norm(grads)
        if self.mode == "norm":
            scale = (self.max_norm / (total + 1e-6)).clamp(max=1.0)
            torch._foreach_mul_(grads, scale)
        elif self.mode == "value":
            before = total
            torch.nn.utils.clip_grad_value_(params, self.clip_value)
            after = _total_norm(grads)
            scale = (after / before.clamp_min(1e-30)).clamp(max=1.0)
        else:
            scale = adaptive_clip_(params, self.clipping)
        self.steps += 1
        self._clipped = self._clipped.to(scale.device) + (scale < 1.0).long()
        self._last_norm, self._last_scale = total, scale

    @property
    def clipped_steps(self) -> int:
        """How many steps were clipped (reads one number from the device)."""
        return int(self._clipped.item())

    def last_total_norm(self) -> float:
        """Total gradient norm before clipping, at the last step."""
        return float(self._last_norm.item())

    def last_device_stats(self) -> tuple[Tensor, Tensor]:
        """(total norm before clipping, scale applied) of the last step, as device tensors."""
        return self._last_norm, self._last_scale

    def remove(self) -> None:
        """Uninstall the clipper from its optimizer."""
        self._handle.remove()
        clippers = self.optimizer.__dict__.get("_gradmedic_clippers", [])
        if self in clippers:
            clippers.remove(self)

    def describe(self) -> Change:
        settings = {"norm": f"max_norm={self.max_norm}", "value": f"clip_value={self.clip_value}",
                    "agc": f"clipping={self.clipping}"}  # fmt: skip
        return Change(Family.CLIPPING, "(optimizer)", f"{self.mode} clipping, {settings[self.mode]}")


def install_gradient_clipping(
    optimizer: torch.optim.Optimizer,
    mode: str = "norm",
    max_norm: float = 1.0,
    clip_value: float = 1.0,
    clipping: float = 0.01,
) -> GradientClipper:
    """Install gradient clipping on ``optimizer`` (a step pre-hook); return the clipper."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            "install_gradient_clipping needs the torch.optim.Optimizer that trains the model, "
            f"got {type(optimizer).__name__}"
        )
    return GradientClipper(optimizer, mode, max_norm, clip_value, clipping)


# Old names, kept for one release (see gradmedic._deprecation).
__getattr__ = module_getattr(
    __name__,
    {
        "clip_gradients": ("install_gradient_clipping", lambda: install_gradient_clipping),
    },
)
