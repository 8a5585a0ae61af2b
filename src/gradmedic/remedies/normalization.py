"""Remedies 3 and 8: batch normalization and layer normalization after Linear/Conv layers.

Each Linear/Conv layer but the last (the output layer keeps its scale) becomes
``Sequential(layer, norm)``, with the norm sized for the layer's output features and placed for
the data layout: BatchNorm1d/2d/3d over channels for convolutions; for a Linear layer,
BatchNorm1d over the last dimension (also for ``[batch, time, features]`` outputs) or LayerNorm.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [c.action for c in add_normalization(model) if not c.skipped]
    ['Linear -> Linear + BatchNorm1d(8)']
"""

from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from ..layers import find_layers
from .changes import Change, set_submodule

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


class FeatureBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the *last* dimension, for Linear outputs of any rank ([N, F], [N, T, F])."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])
        return super().forward(flat).reshape(x.shape)


def make_norm(module: nn.Module, kind: str) -> nn.Module | None:
    """The normalization layer for ``module``'s output, or None for a layer it does not know."""
    if isinstance(module, nn.Linear):
        n = module.out_features
        return FeatureBatchNorm(n) if kind == "batch" else nn.LayerNorm(n)
    if isinstance(module, nn.modules.conv._ConvNd):
        channels = module.out_channels
        if kind == "layer":
            return nn.GroupNorm(1, channels)  # LayerNorm over (C, spatial) of each sample
        batch_norms = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
        return batch_norms[len(module.kernel_size)](channels)
    return None


def add_normalization(model: nn.Module, kind: str = "batch") -> list[Change]:
    """Insert a normalization layer after each Linear/Conv layer except the output layer."""
    if kind not in ("batch", "layer"):
        raise ConfigError(f"kind={kind!r}: choose 'batch' (BatchNorm) or 'layer' (LayerNorm)")
    modules = dict(model.named_modules())
    layers = [
        layer.name
        for layer in find_layers(model)
        if layer.kind == "param" and not isinstance(modules[layer.name], NORM_TYPES)
    ]
    normalized_already = _followed_by_norm(model)
    changes = []
    for name in layers[:-1]:
        module = modules[name]
        norm = make_norm(module, kind)
        if norm is None or name in normalized_already:
            reason = (
                "already followed by a norm layer"
                if norm is not None
                else f"no norm for {type(module).__name__}"
            )
            changes.append(Change("normalization", name, reason, skipped=True))
            continue
        norm.to(next(module.parameters()))  # the device and dtype of the layer
        set_submodule(model, name, nn.Sequential(module, norm).train(module.training))
        changes.append(
            Change(
                "normalization",
                name,
                f"{type(module).__name__} -> {type(module).__name__} + {_describe(norm)}",
            )
        )
    if layers:
        changes.append(Change("normalization", layers[-1], "the output layer keeps its scale", skipped=True))
    return changes


def _describe(norm: nn.Module) -> str:
    if isinstance(norm, nn.modules.batchnorm._NormBase):
        kind = "BatchNorm1d" if isinstance(norm, FeatureBatchNorm) else type(norm).__name__
        return f"{kind}({norm.num_features})"
    if isinstance(norm, nn.GroupNorm):
        return f"GroupNorm(1, {norm.num_channels})"
    assert isinstance(norm, nn.LayerNorm)
    return f"LayerNorm({norm.normalized_shape[0]})"


def _followed_by_norm(model: nn.Module) -> set[str]:
    """Layers whose next module (in definition order) is already a norm layer."""
    followed, previous = set(), None
    for name, module in model.named_modules():
        if isinstance(module, NORM_TYPES) and previous is not None:
            followed.add(previous)
        if any(True for _ in module.parameters(recurse=False)) and not isinstance(module, NORM_TYPES):
            previous = name
        elif isinstance(module, NORM_TYPES):
            previous = None
    return followed
