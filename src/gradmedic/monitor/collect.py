"""The statistics of one recorded step, assembled on the device into a :class:`StepRecord`.

The :class:`Collector` takes what the probes left (the output gradients held by the
:class:`~gradmedic._signal_buffer.SignalBuffer`, the activation rows) and the parameters'
gradients, and puts per-layer and per-parameter rows into the step's record: the backprop
signal and the weight-gradient norms from one fused norm call, the activation statistics, the
gradient underflow of a low-precision run, and the update ratio across the optimizer's step.
Nothing here waits for the device; gradients still scaled by a GradScaler are unscaled through
:class:`~gradmedic.monitor.amp.Scaler`. Under FSDP2 (``fully_shard``) it measures this rank's
shards and queues their sums of squares on a :class:`~gradmedic.monitor.fsdp.ShardSums`, which
adds them up over the mesh when the step closes, then puts the exact rows.

Example:
    >>> import torch
    >>> from gradmedic.layers import LayerInfo
    >>> from gradmedic.monitor.amp import Scaler
    >>> from gradmedic.monitor.flush import StepRecord
    >>> w = torch.nn.Parameter(torch.ones(2, 2))
    >>> collector = Collector([LayerInfo("0", "Linear", "param", ["0.weight"])], Scaler(None, None))
    >>> collector.bind([w], [0], [])
    >>> w.grad = torch.full((2, 2), 2.0)
    >>> record = StepRecord(0)
    >>> collector.put_gradients(record)
    >>> record.values["weight_grad_norm"].tolist()
    [4.0]
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import stats
from .._activation_buffer import COPY_BELOW_BYTES, ActivationBuffer
from .._signal_buffer import SignalBuffer, SignalNorms
from ..layers import LayerInfo
from . import fsdp
from .amp import Scaler
from .flush import StepRecord
from .step_state import StepState

#: How many small constants (index tensors, masks) a collector keeps before it starts over.
CACHE_SIZE = 256

#: The observed mask of a one-column metric (the loss).
ONE = np.ones(1, dtype=bool)
ONE.flags.writeable = False


class Collector:
    """Assembles the rows of a recorded step from the probes' buffers and the gradients.

    Args:
        layers: the monitor's layers (the same list: op layers found later appear in it).
        scaler: the run's GradScaler, if any, seen through :class:`~gradmedic.monitor.amp.Scaler`.
        shards: the sums over shards of a model sharded by ``fully_shard`` (FSDP2), else ``None``.
    """

    def __init__(self, layers: list[LayerInfo], scaler: Scaler, shards: fsdp.ShardSums | None = None) -> None:
        self.layers = layers
        self.scaler = scaler
        self.shards = shards
        self.signal = SignalBuffer()  #: output gradients held through the backward pass
        self.act_copies = ActivationBuffer()  #: small accelerator outputs, measured together
        self.params: list[Tensor] = []  # the parameters, then the op layers' other leaf tensors
        self.param_layer: list[int] = []  # per parameter, the column of its layer
        self.kinds: list[stats.ActivationKind] = []  # per layer, how its activations saturate
        self.snapshot = False  # whether ``weights`` holds the weights before this update
        self.weights = WeightCopy()
        self._constants: dict[tuple[Any, ...], Tensor] = {}
        self._masks: dict[tuple[Any, ...], Any] = {}
        self._scratch: Tensor | None = None
        self._scratch_views: dict[torch.Size, Tensor] = {}

    def bind(self, params: list[Tensor], param_layer: list[int], kinds: list[stats.ActivationKind]) -> None:
        """The tensors measured from now on (at attach, and again when op layers are found)."""
        self.params, self.param_layer, self.kinds = params, param_layer, kinds
        self._constants = {}

    def clear(self) -> None:
        """Forget what the probes left for the step (a new step opens)."""
        self.signal.clear()  # gradients held mid-step (with create_graph, they hold the graph)
        self.act_copies.clear()

    def release(self) -> None:
        """Drop every reference to the model's tensors (the monitor detaches)."""
        self.clear()
        self.params, self.snapshot, self.weights = [], False, WeightCopy()
        self._constants, self._scratch, self._scratch_views = {}, None, {}

    # -- sharded parameters (FSDP2) --------------------------------------------------------

    def grads(self) -> list[Tensor | None]:
        """The parameters' gradients (under FSDP, this rank's shards of them)."""
        if self.shards is None:
            return [p.grad for p in self.params]
        return fsdp.local_grads(self.params)

    def _weight_tensors(self) -> list[Tensor]:
        """The parameters (under FSDP, this rank's shards of them)."""
        return self.params if self.shards is None else fsdp.local_params(self.params)

    def _over_shards(self, then: functools.partial[None], *sums: Tensor) -> None:
        """``then(*sums)`` now; under FSDP with ``sums`` summed over the ranks' shards, at the close."""
        if self.shards is None:
            then(*sums)
        else:
            self.shards.queue(then, *sums)

    # -- backprop signal and weight gradients ----------------------------------------------

    def put_gradients(self, record: StepRecord) -> None:
        """The backprop signal and the weight-gradient norms, from one fused norm call for both."""
        grads = self.grads()
        with_grad = tuple(i for i, g in enumerate(grads) if g is not None)
        present = grads if len(with_grad) == len(grads) else [grads[i] for i in with_grad]
        taken = self.signal.take(extra=present)  # type: ignore[arg-type]
        n = len(self.layers)
        if taken.norms is None:  # no gradient anywhere: a signal row that observes no layer
            zeros = torch.zeros(n, dtype=torch.float64)
            record.put("signal_norm", zeros, self.layer_mask(()))
            record.put("signal_rms", zeros, self.layer_mask(()))
            return
        squares = self._unscaled_squares(taken.norms.square(), len(taken.layers))
        bins = (*taken.layers, *(n + self.param_layer[i] for i in with_grad))  # signal, then weights
        sums = stats.grouped_sums(squares, self.constant(bins, torch.long, squares.device), 2 * n)
        self._put_signal(record, taken, sums[:n])
        if with_grad:
            self._put_weight_grads(record, taken, squares, sums[n:], with_grad)

    def _put_signal(self, record: StepRecord, taken: SignalNorms, sums: Tensor) -> None:
        """Per layer, the norm and RMS of the gradients at its outputs (several calls add up)."""
        numel = [0] * len(self.layers)
        for layer, count in zip(taken.layers, taken.numels):
            numel[layer] += count
        counts = self.constant(tuple(max(c, 1) for c in numel), torch.float64, sums.device)
        observed = self.layer_mask(tuple(i for i, c in enumerate(numel) if c > 0))
        record.put("signal_norm", sums.sqrt(), observed)
        record.put("signal_rms", sums.div_(counts).sqrt_(), observed)

    def _put_weight_grads(
        self,
        record: StepRecord,
        taken: SignalNorms,
        squares: Tensor,
        sums: Tensor,
        with_grad: tuple[int, ...],
    ) -> None:
        """Per parameter and per layer (``sums``), the weight-gradient norm."""
        signals = len(taken.layers)
        assert taken.norms is not None
        if self.shards is not None:  # squares of local shards: summed over the ranks first
            self.shards.queue(functools.partial(self._put_shard_grads, record, with_grad), squares[signals:])
            return
        per_param = squares[signals:].sqrt() if self.scaler.active else taken.norms[signals:]
        self._put_grad_norms(record, per_param, sums, with_grad)

    def _put_shard_grads(self, record: StepRecord, with_grad: tuple[int, ...], squares: Tensor) -> None:
        """FSDP: the weight-gradient norms from the squared norms of the parameters' gradients."""
        groups = self.constant(tuple(self.param_layer[i] for i in with_grad), torch.long, squares.device)
        sums = stats.grouped_sums(squares, groups, len(self.layers))
        self._put_grad_norms(record, squares.sqrt(), sums, with_grad)

    def _put_grad_norms(
        self, record: StepRecord, per_param: Tensor, sums: Tensor, with_grad: tuple[int, ...]
    ) -> None:
        """Record the norms per parameter (``per_param``, of those in ``with_grad``) and per layer."""
        if len(with_grad) < len(self.params):  # zeros where there is no gradient (masked out)
            where = self.constant(with_grad, torch.long, per_param.device)
            per_param = per_param.new_zeros(len(self.params)).index_copy_(0, where, per_param)
        observed_params, observed_layers = self._grad_masks(with_grad)
        record.put("param_grad_norm", per_param, observed_params)
        record.put("weight_grad_norm", sums.sqrt(), observed_layers)

    def _unscaled_squares(self, squares: Tensor, signals: int) -> Tensor:
        """``squares`` (the signal's first ``signals``, then the weight gradients') divided by the
        square of the GradScaler's scale where the gradients are still scaled."""
        if not self.scaler.active:
            return squares
        squares[:signals] = self.scaler.unscaled(squares[:signals])  # the backward pass ran scaled
        squares[signals:] = self.scaler.unscaled(squares[signals:], self.scaler.grads_scaled())
        return squares

    def put_underflow(self, record: StepRecord, low_dtype: torch.dtype) -> None:
        """Per layer, the fraction of non-zero weight-gradient values below the low dtype's smallest normal.

        Measured on the values as the backward pass made them (scaled by the GradScaler's
        scale), so a gradient already unscaled is compared with ``tiny / scale``.
        """
        all_grads = self.grads()
        with_grad = [i for i, g in enumerate(all_grads) if g is not None and g.is_floating_point()]
        if not with_grad:
            return
        grads = [all_grads[i] for i in with_grad]
        tiny: Tensor | float = torch.finfo(low_dtype).tiny
        scale = self.scaler.scale()
        if scale is not None and not self.scaler.grads_scaled():
            tiny = torch.finfo(low_dtype).tiny / scale.to(grads[0].device, torch.float32)  # type: ignore[union-attr]
        under, nonzero = stats.underflow_counts(grads, tiny)  # type: ignore[arg-type]
        groups = self.constant(tuple(self.param_layer[i] for i in with_grad), torch.long, under.device)
        n = len(self.layers)
        under, nonzero = stats.grouped_sums(under, groups, n), stats.grouped_sums(nonzero, groups, n)
        observed = np.zeros(n, dtype=bool)
        observed[[self.param_layer[i] for i in with_grad]] = True
        self._over_shards(functools.partial(_put_underflow_fraction, record, observed), under, nonzero)

    # -- activations -----------------------------------------------------------------------

    def observe_activation(self, state: StepState, index: int, output: Tensor) -> None:
        """Activation statistics of one call, by the path :func:`activation_path` chooses."""
        kind = self.kinds[index]
        path = activation_path(output)
        if path == "copied":
            self.act_copies.add(index, output, kind)
        elif path == "at once":
            nan = self.constant((math.nan,), torch.float32, output.device).view(())
            state.acts.setdefault(index, []).append(stats.device_activation_stats(output, kind, nan))
        else:
            scratch = self._scratch_for(output) if kind.band is not None else None
            state.acts.setdefault(index, []).append(stats.host_activation_stats(output, kind, scratch))

    def _scratch_for(self, output: Tensor) -> Tensor:
        """A float32 CPU buffer shaped like ``output`` for the saturation count, kept between calls:
        one flat buffer as large as the largest output, and a view of it per shape."""
        view = self._scratch_views.get(output.shape)
        if view is not None:
            return view
        if self._scratch is None or self._scratch.numel() < output.numel():
            self._scratch = torch.empty(output.numel(), dtype=torch.float32)
            self._scratch_views = {}
        if len(self._scratch_views) >= CACHE_SIZE:
            self._scratch_views = {}
        view = self._scratch_views[output.shape] = self._scratch[: output.numel()].view(output.shape)
        return view

    def put_activations(self, record: StepRecord, state: StepState) -> None:
        """Per layer, the mean of its calls' activation statistics (NaN rows for the others)."""
        for index, row in self.act_copies.take():
            state.acts.setdefault(index, []).append(row)
        acts, state.acts = state.acts, {}
        if not acts:
            return
        rows = {index: _mean_row(calls) for index, calls in acts.items()}
        width = len(stats.ACTIVATION_FIELDS)
        devices = [row.device for row in rows.values() if isinstance(row, Tensor)]
        if not devices:  # CPU: one tensor for the whole step, from host floats
            nan_row = [math.nan] * width
            block = torch.tensor([rows.get(i, nan_row) for i in range(len(self.layers))], dtype=torch.float32)
        else:  # on the device of the first such layer (a model spread over devices is gathered there)
            device = devices[0]
            nan = self.constant((math.nan,) * width, torch.float32, device)
            tensors = [_on_device(rows[i], device) if i in rows else nan for i in range(len(self.layers))]
            block = torch.stack(tensors)
        observed = self.layer_mask(tuple(sorted(acts)))
        for column, metric in enumerate(stats.ACTIVATION_FIELDS):
            record.put(metric, block[:, column], observed)

    # -- update ratio ----------------------------------------------------------------------

    def take_snapshot(self) -> None:
        """Copy the weights before the update (for :meth:`update_sums`; under FSDP, the local shards)."""
        self.snapshot = self.weights.take(self.params, self.shards is not None)

    def update_sums(self) -> tuple[Tensor, Tensor, np.ndarray] | None:
        """Per layer, the squared norms of the weights before the update since the snapshot and of
        that update (under FSDP, of this rank's shards), and the observed mask; None without a snapshot."""
        if not self.snapshot:
            return None
        self.snapshot = False
        trainable, before = self.weights.indices, self.weights.buffers
        if not trainable:  # nothing to measure (a model whose op layers were never called)
            return None
        weights = self._weight_tensors()
        after = [weights[i].detach() for i in trainable]
        weight_sq = stats.squared_norms(before)
        torch._foreach_sub_(before, after)  # the copy becomes the update (its sign does not matter)
        delta_sq = stats.squared_norms(before)
        groups = self.constant(tuple(self.param_layer[i] for i in trainable), torch.long, delta_sq.device)
        n = len(self.layers)
        weight_sq = stats.grouped_sums(weight_sq, groups, n)
        delta_sq = stats.grouped_sums(delta_sq, groups, n)
        return weight_sq, delta_sq, self.layer_mask(tuple(sorted({self.param_layer[i] for i in trainable})))

    def put_update_ratio(self, record: StepRecord, sums: tuple[Tensor, Tensor, np.ndarray]) -> None:
        """Per layer, ``||w_after - w_before|| / ||w_before||`` from :meth:`update_sums` (under FSDP,
        once they are summed over the ranks)."""
        weight_sq, delta_sq, observed = sums
        self._over_shards(functools.partial(_put_ratio, record, observed), weight_sq, delta_sq)

    # -- small constants and masks ---------------------------------------------------------

    def constant(self, values: tuple[Any, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """A small constant tensor on ``device``, made once and copied there without a host sync."""
        key = (values, dtype, device)
        cached = self._constants.get(key)
        if cached is None:
            if len(self._constants) >= CACHE_SIZE:  # e.g. output sizes that change every step
                self._constants.clear()
            cached = self._constants[key] = to_device(torch.tensor(values, dtype=dtype), device)
        return cached

    def layer_mask(self, columns: tuple[int, ...]) -> np.ndarray:
        """A read-only mask over the layers, True at ``columns``, shared by the steps that have the same."""
        return self._mask(len(self.layers), columns)

    def _grad_masks(self, with_grad: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the parameters with a gradient and of the layers they belong to."""
        masks = self._masks.get(("grads", with_grad))
        if masks is None:
            layers = tuple(sorted({self.param_layer[i] for i in with_grad}))
            masks = (self._mask(len(self.params), with_grad), self.layer_mask(layers))
            self._masks[("grads", with_grad)] = masks
        return masks

    def _mask(self, width: int, columns: tuple[int, ...]) -> np.ndarray:
        key = (width, columns)
        mask = self._masks.get(key)
        if mask is None:
            if len(self._masks) >= CACHE_SIZE:
                self._masks.clear()
            mask = np.zeros(width, dtype=bool)
            mask[list(columns)] = True
            mask.flags.writeable = False
            self._masks[key] = mask
        return mask


class WeightCopy:
    """A copy of the trainable weights before an update, in buffers reused from one copy to the next.

    ``take`` copies with one ``torch._foreach_copy_`` (no allocation once the buffers exist);
    the update ratio then turns the copy into the update in place with ``torch._foreach_sub_``.

    Example:
        >>> copy = WeightCopy()
        >>> copy.take([torch.nn.Parameter(torch.ones(2))]), copy.buffers[0].tolist()
        (True, [1.0, 1.0])
    """

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.buffers: list[Tensor] = []

    def take(self, params: list[Tensor], sharded: bool = False) -> bool:
        """Copy the parameters that require a gradient (``sharded``: their local shards); return True."""
        indices = [i for i, p in enumerate(params) if p.requires_grad]
        sources = [params[i].detach() for i in indices]
        if sharded:
            sources = fsdp.local_params(sources)
        if indices != self.indices or not _same_layout(self.buffers, sources):
            self.indices, self.buffers = indices, [torch.empty_like(t) for t in sources]
        if sources:
            torch._foreach_copy_(self.buffers, sources)
        return True


def _put_underflow_fraction(record: StepRecord, observed: np.ndarray, under: Tensor, nonzero: Tensor) -> None:
    fraction = torch.where(nonzero > 0, under / nonzero.clamp(min=1), torch.nan)
    record.put("grad_underflow", fraction, observed)


def _put_ratio(record: StepRecord, observed: np.ndarray, weight_sq: Tensor, delta_sq: Tensor) -> None:
    ratio = (delta_sq / weight_sq).sqrt_()
    ratio = torch.where(weight_sq > 0, ratio, torch.nan)  # undefined for all-zero weights
    record.put("update_ratio", ratio, observed)


def _same_layout(buffers: list[Tensor], sources: list[Tensor]) -> bool:
    return len(buffers) == len(sources) and all(
        b.shape == s.shape and b.dtype == s.dtype and b.device == s.device for b, s in zip(buffers, sources)
    )


def activation_path(output: Tensor) -> str:
    """How an output's activation statistics are taken: ``"host"`` on CPU (summed in host
    memory); on an accelerator, ``"copied"`` for an output below
    :data:`~gradmedic._activation_buffer.COPY_BELOW_BYTES` (measured with the copies of its kind
    after the backward pass: launches saved), else ``"at once"`` (five kernels in the hook: a large
    output is read fewer times than a copy and a stack would read it).

    Example:
        >>> activation_path(torch.ones(3))
        'host'
    """
    if output.is_cpu:
        return "host"
    return "copied" if output.numel() * output.element_size() < COPY_BELOW_BYTES else "at once"


def _mean_row(calls: list[Tensor | list[float]]) -> Tensor | list[float]:
    """The mean of the activation statistics of a layer's calls in one step (all on one device)."""
    if len(calls) == 1:
        return calls[0]
    tensors = [call for call in calls if isinstance(call, Tensor)]
    if tensors:
        return torch.stack(tensors).mean(dim=0)
    return [sum(column) / len(calls) for column in zip(*calls)]


def _on_device(row: Tensor | list[float], device: torch.device) -> Tensor:
    if isinstance(row, Tensor):
        return row.to(device, non_blocking=True)
    return to_device(torch.tensor(row, dtype=torch.float32), device)


def to_device(host: Tensor, device: torch.device) -> Tensor:
    """``host`` (a new CPU tensor) on ``device``; to CUDA through pinned memory, without a host sync."""
    if device.type == "cpu":
        return host
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def as_row(value: Tensor | float) -> Tensor:
    """A loss as a one-element float row (on its device).

    Example:
        >>> as_row(2.5).tolist()
        [2.5]
    """
    if isinstance(value, Tensor):
        return value.detach().reshape(-1)[:1].float()
    return torch.tensor([float(value)])
