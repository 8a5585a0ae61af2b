"""LSUV (Mishkin & Matas, 2016): after an orthogonal init, rescale each layer, in forward order,
until its output has unit variance on a batch of data; optionally centre each output unit first.

One forward pass does it: a hook on each layer measures the output, rescales the layer's weight
(and bias) and hands the rescaled output on, so every later layer is measured on the input it
will see. The output of a Linear/Conv layer is linear in its weight and bias: scaling both (or
a zero bias) makes one rescaling exact; a kept bias that is not scaled takes a few iterations,
on the output already computed.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    >>> _ = rescale_to_unit_variance(model, torch.randn(256, 16), ["0", "2"])
    >>> round(model[0](torch.randn(4096, 16)).var().item(), 1)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .. import registry
from .._deprecation import module_getattr
from ..diagnosis.findings import Family
from ..hooks import HookSet
from ..op_layers import OpLayer, leaf_of, leaf_tensors, op_type, operands
from ..running import forward_without_grad
from .changes import Change

#: Layers LSUV rescales: the registry's weight layers (their output is linear in the weight).
LSUV_LAYER_TYPES = registry.WEIGHT_TYPES
TINY = 1e-12
TOLERANCE = 0.05
MAX_ITERATIONS = 10


def rescale_to_unit_variance(
    model: nn.Module, data: Any, names: list[str], center: bool = False
) -> list[Change]:
    """Scale each layer in ``names`` so that its output has unit variance on ``data``.

    Args:
        center: first shift each layer's bias so that every output unit (channel, for a
            convolution) has mean 0 on ``data``: a layer fed by a sigmoid, whose outputs average
            0.5, then starts where the next sigmoid is steepest. Layers without a bias are only
            rescaled.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 8))
        >>> x = torch.randn(512, 8)
        >>> _ = rescale_to_unit_variance(model, x, ["0", "2"], center=True)
        >>> out = model(x)
        >>> out.mean(dim=0).abs().max().item() < 1e-5, round(out.var().item(), 2)
        (True, 1.0)
    """
    modules = dict(model.named_modules())
    found: dict[str, str] = {}
    hooks = HookSet()
    for name in names:
        if isinstance(modules.get(name), LSUV_LAYER_TYPES):
            hooks.add(modules[name].register_forward_hook(_calibrate(name, center, found)))
    forward_without_grad(model, data, hooks)
    return [
        Change(Family.INIT, name, found[name]) if name in found else _skip(name, modules.get(name))
        for name in names
    ]


def _skip(name: str, module: nn.Module | None) -> Change:
    if not isinstance(module, LSUV_LAYER_TYPES):
        return Change(Family.INIT, name, f"lsuv: no rescaling for {type(module).__name__}", skipped=True)
    return Change(Family.INIT, name, "lsuv: not called in the forward pass on the data", skipped=True)


def _calibrate(name: str, center: bool, found: dict[str, str]) -> Callable[[nn.Module, Any, Any], Any]:
    """A forward hook that rescales its layer on the first call and returns the rescaled output."""

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if name in found or not isinstance(output, Tensor) or not output.is_floating_point():
            return None  # a layer called twice (shared weights) is fitted on its first call
        weight, bias = module.weight, module.bias if isinstance(module.bias, Tensor) else None
        assert isinstance(weight, Tensor)
        shift = _broadcast(module, output, bias) if bias is not None else torch.zeros(())
        product = output - shift  # the weight's part of the output
        if center and bias is not None:
            shift = -_broadcast(module, output, unit_means(module, product))
        scale = _fit_scale(product, shift, scales_shift=center)
        weight.mul_(scale)
        if bias is not None:
            bias.copy_(shift.reshape(-1) * (scale if center else 1.0))
        centred = "each unit centred, " if center and bias is not None else ""
        found[name] = f"lsuv: {centred}scaled to unit output variance"
        return product * scale + shift * (scale if center else 1.0)

    return hook


def _fit_scale(product: Tensor, shift: Tensor, scales_shift: bool) -> float:
    """The factor for the weight that gives ``product * s + shift`` (or ``(product + shift) * s``
    when the shift scales too) unit variance."""
    if scales_shift:
        variance = (product + shift).var().item()
        return variance**-0.5 if variance > TINY else 1.0
    scale = 1.0
    for _ in range(MAX_ITERATIONS):  # a fixed bias: the variance is not quadratic in the scale
        current = (product * scale + shift).var().item()
        if not current > TINY or abs(current - 1) < TOLERANCE / 10:
            break
        scale /= current**0.5
    return scale


def unit_means(module: nn.Module, output: Tensor) -> Tensor:
    """The mean of each output unit of ``module`` (a channel, for a convolution) over the batch and
    positions: one value per unit, shaped like the bias.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> unit_means(nn.Conv2d(1, 3, 1), torch.arange(3.0).reshape(1, 3, 1, 1).expand(2, 3, 4, 4))
        tensor([0., 1., 2.])
    """
    channel = _channel_dim(module, output)
    return output.transpose(0, channel).reshape(output.shape[channel], -1).mean(dim=1)


def _channel_dim(module: nn.Module, output: Tensor) -> int:
    if isinstance(module, registry.CONV_TYPES):  # [N, C, *spatial] or unbatched [C, *spatial]
        return output.dim() - len(module.kernel_size) - 1
    return output.dim() - 1


def _broadcast(module: nn.Module, output: Tensor, values: Tensor) -> Tensor:
    """``values`` (one per unit) shaped to broadcast against ``output``."""
    shape = [1] * output.dim()
    shape[_channel_dim(module, output)] = -1
    return values.reshape(shape)


def rescale_op_layers(model: nn.Module, data: Any, ops: list[OpLayer], center: bool = False) -> list[Change]:
    """:func:`rescale_to_unit_variance` for op layers (bare weights, see :mod:`gradmedic.op_layers`).

    The op's output (its weight's part) is rescaled when the op is called, and the bias, whether
    the op adds it (``F.linear(x, W, b)``) or the code does right after (``x @ W + b``), is set
    the same way as a module's.

    Example:
        >>> from gradmedic.op_layers import discover_on
        >>> class Bare(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.W = nn.Parameter(torch.randn(16, 16) * 3)
        ...         self.b = nn.Parameter(torch.zeros(16))
        ...     def forward(self, x):
        ...         return x @ self.W + self.b
        >>> model, x = Bare(), torch.randn(512, 16)
        >>> [c.action for c in rescale_op_layers(model, x, discover_on(model, x).layers)]
        ['lsuv: scaled to unit output variance']
        >>> round(model(x).var().item(), 2)
        1.0
    """
    calibrator = _OpCalibrator(leaf_tensors(model), ops, center)
    with calibrator:
        forward_without_grad(model, data)
    return [
        Change(Family.INIT, op.name, calibrator.found[op.name])
        if op.name in calibrator.found
        else Change(Family.INIT, op.name, f"lsuv: no rescaling for a {op.type} op layer", skipped=True)
        for op in ops
    ]


class _OpCalibrator(TorchFunctionMode):
    """Rescales each op layer's weight (and bias) at its first call, and hands the result on."""

    def __init__(self, tensors: dict[str, Tensor], ops: list[OpLayer], center: bool) -> None:
        super().__init__()
        self._ops = {id(tensors[op.name]): op for op in ops if op.type in CALIBRATED_OPS}
        self._tensors = tensors
        self._center = center
        self.found: dict[str, str] = {}

    def __torch_function__(
        self, func: Callable[..., Any], types: object, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if op_type(getattr(func, "__name__", ""), args) is None or not isinstance(result, Tensor):
            return result
        given = [leaf_of(t) for _, t in operands(args, kwargs)]
        op = next((self._ops[id(t)] for t in given if id(t) in self._ops), None)
        if op is None or op.name in self.found:
            return result
        inside = any(id(t) in {id(b) for b in self._biases(op)} for t in given)
        left = (
            getattr(func, "__name__", "") in ("matmul", "__matmul__", "mm")
            and given[0] is self._tensors[op.name]
        )
        unit = 1 if op.type.startswith("conv") else result.dim() - (2 if left else 1)  # W @ x: units are rows
        return self._rescale(op, result, inside, unit)

    def _biases(self, op: OpLayer) -> list[Tensor]:
        return [self._tensors[name] for name in op.leaves[1:] if self._tensors[name].dim() == 1]

    def _rescale(self, op: OpLayer, output: Tensor, bias_inside: bool, unit: int) -> Tensor:
        biases = self._biases(op)
        bias = biases[0] if biases else None
        shape = [1] * output.dim()
        shape[unit] = -1
        inside = bias.reshape(shape) if bias is not None and bias_inside else torch.zeros(())
        product = output - inside
        shift = bias.reshape(shape) if bias is not None else torch.zeros(())
        if self._center and bias is not None:
            shift = -product.transpose(0, unit).reshape(output.shape[unit], -1).mean(dim=1).reshape(shape)
        scale = _fit_scale(product, shift, scales_shift=self._center)
        self._tensors[op.name].mul_(scale)
        if bias is not None:
            bias.copy_(shift.reshape(-1) * (scale if self._center else 1.0))
        centred = "each unit centred, " if self._center and bias is not None else ""
        self.found[op.name] = f"lsuv: {centred}scaled to unit output variance"
        if bias is not None and bias_inside:
            return product * scale + shift * (scale if self._center else 1.0)
        return product * scale  # the code adds the bias (now set) itself


#: Op layers whose output is linear in their weight (see :data:`LSUV_LAYER_TYPES`).
CALIBRATED_OPS = ("matmul", "linear", "addmm", "conv1d", "conv2d", "conv3d")


# Old names, kept for one release (see gradmedic._deprecation).
__getattr__ = module_getattr(
    __name__,
    {
        "CALIBRATED": ("LSUV_LAYER_TYPES", lambda: LSUV_LAYER_TYPES),
    },
)
