"""The plain numbers a diagnosis reads: built from a History and the model, or by hand in tests.

Rules see only :class:`Evidence`: no tensors, no hooks, no model. That keeps them pure and lets
tests feed them synthetic numbers.

Example:
    >>> layers = [LayerEvidence("0", "Linear", signal=1e-9), LayerEvidence("2", "Linear", signal=1.0)]
    >>> ev = Evidence(layers)
    >>> [layer.name for layer in ev.observed()]
    ['0', '2']
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import registry
from ..history import History, NonFiniteEvent
from ..layer_profiles import layer_profile
from ..op_layers import WEIGHT_OP_TYPES, candidate_leaves
from ..op_layers import weight_gain as op_weight_gain
from ..recurrent_stats import decay_per_step, median_profile, memory_horizon, reach, span
from ..tracing import FollowingActivation

NORM_TYPES = registry.NORM_TYPES
WEIGHT_TYPES = registry.WEIGHT_TYPES
#: Class names of the normalization, recurrent, weight and gated recurrent layers (LSTM, GRU and
#: their cells), to read the structure from a History.
NORM_NAMES = registry.class_names(registry.NORM_TYPES)
RECURRENT_NAMES = registry.class_names(registry.RECURRENT_TYPES)
WEIGHT_NAMES = registry.class_names(registry.WEIGHT_TYPES)
GATED_NAMES = registry.class_names(registry.GATED_TYPES)


def module_activation(type_name: str) -> str | None:
    """Canonical name of the activation a History's layer type computes (``"LeakyReLU"`` ->
    ``"leaky_relu"``), or None for a class the registry does not know.

    Example:
        >>> module_activation("LeakyReLU"), module_activation("Linear")
        ('leaky_relu', None)
    """
    found = registry.activation_of_class_name(type_name)
    return found.name if found is not None else None


@dataclass
class LayerEvidence:
    """One parametrised layer, in forward order.

    Attributes:
        signal: backprop signal (RMS of d loss / d output), median of recent rows.
        weight_grad: weight-gradient norm of the layer's own parameters.
        activation: name of the activation applied to the output (``"tanh"``...), if any.
        saturated: fraction of that activation's outputs in its flat tails (NaN: not applicable).
        dead: fraction of that activation's units zero for the whole batch (NaN: not applicable).
        gain: ``std(weight) * sqrt(fan_in)`` for Linear/Conv weights (NaN otherwise).
        update_ratio: median ``||dw|| / ||w||`` over the run (monitor only).
        underflow: fraction of the non-zero weight-gradient values below the smallest normal of
            the low-precision dtype, median of recent rows (mixed-precision runs only).
        weight: True for Linear/Conv layers (the ones a stack is made of).
    """

    name: str
    type: str
    signal: float = math.nan
    weight_grad: float = math.nan
    activation: str | None = None
    saturated: float = math.nan
    dead: float = math.nan
    gain: float = math.nan
    update_ratio: float = math.nan
    weight: bool = True
    underflow: float = math.nan


@dataclass
class TimeEvidence:
    """One recurrent layer's backprop signal through time (see :mod:`gradmedic.recurrent_stats`).

    Attributes:
        name: the layer's name; ``type``: its class name (``"RNN"``, ``"LSTMCell"``...).
        profile: the signal by steps back (0 = the last step), median of recent rows.
        length: time steps of the sequence (the profile may keep fewer, see ``MAX_TIME_STEPS``).
        gate_mean: mean forget (LSTM) / update (GRU) gate activation (NaN: not gated).
        gate_saturated: fraction of those gates in the sigmoid's flat tails.

    Example:
        >>> import numpy as np
        >>> layer = TimeEvidence("rnn", "RNN", 0.5 ** np.arange(100), 100)
        >>> layer.horizon, round(layer.decay, 2), layer.gated
        (10, 0.5, False)
    """

    name: str
    type: str
    profile: np.ndarray
    length: int
    gate_mean: float = math.nan
    gate_saturated: float = math.nan

    @property
    def horizon(self) -> int:
        """Steps back the signal stays at or above 1e-3 of its value at the last step."""
        return memory_horizon(self.profile)

    @property
    def decay(self) -> float:
        """Factor per step back of a geometric fit."""
        return decay_per_step(self.profile)

    @property
    def reach(self) -> float:
        """Signal at the first recorded step over the signal at the last step."""
        return reach(self.profile)

    @property
    def steps(self) -> int:
        """Number of steps the profile covers."""
        return len(span(self.profile))

    @property
    def gated(self) -> bool:
        """Whether the layer is an LSTM or a GRU (or one of their cells)."""
        return self.type in GATED_NAMES or math.isfinite(self.gate_mean)


@dataclass
class Evidence:
    """Everything the rules may look at."""

    layers: list[LayerEvidence]
    source: str = "checkup"
    normalized: bool = False
    recurrent: list[str] = field(default_factory=list)
    non_finite: list[NonFiniteEvent] = field(default_factory=list)
    subnormal_fraction: float = 0.0
    flush_denormal: bool = False
    on_cpu: bool = True
    batch_size: int | None = None
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    saturation_trend: dict[str, tuple[float, float]] = field(default_factory=dict)
    dead_trend: dict[str, tuple[float, float]] = field(default_factory=dict)
    grad_norm_series: np.ndarray = field(default_factory=lambda: np.zeros(0))
    time: list[TimeEvidence] = field(default_factory=list)
    low_precision: str | None = None

    def observed(self) -> list[LayerEvidence]:
        """Layers with a finite, positive backprop signal, in forward order."""
        return [layer for layer in self.layers if math.isfinite(layer.signal) and layer.signal > 0]

    @property
    def depth(self) -> int:
        """Number of Linear/Conv layers."""
        return sum(1 for layer in self.layers if layer.weight)


def flush_denormal_enabled() -> bool:
    """Whether ``torch.set_flush_denormal(True)`` is in effect (a subnormal times 1 becomes 0)."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    return bool((tiny * 1.0).item() == 0.0)


