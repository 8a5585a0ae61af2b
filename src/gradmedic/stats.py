"""Pure tensor functions behind every number gradmedic records.

Nothing here keeps state or touches hooks: each function takes tensors and returns a tensor on
the same device, so no value is copied to the host. The monitor and the checkup call them; the
tests compare each one with a plain autograd computation.

Example:
    >>> import torch
    >>> from gradmedic.stats import squared_norms
    >>> [round(v, 4) for v in squared_norms([torch.ones(3), torch.full((2, 2), 2.0)]).tolist()]
    [3.0, 16.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: A unit is "saturated" where its local slope is below this fraction of the activation's
#: largest slope (sigmoid: 0.25, tanh: 1). At 5 %, a signal crossing the unit keeps at most
#: 1/20 of what a unit in the linear regime passes on: two such layers already cost 400x.
SATURATION_SLOPE = 0.05

#: Below this norm, squares of float32 values underflow (the smallest normal float32 is 1.2e-38),
#: so the norm is computed again in float64.
TINY_NORM = 1e-18


def _accumulator(tensor: Tensor) -> torch.dtype:
    """float64 for float64 tensors, else float32 (half-precision sums lose digits fast)."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def squared_norm(tensor: Tensor) -> Tensor:
    """Squared L2 norm of one tensor, as a 0-d float64 tensor on its device.

    Vanishing gradients reach 1e-20 and below, where squaring float32 values underflows to
    zero: on CPU such norms are computed again in float64 (a host check is free there); on an
    accelerator the norm is accumulated in float64 directly, with no host synchronisation.

    Example:
        >>> squared_norm(torch.tensor([3.0, 4.0])).item()
        25.0
        >>> squared_norm(torch.full((4,), 1e-30)).item() > 0
        True
    """
    if tensor.device.type != "cpu":
        return torch.linalg.vector_norm(tensor, dtype=torch.float64).square()
    norm = torch.linalg.vector_norm(tensor, dtype=_accumulator(tensor))
    if norm.item() < TINY_NORM:
        norm = torch.linalg.vector_norm(tensor, dtype=torch.float64)
    return norm.double().square()


