"""Remedy 4: residual connections that start as identities (ReZero / SkipInit).

Inside each ``nn.Sequential``, a *block* is a Linear/Conv layer and the modules after it up to
the next Linear/Conv (activation, norm, dropout). Every block whose output has its input's shape
becomes ``Residual(block)``: ``y = x + alpha * block(x)`` with a learnable ``alpha`` that starts
at 0, so the treated network starts as the shallow network of its non-residual blocks and keeps
its output shapes; the gradient has a direct path through every residual block.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> [c.action for c in add_residual(model, torch.randn(3, 4)) if not c.skipped]
    ['Linear+Tanh -> x + alpha * (Linear+Tanh), alpha = 0']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import registry
from ..diagnosis.findings import Family
from ..hooks import HookSet
from ..running import forward_without_grad
from .changes import Change

WEIGHT_LAYERS = registry.WEIGHT_TYPES


class Residual(nn.Module):
    """``y = x + alpha * block(x)``, ``alpha`` learnable and initially 0 (ReZero)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        like = next(block.parameters(), torch.zeros(()))  # alpha on the block's device, in its dtype
        self.alpha = nn.Parameter(torch.zeros((), dtype=like.dtype, device=like.device))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.alpha * self.block(x)


def add_residual(model: nn.Module, data: Any = None) -> list[Change]:
    """Wrap every shape-preserving block of every ``nn.Sequential`` in a :class:`Residual`.

    Shapes are read from a forward pass on ``data`` when given, else from the layers' sizes
    (Linear: in == out features; Conv: in == out channels, stride 1, 'same' padding).
    """
    shapes = _block_shapes(model, data) if data is not None else {}
    changes: list[Change] = []
    wrapped = {id(m.block) for m in model.modules() if isinstance(m, Residual)}  # not twice
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Sequential) and id(module) not in wrapped:
            changes += _wrap_blocks(name, module, shapes)
    if not changes:
        changes.append(
            Change(Family.RESIDUAL, "", "no nn.Sequential of shape-preserving blocks", skipped=True)
        )
    return changes


def _blocks(sequential: nn.Sequential) -> list[list[int]]:
    """Indices of the children grouped into blocks, each starting at a Linear/Conv layer."""
    blocks: list[list[int]] = []
    for index, child in enumerate(sequential):
        if isinstance(child, WEIGHT_LAYERS) or not blocks:
            blocks.append([index])
        else:
            blocks[-1].append(index)
    return blocks


def _wrap_blocks(prefix: str, sequential: nn.Sequential, shapes: dict[str, bool]) -> list[Change]:
    children = list(sequential)
    blocks = _blocks(sequential)
    new_children: list[nn.Module] = []
    changes = []
    for block in blocks:
        parts = [children[i] for i in block]
        first_name = f"{prefix}.{block[0]}" if prefix else str(block[0])
        keeps = shapes.get(first_name, _keeps_shape_by_size(parts[0]))
        if isinstance(parts[0], WEIGHT_LAYERS) and keeps:
            new_children.append(Residual(nn.Sequential(*parts)).train(parts[0].training))
            label = "+".join(type(p).__name__ for p in parts)
            changes.append(
                Change(Family.RESIDUAL, first_name, f"{label} -> x + alpha * ({label}), alpha = 0")
            )
        else:
            new_children.extend(parts)
    if changes:
        sequential._modules.clear()
        for i, child in enumerate(new_children):
            sequential.add_module(str(i), child)
    return changes


def _keeps_shape_by_size(layer: nn.Module) -> bool:
    if isinstance(layer, nn.Linear):
        return layer.in_features == layer.out_features
    if isinstance(layer, registry.CONV_TYPES):
        padding = layer.padding
        same_padding = padding == "same" or (
            not isinstance(padding, str)
            and all(2 * p == d * (k - 1) for p, k, d in zip(padding, layer.kernel_size, layer.dilation))
        )
        stride_one = all(s == 1 for s in layer.stride)
        return layer.in_channels == layer.out_channels and stride_one and same_padding
    return False


def _block_shapes(model: nn.Module, data: Any) -> dict[str, bool]:
    """For the first layer of each block, whether the block's input and output shapes agree."""
    record: dict[str, bool] = {}
    hooks = HookSet()
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            for block in _blocks(module):
                first = f"{name}.{block[0]}" if name else str(block[0])
                start, end = module[block[0]], module[block[-1]]
                for handle in _watch_block(start, end, first, record):
                    hooks.add(handle)
    forward_without_grad(model, data, hooks)
    return record


def _watch_block(start: nn.Module, end: nn.Module, name: str, record: dict[str, bool]) -> tuple[Any, Any]:
    shape: list[torch.Size] = []

    def on_start(module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], Tensor):
            shape[:] = [args[0].shape]

    def on_end(module: nn.Module, args: object, output: object) -> None:
        if shape and isinstance(output, Tensor) and name not in record:
            record[name] = output.shape == shape[0]

    return start.register_forward_pre_hook(on_start), end.register_forward_hook(on_end)
