"""Pure tensor functions behind every number gradmedic records.

Nothing here keeps state or touches hooks: each function takes tensors and returns a tensor on
the same device, so no value is copied to the host and, on an accelerator, the host never waits
for the device (:func:`host_activation_stats`, for CPU tensors only, returns Python floats). On
CPU a few functions read a value to choose a path (a norm small enough to have underflowed): the
value is in host memory already, so that costs no synchronisation. The monitor and the checkup
call them; the tests compare each one with a plain autograd computation.

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

from . import registry

# the saturation vocabulary lives in the registry; re-exported here, where the statistics use it
from .registry import SATURATION_SLOPE as SATURATION_SLOPE
from .registry import SaturationBand as SaturationBand

#: Below this norm, squares of float32 values underflow (the smallest normal float32 is 1.2e-38),
#: so on CPU the norm is computed again in float64.
TINY_NORM = 1e-18


def _accumulator(tensor: Tensor) -> torch.dtype:
    """float64 for float64 tensors, else float32 (half-precision sums lose digits fast)."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


#: Dtypes whose norm is accumulated in their own precision on CPU.
_NATIVE = (torch.float32, torch.float64)


def _wide(device: torch.device) -> torch.dtype:
    """The dtype accelerators accumulate squares in: float64 (float32 on MPS, which has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


def norm(tensor: Tensor) -> Tensor:
    """L2 norm of one tensor, as a 0-d tensor on its device that has not underflowed.

    Vanishing gradients reach 1e-20 and below, where squaring float32 values underflows to
    zero. On an accelerator the squares are accumulated in float64 inside one fused
    ``torch._foreach_norm`` kernel (no copy of the tensor, no host synchronisation): the result
    is float64. On CPU the float32 norm is read (the value is already in host memory: no
    synchronisation) and, in the rare case it is below :data:`TINY_NORM`, computed again in
    float64; the result is float32 or float64.

    Example:
        >>> norm(torch.tensor([3.0, 4.0])).item()
        5.0
        >>> norm(torch.full((4,), 1e-30)).item() > 0
        True
    """
    if not tensor.is_cpu:
        return torch._foreach_norm([tensor], 2, dtype=_wide(tensor.device))[0]
    if tensor.dtype in _NATIVE:
        square = native_squared_norm(tensor)
        if square.item() < TINY_NORM * TINY_NORM:
            return torch.linalg.vector_norm(tensor, dtype=torch.float64)
        return square.sqrt()
    value = torch.linalg.vector_norm(tensor, dtype=torch.float32)
    if value.item() < TINY_NORM:
        return torch.linalg.vector_norm(tensor, dtype=torch.float64)
    return value


def native_squared_norm(tensor: Tensor) -> Tensor:
    """Squared L2 norm of a float32 or float64 CPU tensor, accumulated in its own dtype.

    It goes through BLAS, ``dot(x, x)`` on the contiguous values: one read on every thread, where
    ``torch.linalg.vector_norm`` (and ``torch._foreach_norm``, a loop of it on CPU) runs on one
    thread: on 2 threads, 1.6x faster on 65k values and 2.4x on 1M. Its rounding is no worse
    (relative error below 1e-5 against float64 on 1M normal values, vector_norm's 2e-5; on a
    strided tensor, both vector_norm and a strided dot reach 2e-4, so such a tensor is copied
    first), and it overflows and underflows where vector_norm does (callers check
    :data:`TINY_NORM`). Its last digits depend on the thread count, as any parallel sum's do.

    Example:
        >>> native_squared_norm(torch.tensor([[3.0], [4.0]])).item()
        25.0
    """
    if tensor.numel() == 0:
        return tensor.new_zeros(())
    flat = tensor.contiguous().view(-1)  # a strided tensor is copied: strided sums lose digits
    return torch.dot(flat, flat)


def _cpu_squared_norms(tensors: Sequence[Tensor]) -> Tensor:
    """:func:`native_squared_norm` of float32/float64 CPU tensors, as float64; the few that
    underflowed (a norm below :data:`TINY_NORM`) computed again in float64."""
    squares = torch.stack([native_squared_norm(t) for t in tensors]).double()
    tiny = squares < TINY_NORM * TINY_NORM
    if tiny.any():
        for index in tiny.nonzero().flatten().tolist():
            squares[index] = torch.linalg.vector_norm(tensors[index], dtype=torch.float64).square()
    return squares


def squared_norm(tensor: Tensor) -> Tensor:
    """Squared L2 norm of one tensor, as a 0-d float64 tensor on its device (see :func:`norm`).

    Example:
        >>> squared_norm(torch.tensor([3.0, 4.0])).item()
        25.0
        >>> squared_norm(torch.full((4,), 1e-30)).item() > 0
        True
    """
    return norm(tensor).double().square()


def norms(tensors: Sequence[Tensor]) -> Tensor:
    """L2 norm of each tensor, as one 1-D float64 tensor on their device.

    On an accelerator, one fused ``torch._foreach_norm`` call (as ``clip_grad_norm_`` does) that
    accumulates the squares in float64 in the kernel. On CPU each square is
    :func:`native_squared_norm`, and one check on the stacked squares (host memory: no
    synchronisation) finds the few whose norm is below :data:`TINY_NORM`, which are computed
    again in float64. A sparse tensor (the gradient of ``nn.Embedding(sparse=True)``) counts by
    its coalesced values; coalescing it on a GPU waits for the device.

    Example:
        >>> [round(v, 4) for v in norms([torch.ones(4), torch.full((2, 2), 2.0)]).tolist()]
        [2.0, 4.0]
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.float64)
    tensors = [dense_values(t) for t in tensors]
    if not tensors[0].is_cpu:
        return torch.stack(torch._foreach_norm(tensors, 2, dtype=_wide(tensors[0].device))).double()
    if not {t.dtype for t in tensors}.issubset(_NATIVE):  # half precision: accumulate in float32
        return torch.stack([norm(t) for t in tensors]).double()
    return _cpu_squared_norms(tensors).sqrt_()