def weight_gain(module: nn.Module) -> float:
    """``std(weight) * sqrt(fan_in)``: 1 for LeCun, sqrt(2) for He, ~0.58 for PyTorch's default."""
    weight = getattr(module, "weight", None)
    if not isinstance(module, WEIGHT_TYPES) or not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        return math.nan
    if weight.numel() < 2:  # one weight has no spread to measure (torch.std would warn and give NaN)
        return math.nan
    fan_in = weight[0].numel()
    return float(weight.detach().float().std()) * math.sqrt(fan_in)


def _op_gain(weight: torch.Tensor | None, op: dict[str, Any] | None) -> float:
    """The gain of an op layer's weight (NaN without the model, or for an op without a fan-in)."""
    if weight is None or op is None or op.get("type") not in WEIGHT_OP_TYPES:
        return math.nan
    return op_weight_gain(weight, op.get("fan_in"))


def _is_weight(module: nn.Module | None, type_name: str, op: dict[str, Any] | None) -> bool:
    """Whether a layer (a module, an op layer, or a type name alone) is a linear map."""
    if module is not None:
        return isinstance(module, WEIGHT_TYPES)
    return op.get("type") in WEIGHT_OP_TYPES if op is not None else type_name in WEIGHT_NAMES


def evidence_from_history(
    history: History,
    model: nn.Module | None,
    activations: dict[str, FollowingActivation] | None = None,
    last: int = 20,
) -> Evidence:
    """Summarise a History (and the model's structure, when given) for the rules.

    ``activations`` (from :class:`gradmedic.tracing.ActivationTracer`) names the activation
    after each layer even when it is a function call; otherwise activation modules are used.
    """
    signal = layer_profile(history, "signal_rms", last)
    weight_grad = layer_profile(history, "weight_grad_norm", last).values
    updates = layer_profile(history, "update_ratio", 10**9).values
    underflow = layer_profile(history, "grad_underflow", last).values
    after = activations if activations is not None else _activation_modules(history, last)
    modules = dict(model.named_modules()) if model is not None else {}
    ops: dict[str, dict[str, Any]] = history.meta.get("op_layers", {})
    weights = {leaf.name: leaf.tensor for leaf in candidate_leaves(model).values()} if ops and model else {}
    layers = []
    columns = zip(signal.layers, signal.values, weight_grad, updates, underflow)
    for layer, value, grad, update, lost in columns:
        module = modules.get(layer.name)
        following = after.get(layer.name)
        op = ops.get(layer.name) if module is None else None
        layers.append(
            LayerEvidence(
                layer.name, layer.type, float(value), float(grad),
                activation=following.name if following else None,
                saturated=following.saturated if following else math.nan,
                dead=following.dead if following else math.nan,
                gain=weight_gain(module) if module is not None else _op_gain(weights.get(layer.name), op),
                update_ratio=float(update),
                underflow=float(lost),
                weight=_is_weight(module, layer.type, op),
            )
        )  # fmt: skip
    evidence = Evidence(layers, source="monitor", non_finite=list(history.non_finite))
    if model is not None:
        _add_structure(evidence, model)
    else:  # a History alone still names each layer's type
        evidence.normalized = any(layer.type in NORM_NAMES for layer in history.layers)
        evidence.recurrent = [layer.name for layer in history.layers if layer.type in RECURRENT_NAMES]
    evidence.flush_denormal = flush_denormal_enabled()
    evidence.low_precision = history.meta.get("low_precision")
    if "loss" in history.metrics:
        evidence.loss = history.array("loss")[1][:, 0]
    if "weight_grad_norm" in history.metrics:
        rows = history.array("weight_grad_norm")[1]
        evidence.grad_norm_series = np.sqrt(np.nansum(rows**2, axis=1))
    evidence.time = time_evidence(history, last)
    evidence.saturation_trend = _trend(history, "act_saturated")
    evidence.dead_trend = _trend(history, "act_dead")
    return evidence


