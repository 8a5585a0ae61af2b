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

from typing import Any

from torch import Tensor, nn

from .. import registry
from ..diagnosis.findings import Family
from ..errors import ConfigError
from ..hooks import HookSet
from ..layers import find_layers
from ..op_layers import is_torch_layer
from ..running import forward_without_grad
from .changes import Change, set_submodule

NORM_TYPES = registry.NORM_TYPES


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
    if isinstance(module, registry.CONV_TYPES):
        channels = module.out_channels
        if kind == "layer":
            return nn.GroupNorm(1, channels)  # LayerNorm over (C, spatial) of each sample
        batch_norms = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
        return batch_norms[len(module.kernel_size)](channels)
    return None


def add_normalization(model: nn.Module, kind: str = "batch", data: Any = None) -> list[Change]:
    """Insert a normalization layer after each Linear/Conv layer except the output layer.

    Args:
        data: an example batch. With it, the output layer is the last layer the forward pass
            calls and "already followed by a norm" means the next layer called is a norm layer;
            without it both are read from the definition order (``named_modules``), which a
            ``forward`` may not follow (a head defined before the body).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class HeadFirst(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.head = nn.Linear(8, 2)
        ...         self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        ...     def forward(self, x):
        ...         return self.head(self.body(x))
        >>> changes = add_normalization(HeadFirst(), data=torch.randn(16, 4))
        >>> sorted(c.layer for c in changes if not c.skipped)
        ['body.0', 'body.2']
    """
    if kind not in ("batch", "layer"):
        raise ConfigError(f"kind={kind!r}: choose 'batch' (BatchNorm) or 'layer' (LayerNorm)")
    modules = dict(model.named_modules())
    order = _call_order(model, data) if data is not None else list(modules)
    layers = _ordered(_weight_layers(model), order)
    normalized_already = _followed_by_norm(modules, order)
    changes = [
        _normalize(model, name, modules[name], kind, name in normalized_already) for name in layers[:-1]
    ]
    if layers:
        last = layers[-1]
        why = BARE_WEIGHTS if _bare(modules[last]) else "the output layer keeps its scale"
        changes.append(Change(Family.NORMALIZATION, last, why, skipped=True))
    return changes


#: Why a module computing with bare weights gets no norm layer.
BARE_WEIGHTS = (
    "its weights are used by functional ops in forward() (op layers): there is no layer module to "
    "follow with a norm; add F.layer_norm / a norm module in the code"
)


def _bare(module: nn.Module) -> bool:
    """Whether ``module`` computes with bare weights of its own (not a torch layer)."""
    return not is_torch_layer(module) and any(True for _ in module.parameters(recurse=False))


def _normalize(model: nn.Module, name: str, module: nn.Module, kind: str, followed: bool) -> Change:
    norm = make_norm(module, kind)
    if norm is None and _bare(module):
        return Change(Family.NORMALIZATION, name, BARE_WEIGHTS, skipped=True)
    if norm is None or followed:
        reason = (
            "already followed by a norm layer" if norm is not None else f"no norm for {type(module).__name__}"
        )
        return Change(Family.NORMALIZATION, name, reason, skipped=True)
    norm.to(next(module.parameters()))  # the device and dtype of the layer
    set_submodule(model, name, nn.Sequential(module, norm).train(module.training))
    return Change(
        Family.NORMALIZATION, name, f"{type(module).__name__} -> {type(module).__name__} + {_describe(norm)}"
    )


def _weight_layers(model: nn.Module) -> list[str]:
    """Layers with parameters of their own that are not norm layers (definition order)."""
    modules = dict(model.named_modules())
    return [
        layer.name
        for layer in find_layers(model)
        if layer.kind == "param" and not isinstance(modules[layer.name], NORM_TYPES)
    ]


def _ordered(names: list[str], order: list[str]) -> list[str]:
    """``names`` in ``order``; names ``order`` lacks (never called) first, so the last is called."""
    rank = {name: i for i, name in enumerate(order)}
    return sorted(names, key=lambda name: rank.get(name, -1))


def _call_order(model: nn.Module, data: Any) -> list[str]:
    """Names of the modules in the order their forward calls finish on ``data`` (first call each)."""
    calls: list[str] = []
    hooks = HookSet()
    for name, module in model.named_modules():
        hooks.add(module.register_forward_hook(lambda m, args, out, name=name: calls.append(name)))
    forward_without_grad(model, data, hooks)
    return list(dict.fromkeys(calls))


def _describe(norm: nn.Module) -> str:
    if isinstance(norm, nn.modules.batchnorm._NormBase):
        kind = "BatchNorm1d" if isinstance(norm, FeatureBatchNorm) else type(norm).__name__
        return f"{kind}({norm.num_features})"
    if isinstance(norm, nn.GroupNorm):
        return f"GroupNorm(1, {norm.num_channels})"
    assert isinstance(norm, nn.LayerNorm)
    return f"LayerNorm({norm.normalized_shape[0]})"


def _followed_by_norm(modules: dict[str, nn.Module], order: list[str]) -> set[str]:
    """Layers whose next module with parameters or statistics (in ``order``) is a norm layer."""
    followed, previous = set(), None
    for name in order:
        module = modules[name]
        if isinstance(module, NORM_TYPES):
            if previous is not None:
                followed.add(previous)
            previous = None
        elif any(True for _ in module.parameters(recurse=False)):
            previous = name
    return followed