def squared_norms(tensors: Sequence[Tensor]) -> Tensor:
    """Squared L2 norm of each tensor, as one 1-D float64 tensor on their device.

    One fused ``torch._foreach_norm`` call (as ``clip_grad_norm_`` does); on CPU the few norms
    below :data:`TINY_NORM` are computed again in float64, as in :func:`squared_norm`.

    Example:
        >>> [round(v, 4) for v in squared_norms([torch.ones(3), torch.full((2, 2), 2.0)]).tolist()]
        [3.0, 16.0]
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    if tensors[0].device.type != "cpu":
        return torch.stack(torch._foreach_norm(list(tensors), 2, dtype=torch.float64)).square()
    if any(t.dtype != _accumulator(t) for t in tensors):  # half precision: accumulate in float32
        return torch.stack([squared_norm(t) for t in tensors])
    norms = torch.stack([n.double() for n in torch._foreach_norm(list(tensors))])
    for index in (norms < TINY_NORM).nonzero().flatten().tolist():
        norms[index] = torch.linalg.vector_norm(tensors[index], dtype=torch.float64)
    return norms.square()


def grouped_sums(values: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """Sum ``values`` into ``n_groups`` bins given by ``groups`` (an index per value).

    Example:
        >>> grouped_sums(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 1, 0]), 3).tolist()
        [5.0, 2.0, 0.0]
    """
    out = torch.zeros(n_groups, dtype=values.dtype, device=values.device)
    return out.index_add_(0, groups.to(values.device), values)


@dataclass(frozen=True)
class SaturationBand:
    """Where an activation is saturated: outputs farther than ``radius`` from ``center``.

    Each band is where the activation's local slope falls below :data:`SATURATION_SLOPE` of
    its maximum, solved for the output ``y``:

    * sigmoid, slope ``y(1-y)`` (max 1/4): ``|y - 1/2| > sqrt(1 - 0.05) / 2``;
    * tanh, slope ``1 - y^2`` (max 1): ``|y| > sqrt(1 - 0.05)``;
    * softsign, slope ``(1 - |y|)^2`` (max 1): ``|y| > 1 - sqrt(0.05)``;
    * hardtanh, ReLU6, hardsigmoid: slope 0 on the clipped values, ``|y - mid| >= half-range``.
    """

    center: float
    radius: float
    inclusive: bool = False


def saturation_band(module: nn.Module) -> SaturationBand | None:
    """The saturation band of an activation module, or ``None`` if it cannot saturate.

    Example:
        >>> saturation_band(nn.Tanh())
        SaturationBand(center=0.0, radius=0.9746794344808963, inclusive=False)
        >>> saturation_band(nn.ReLU()) is None
        True
    """
    edge = math.sqrt(1 - SATURATION_SLOPE)
    if isinstance(module, nn.Sigmoid):
        return SaturationBand(0.5, edge / 2)
    if isinstance(module, nn.Tanh):
        return SaturationBand(0.0, edge)
    if isinstance(module, nn.Softsign):
        return SaturationBand(0.0, 1 - math.sqrt(SATURATION_SLOPE))
    if isinstance(module, nn.Hardsigmoid):
        return SaturationBand(0.5, 0.5, inclusive=True)
    if isinstance(module, nn.ReLU6):
        return SaturationBand(3.0, 3.0, inclusive=True)
    if isinstance(module, nn.Hardtanh):
        low, high = module.min_val, module.max_val
        return SaturationBand((low + high) / 2, (high - low) / 2, inclusive=True)
    return None


def can_die(module: nn.Module) -> bool:
    """Whether a unit of this activation can be dead: output and slope exactly zero.

    Example:
        >>> can_die(nn.ReLU()), can_die(nn.LeakyReLU())
        (True, False)
    """
    return isinstance(module, (nn.ReLU, nn.ReLU6, nn.Threshold, nn.Hardsigmoid))


def saturated_fraction(output: Tensor, band: SaturationBand) -> Tensor:
    """Fraction of output values inside the saturation ``band``.

    Example:
        >>> y = torch.sigmoid(torch.tensor([0.0, 10.0, -10.0, 1.0]))
        >>> saturated_fraction(y, saturation_band(nn.Sigmoid())).item()
        0.5
    """
    distance = (output - band.center).abs_() if band.center else output.abs()
    hits = distance >= band.radius if band.inclusive else distance > band.radius
    return torch.count_nonzero(hits).float() / max(output.numel(), 1)


def dead_fraction(output: Tensor) -> Tensor:
    """Fraction of units that are zero (or below) for every sample of the batch.

    A unit is one position of the output apart from dimension 0, the batch: a feature of an
    MLP, one neuron (channel x position) of a CNN.

    Example:
        >>> dead_fraction(torch.tensor([[0.0, 1.0], [0.0, 0.0]])).item()
        0.5
    """
    zero = output <= 0
    if output.dim() >= 2:
        zero = zero.all(dim=0)
    return torch.count_nonzero(zero).float() / max(zero.numel(), 1)


#: Order of the values returned by :func:`activation_stats`.
ACTIVATION_FIELDS = ("act_mean", "act_std", "act_saturated", "act_dead")


@torch.no_grad()
def activation_stats(output: Tensor, module: nn.Module | None) -> Tensor:
    """Mean, standard deviation (population), saturated and dead fractions of one output.

    The two fractions are NaN where ``module`` cannot saturate or die.

    Example:
        >>> values = activation_stats(torch.tensor([[0.0, 2.0], [0.0, 4.0]]), nn.ReLU()).tolist()
        >>> [round(v, 3) for v in values]
        [1.5, 1.658, nan, 0.5]
    """
    values = output.detach()
    if not values.is_floating_point():
        values = values.float()
    mean, std = mean_std(values)
    nan = torch.full((), float("nan"), device=values.device, dtype=torch.float32)
    band = saturation_band(module) if module is not None else None
    saturated = saturated_fraction(values, band) if band is not None else nan
    dead = dead_fraction(values) if module is not None and can_die(module) else nan
    return torch.stack([mean.float(), std.float(), saturated, dead])


def mean_std(values: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and population standard deviation, two-pass (centred) for accuracy.

    On CPU this is several times faster than ``torch.std_mean``.

    Example:
        >>> [round(v.item(), 4) for v in mean_std(torch.tensor([1.0, 3.0]))]
        [2.0, 1.0]
    """
    mean = values.mean()
    centred = (values - mean).reshape(-1)
    return mean, (squared_norm(centred) / max(centred.numel(), 1)).sqrt()


def underflow_counts(tensors: Sequence[Tensor], threshold: Tensor | float) -> tuple[Tensor, Tensor]:
    """Per tensor, how many non-zero values are below ``threshold`` in magnitude, and how many are non-zero.

    With ``threshold`` the smallest normal number of a low-precision dtype (float16: 6.1e-5),
    the first count is the values that dtype holds only as subnormals (with fewer significant
    bits) or flushes to zero. Exact zeros are left out of both counts: they come from dead units
    or unused embedding rows, not from the dtype.

    Example:
        >>> tiny = torch.finfo(torch.float16).tiny
        >>> under, nonzero = underflow_counts([torch.tensor([0.0, 1e-6, -1e-7, 1.0])], tiny)
        >>> under.tolist(), nonzero.tolist()
        ([2.0], [3.0])
    """
    under = [torch.count_nonzero((t.abs() < threshold) & (t != 0)) for t in tensors]
    nonzero = [torch.count_nonzero(t) for t in tensors]
    return torch.stack(under).double(), torch.stack(nonzero).double()