def dense_values(tensor: Tensor) -> Tensor:
    """``tensor``, or for a sparse one its coalesced values (duplicate indices summed): the same
    norm, the same non-zero values.

    Example:
        >>> grad = torch.sparse_coo_tensor([[0, 0, 2]], [1.0, 2.0, 4.0], (3,))  # index 0 twice
        >>> dense_values(grad).tolist()
        [3.0, 4.0]
    """
    return tensor.coalesce().values() if tensor.is_sparse else tensor


def squared_norms(tensors: Sequence[Tensor]) -> Tensor:
    """Squared L2 norm of each tensor, as one 1-D float64 tensor on their device (see :func:`norms`).

    Example:
        >>> [round(v, 4) for v in squared_norms([torch.ones(3), torch.full((2, 2), 2.0)]).tolist()]
        [3.0, 16.0]
    """
    dense = [dense_values(t) for t in tensors]
    if dense and all(t.is_cpu and t.dtype in _NATIVE for t in dense):
        return _cpu_squared_norms(dense)
    return norms(dense).square_()


def grouped_sums(values: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """Sum ``values`` into ``n_groups`` bins given by ``groups`` (an index per value).

    Example:
        >>> grouped_sums(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 1, 0]), 3).tolist()
        [5.0, 2.0, 0.0]
    """
    out = torch.zeros(n_groups, dtype=values.dtype, device=values.device)
    return out.index_add_(0, groups.to(values.device), values)


def saturation_band(module: nn.Module) -> SaturationBand | None:
    """The saturation band of an activation module, or ``None`` if it cannot saturate (read from
    :mod:`gradmedic.registry`, where each band is derived).

    Example:
        >>> saturation_band(nn.Tanh())
        SaturationBand(center=0.0, radius=0.9746794344808963, inclusive=False)
        >>> saturation_band(nn.ReLU()) is None
        True
    """
    activation = registry.activation_of(module)
    return activation.band_of(module) if activation is not None else None


def can_die(module: nn.Module) -> bool:
    """Whether a unit of this activation can be dead: output and slope exactly zero.

    Example:
        >>> can_die(nn.ReLU()), can_die(nn.LeakyReLU())
        (True, False)
    """
    activation = registry.activation_of(module)
    return activation is not None and activation.can_die


def saturated_fraction(output: Tensor, band: SaturationBand) -> Tensor:
    """Fraction of output values inside the saturation ``band``.

    Example:
        >>> y = torch.sigmoid(torch.tensor([0.0, 10.0, -10.0, 1.0]))
        >>> saturated_fraction(y, saturation_band(nn.Sigmoid())).item()
        0.5
    """
    return _saturated_count(output, band).float() / max(output.numel(), 1)


def _saturated_count(output: Tensor, band: SaturationBand, scratch: Tensor | None = None) -> Tensor:
    """Values outside ``center +- radius``, compared with the two edges (no rounded distance:
    ``|y - 3| >= 3`` would count a ReLU6 output of 1e-7 as saturated in float32).

    The comparisons write 0/1 into a float32 scratch tensor that is summed: on CPU that runs
    several times faster than comparisons into a bool tensor and ``count_nonzero``. A float32
    band centred on 0 (tanh, softsign) compares ``|y|`` (exact) with one edge instead. ``scratch``
    (a float32 tensor on the same device, of the output's shape or at least as large) saves
    allocating it.
    """
    low, high = band.center - band.radius, band.center + band.radius
    scratch = _scratch_like(output, scratch)
    if band.center == 0 and output.dtype == torch.float32:  # |y| is exact: one comparison, one sum
        magnitude = torch.abs(output, out=scratch)
        compare = torch.ge if band.inclusive else torch.gt
        return _ones(compare(magnitude, high, out=scratch))
    if band.inclusive:
        below = _ones(torch.le(output, low, out=scratch))
        return below + _ones(torch.ge(output, high, out=scratch))
    below = _ones(torch.lt(output, low, out=scratch))
    return below + _ones(torch.gt(output, high, out=scratch))


def _ones(mask: Tensor) -> Tensor:
    """How many ones a float32 0/1 tensor holds: on CPU ``dot(mask, mask)`` by BLAS (on every
    thread; a 0/1 square is itself), elsewhere its sum."""
    return native_squared_norm(mask) if mask.is_cpu else mask.sum()


def _scratch_like(output: Tensor, scratch: Tensor | None) -> Tensor:
    """A float32 tensor shaped like ``output``: a view of ``scratch`` when it fits, else a new one."""
    if scratch is not None and scratch.device == output.device:
        if scratch.shape == output.shape:
            return scratch
        if scratch.numel() >= output.numel():
            return scratch.view(-1)[: output.numel()].view(output.shape)
    return torch.empty(output.shape, dtype=torch.float32, device=output.device)


def dead_fraction(output: Tensor) -> Tensor:
    """Fraction of units that are zero (or below) for every sample of the batch.

    A unit is one position of the output apart from dimension 0, the batch: a feature of an
    MLP, one neuron (channel x position) of a CNN.

    Example:
        >>> dead_fraction(torch.tensor([[0.0, 1.0], [0.0, 0.0]])).item()
        0.5
    """
    count, units = _dead_count(output)
    return count.float() / units


def _dead_count(output: Tensor) -> tuple[Tensor, int]:
    """Dead units (largest value over the batch at most 0) and the number of units."""
    top = output.amax(dim=0) if output.dim() >= 2 and output.shape[0] > 0 else output
    return torch.count_nonzero(top <= 0), max(top.numel(), 1)


#: Order of the values returned by :func:`activation_stats`.
ACTIVATION_FIELDS = ("act_mean", "act_std", "act_saturated", "act_dead")


@dataclass(frozen=True)
class ActivationKind:
    """What :func:`activation_stats` measures on a module's output: its saturation band (None:
    it cannot saturate) and whether its units can die."""

    band: SaturationBand | None = None
    dies: bool = False


def activation_kind(module: nn.Module | None) -> ActivationKind:
    """The :class:`ActivationKind` of ``module`` (``None``: a layer that is not an activation).

    Example:
        >>> activation_kind(nn.ReLU())
        ActivationKind(band=None, dies=True)
    """
    if module is None:
        return ActivationKind()
    return ActivationKind(saturation_band(module), can_die(module))


def activation_stats(output: Tensor, module: nn.Module | ActivationKind | None) -> Tensor:
    """Mean, standard deviation (population), saturated and dead fractions of one output.

    The two fractions are NaN where ``module`` cannot saturate or die; ``module`` may also be
    its :class:`ActivationKind`, found once with :func:`activation_kind`. The result is a
    float32 tensor of 4 values on the output's device (on CPU, see :func:`host_activation_stats`).

    Example:
        >>> values = activation_stats(torch.tensor([[0.0, 2.0], [0.0, 4.0]]), nn.ReLU()).tolist()
        >>> [round(v, 3) for v in values]
        [1.5, 1.658, nan, 0.5]
    """
    kind = module if isinstance(module, ActivationKind) else activation_kind(module)
    values = _float_values(output)
    if values.is_cpu:
        return torch.tensor(host_activation_stats(values, kind), dtype=torch.float32)
    return device_activation_stats(values, kind)


def device_activation_stats(output: Tensor, kind: ActivationKind, nan: Tensor | None = None) -> Tensor:
    """:func:`activation_stats` in a few kernels that never wait for the host: what runs on an
    accelerator (on CPU tensors it gives the same numbers as :func:`host_activation_stats`).

    ``nan``, a 0-d float32 NaN on the output's device, fills the fractions that do not apply
    (made here if not given). See :func:`device_activation_rows`, which this calls.

    Example:
        >>> row = device_activation_stats(torch.tensor([[0.0, 2.0], [0.0, 4.0]]), activation_kind(nn.ReLU()))
        >>> [round(v, 3) for v in row.tolist()]
        [1.5, 1.658, nan, 0.5]
    """
    return device_activation_rows(output.unsqueeze(0), kind, nan)[0]


def device_activation_rows(stacked: Tensor, kind: ActivationKind, nan: Tensor | None = None) -> Tensor:
    """:func:`device_activation_stats` of several outputs of one shape and dtype at once.

    ``stacked`` holds the outputs along a new first dimension; the result has a row of 4 values
    per output. Each statistic is one reduction over all the rows: one ``torch.std_mean``, the
    saturated or dead fraction as the mean of 0/1 comparisons written into a float32 buffer (so
    no division is launched), one stack, whatever the number of outputs.

    Example:
        >>> outputs = torch.stack([torch.tensor([[0.0, 2.0], [0.0, 4.0]]), torch.ones(2, 2)])
        >>> rows = device_activation_rows(outputs, activation_kind(nn.ReLU())).tolist()
        >>> [[round(v, 3) for v in row] for row in rows]
        [[1.5, 1.658, nan, 0.5], [1.0, 0.0, nan, 0.0]]
    """
    values = _float_values(stacked)
    count = values.shape[0]
    flat = values.reshape(count, -1)
    std, mean = torch.std_mean(flat, dim=1, correction=0)
    if nan is None:
        nan = torch.full((), math.nan, device=values.device, dtype=torch.float32)
    nans = nan.expand(count)
    saturated = _saturated_share(flat, kind.band) if kind.band is not None else nans
    dead = _dead_share(values) if kind.dies else nans
    return torch.stack([mean.float(), std.float(), saturated, dead], dim=1)


def _saturated_share(rows: Tensor, band: SaturationBand) -> Tensor:
    """Per row, the saturated fraction as the mean of the 0/1 comparisons of :func:`_saturated_count`."""
    low, high = band.center - band.radius, band.center + band.radius
    scratch = _scratch_like(rows, None)
    if band.center == 0 and rows.dtype == torch.float32:
        compare = torch.ge if band.inclusive else torch.gt
        return compare(torch.abs(rows, out=scratch), high, out=scratch).mean(dim=1)
    below, above = (torch.le, torch.ge) if band.inclusive else (torch.lt, torch.gt)
    return below(rows, low, out=scratch).mean(dim=1) + above(rows, high, out=scratch).mean(dim=1)


def _dead_share(stacked: Tensor) -> Tensor:
    """Per output along dimension 0, the dead fraction as the mean of 0/1 values: the units whose
    largest value over the batch (dimension 1) is at most 0."""
    batched = stacked.dim() >= 3 and stacked.shape[1] > 0
    top = stacked.amax(dim=1) if batched else stacked
    dead = torch.le(top, 0, out=torch.empty(top.shape, dtype=torch.float32, device=top.device))
    return dead.reshape(stacked.shape[0], -1).mean(dim=1)


def host_activation_stats(output: Tensor, kind: ActivationKind, scratch: Tensor | None = None) -> list[float]:
    """:func:`activation_stats` of a CPU tensor as four Python floats.

    The values are in host memory: reading the sums costs no synchronisation, and no tensor is
    made for the result (the monitor makes one per step for every layer). ``scratch`` is as in
    the saturation count: a float32 CPU tensor to reuse.

    Example:
        >>> host_activation_stats(torch.tensor([[0.0, 2.0], [0.0, 4.0]]), activation_kind(nn.ReLU()))[3]
        0.5
    """
    values = _float_values(output)
    mean, std = _host_mean_std(values)
    saturated = dead = math.nan
    if kind.band is not None:
        saturated = _saturated_count(values, kind.band, scratch).item() / max(values.numel(), 1)
    if kind.dies:
        count, units = _dead_count(values)
        dead = count.item() / units
    return [mean, std, saturated, dead]


def _float_values(output: Tensor) -> Tensor:
    values = output.detach()
    return values if values.is_floating_point() else values.float()


def mean_std(values: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and population standard deviation, in one pass over ``values`` and without a copy.

    On an accelerator this is ``torch.var_mean`` (Welford's update: one pass, stable). On CPU,
    where that kernel is several times slower, it is the sum and the norm of the values,
    ``var = E[x^2] - mean^2``; when that difference cancels (the spread is small next to the
    values' size: :data:`CANCELLATION`), the centred two-pass formula is used instead.

    Example:
        >>> [round(v.item(), 4) for v in mean_std(torch.tensor([1.0, 3.0]))]
        [2.0, 1.0]
    """
    if not values.is_cpu:
        var, mean = torch.var_mean(values, correction=0)
        return mean, var.sqrt()
    host_mean, host_std = _host_mean_std(values)
    dtype = _accumulator(values)
    return torch.tensor(host_mean, dtype=dtype), torch.tensor(host_std, dtype=dtype)


#: The one-pass variance ``E[x^2] - mean^2`` is trusted when it keeps at least this fraction of
#: ``E[x^2]``: float32 sums then leave it a relative error below 1e-5.
CANCELLATION = 0.01


def _host_mean_std(values: Tensor) -> tuple[float, float]:
    """Mean and population std of a CPU tensor as Python floats (see :func:`mean_std`)."""
    count = max(values.numel(), 1)
    native = values.dtype in _NATIVE
    mean = (values.sum() if native else values.sum(dtype=torch.float32)).item() / count
    if native:
        square = native_squared_norm(values).item()
    else:
        root = norm(values).item()
        square = root * root
    if square < TINY_NORM * TINY_NORM:  # the float32 squares underflowed
        square = torch.linalg.vector_norm(values, dtype=torch.float64).item() ** 2
    square_mean = square / count
    var = square_mean - mean * mean
    if not var >= CANCELLATION * square_mean:  # cancelled, or not finite
        return mean, _centred_std(values, mean, count) if math.isfinite(mean) else math.nan
    return mean, math.sqrt(var)


def _centred_std(values: Tensor, mean: float, count: int) -> float:
    """Two passes: the values minus the mean (rounded to their dtype), then the spread of that,
    corrected for what the rounding of the mean left in it."""
    centred = (values - mean).reshape(-1)
    offset = centred.sum(dtype=_accumulator(centred)).item() / count
    return math.sqrt(max(squared_norm(centred).item() / count - offset * offset, 0.0))


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
    tensors = [dense_values(t) for t in tensors]
    under = [torch.count_nonzero((t.abs() < threshold) & (t != 0)) for t in tensors]
    nonzero = [torch.count_nonzero(t) for t in tensors]
    return torch.stack(under).double(), torch.stack(nonzero).double()