def time_evidence(history: History, last: int = 20) -> list[TimeEvidence]:
    """One :class:`TimeEvidence` per recurrent layer with a recorded time profile.

    The profile is the median of the last ``last`` rows, cut to the length of the most recent
    sequence (rows of longer sequences recorded earlier do not extend it).
    """
    if "time_signal" not in history.metrics:
        return []
    lengths = _recent(history, "time_length", 1)  # the most recent sequence sets the length
    gates = _recent(history, "gate_mean", last)
    saturated = _recent(history, "gate_saturated", last)
    found = []
    for column in history.time_layers:
        layer = history.layers[column]
        profile = median_profile(history.time_rows(layer.name)[1][-last:])
        length = int(lengths[column]) if np.isfinite(lengths[column]) else len(span(profile))
        profile = profile[:length]
        if len(span(profile)):
            found.append(TimeEvidence(layer.name, layer.type, profile, length,
                                      float(gates[column]), float(saturated[column])))  # fmt: skip
    return found


def _recent(history: History, metric: str, last: int) -> np.ndarray:
    """Per layer, the median of the last ``last`` rows of ``metric`` (NaN where none)."""
    if metric not in history.metrics:
        return np.full(len(history.layers), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # layers without the statistic: all NaN
        return np.nanmedian(history.array(metric)[1][-last:], axis=0)


def _add_structure(evidence: Evidence, model: nn.Module) -> None:
    modules = list(model.named_modules())
    evidence.normalized = any(isinstance(m, NORM_TYPES) for _, m in modules)
    evidence.recurrent = [n for n, m in modules if registry.is_recurrent(m)]
    evidence.on_cpu = all(p.device.type == "cpu" for p in model.parameters())


def _activation_modules(history: History, last: int) -> dict[str, FollowingActivation]:
    """The activation module that follows each parametrised layer in forward order."""
    saturated = layer_profile(history, "act_saturated", last, kind=None)
    dead = layer_profile(history, "act_dead", last, kind=None).values
    after: dict[str, FollowingActivation] = {}
    owner = None
    for layer, sat, gone in zip(saturated.layers, saturated.values, dead):
        if layer.kind == "param":
            owner = layer.name
        elif owner is not None:
            name = module_activation(layer.type) or layer.type.lower()  # a subclass: its own name
            after[owner] = FollowingActivation(name, float(sat), float(gone))
            owner = None
    return after


def _trend(history: History, metric: str) -> dict[str, tuple[float, float]]:
    """Per layer, the value early in the run and late in it (medians of the first/last quarter)."""
    if metric not in history.metrics:
        return {}
    _, rows = history.array(metric)
    if len(rows) < 4:
        return {}
    quarter = max(len(rows) // 4, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # layers without the statistic: all NaN
        early, late = np.nanmedian(rows[:quarter], axis=0), np.nanmedian(rows[-quarter:], axis=0)
    return {
        history.layers[i].name: (float(early[i]), float(late[i]))
        for i in range(len(history.layers))
        if np.isfinite(early[i]) and np.isfinite(late[i])
    }
