"""LSUV (Mishkin & Matas, 2016): after an orthogonal init, rescale each layer, in forward order,
until its output has unit variance on a batch of data.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    >>> _ = rescale_to_unit_variance(model, torch.randn(256, 16), ["0", "2"])
    >>> round(model[0](torch.randn(4096, 16)).var().item(), 1)
    1.0
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..diagnosis.checkup import call_model, first_tensor, preserved
from .changes import Change

TOLERANCE = 0.05
MAX_ITERATIONS = 10


def rescale_to_unit_variance(model: nn.Module, data: Any, names: list[str]) -> list[Change]:
    """Scale the weights of each layer in ``names`` (forward order) to unit output variance."""
    modules = dict(model.named_modules())
    changes = []
    with preserved(model), torch.no_grad():
        for name in names:
            module = modules[name]
            weight = getattr(module, "weight", None)
            if not isinstance(weight, Tensor):
                continue
            variance = _fit(model, module, weight, data)
            changes.append(Change("init", name, f"lsuv: output variance {variance:.3f}"))
    return changes


def _fit(model: nn.Module, module: nn.Module, weight: Tensor, data: Any) -> float:
    variance = float("nan")
    for _ in range(MAX_ITERATIONS):
        variance = _output_variance(model, module, data)
        if not variance > 0 or abs(variance - 1) < TOLERANCE:
            break
        weight.div_(variance**0.5)
    return variance


def _output_variance(model: nn.Module, module: nn.Module, data: Any) -> float:
    seen: list[float] = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(first_tensor(o).var().item()))
    try:
        call_model(model, data)
    finally:
        handle.remove()
    return seen[0] if seen else float("nan")
