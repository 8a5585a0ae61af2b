"""Remedy 2: initialization that suits the activation after each layer.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> [c.action for c in reinit(model)]
    ['kaiming_uniform (relu)', 'xavier_uniform (no activation)']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from .. import registry
from .._deprecation import module_getattr
from ..diagnosis.findings import Family
from ..errors import ConfigError
from ..layers import find_layers
from ..op_layers import (
    WEIGHT_OP_TYPES,
    OpLayer,
    as_out_in,
    candidate_leaves,
    discover_on,
    is_torch_layer,
    leaf_tensors,
)
from ..tracing import following_activations
from .changes import Change

WEIGHT_LAYERS = registry.WEIGHT_TYPES
#: Layers reinit leaves alone on purpose (their own init is already right).
KEEP_AS_IS = (*registry.NORM_TYPES, nn.Embedding, nn.PReLU)
#: Activations whose layers take He (Kaiming) init: the ReLU families of the registry.
RELU_LIKE = registry.names(*registry.HE_FAMILIES)
SCHEMES = ("auto", "xavier", "xavier_uniform", "xavier_normal", "kaiming", "he", "kaiming_uniform",
           "kaiming_normal", "lecun", "orthogonal", "lsuv")  # fmt: skip
ORTHOGONAL_FROM_DEPTH = 10  # from this many weight layers on, tanh/sigmoid stacks get orthogonal weights
#: Saturating activations whose outputs are not centred on 0 (a sigmoid averages 0.5, with slope
#: 1/4 at most): no data-free scale suits the layers before them (from ~8 layers); with data, auto
#: centres each unit and scales the layer to unit output variance (LSUV with centring). Read from
#: the registry: the saturating ones whose band is centred away from 0 (sigmoid, hardsigmoid).
OFF_CENTRE = tuple(
    a.name
    for a in registry.ACTIVATIONS
    if a.family is registry.ActivationFamily.SATURATING and a.band is not None and a.band.center != 0
)


Nonlinearity = Literal["linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]


def nonlinearity(activation: str | None) -> Nonlinearity:
    """The ``torch.nn.init.calculate_gain`` name for an activation, as the registry gives it
    (ReLU-like ones map to relu; an activation it does not know, or none, to linear).

    Example:
        >>> nonlinearity("gelu"), nonlinearity("tanh"), nonlinearity(None)
        ('relu', 'tanh', 'linear')
    """
    found = registry.lookup(activation)
    return cast(Nonlinearity, found.gain if found is not None else "linear")


def auto_scheme(activation: str | None, deep: bool) -> str:
    """He for the ReLU family, LeCun for SELU, orthogonal (deep tanh/sigmoid stacks) or Xavier for
    the rest."""
    if activation in RELU_LIKE:
        return "kaiming_uniform"
    if activation == "selu":
        return "lecun"
    if activation in ("tanh", *OFF_CENTRE) and deep:
        return "orthogonal"
    return "xavier_uniform"


def init_weight(weight: Tensor, scheme: str, activation: str | None, slope: float = 0.01) -> None:
    """Initialise ``weight`` in place with ``scheme`` and the gain of ``activation`` (``slope``:
    the negative slope of a following LeakyReLU)."""
    nl = nonlinearity(activation)
    slope = slope if nl == "leaky_relu" else 0.0
    gain = nn.init.calculate_gain(nl, slope if nl == "leaky_relu" else None)
    initializers: dict[str, Callable[[], Any]] = {
        "xavier_uniform": lambda: nn.init.xavier_uniform_(weight, gain=gain),
        "xavier_normal": lambda: nn.init.xavier_normal_(weight, gain=gain),
        "kaiming_uniform": lambda: nn.init.kaiming_uniform_(weight, a=slope, nonlinearity=nl),
        "kaiming_normal": lambda: nn.init.kaiming_normal_(weight, a=slope, nonlinearity=nl),
        "lecun": lambda: nn.init.kaiming_normal_(weight, nonlinearity="linear"),
        # gain 1 for saturating stacks: 5/3 over 100 tanh layers grows the signal 1000x
        "orthogonal": lambda: nn.init.orthogonal_(weight, gain=gain if nl in ("relu", "leaky_relu") else 1.0),
    }
    with torch.no_grad():
        initializers[scheme]()


def canonical_scheme(scheme: str) -> str:
    """``xavier`` -> ``xavier_uniform``, ``he``/``kaiming`` -> ``kaiming_uniform``; check the name."""
    aliases = {"xavier": "xavier_uniform", "he": "kaiming_uniform", "kaiming": "kaiming_uniform"}
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown init scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    return aliases.get(scheme, scheme)


def reinit(
    model: nn.Module,
    scheme: str = "auto",
    data: Any = None,
    zero_bias: bool = True,
    layers: list[str] | None = None,
) -> list[Change]:
    """Re-initialise the model's Linear/Conv (and recurrent) weights; return what changed.

    Args:
        model: the model, changed in place.
        scheme: ``auto`` (per layer, from the activation that follows it; with ``data``, the
            layers before a sigmoid get orthogonal weights centred per unit and scaled to unit
            output variance on it, see :data:`OFF_CENTRE`), ``xavier[_uniform|
            _normal]``, ``kaiming``/``he[_uniform|_normal]``, ``lecun``, ``orthogonal`` or ``lsuv``
            (orthogonal, then each layer rescaled to unit output variance on ``data``).
        data: an example batch (tensor, tuple or dict of inputs). With it, the activation after
            each layer is found by tracing the forward pass, so ``torch.tanh(x)`` in forward counts,
            and bare weights used by ops (``x @ self.W1 + self.b1``) are found and re-initialised
            as the layers they are (see :mod:`gradmedic.op_layers`); without it they are left as
            they were.
        zero_bias: set biases to zero.
        layers: only these layers (qualified names); all by default.
    """
    scheme = canonical_scheme(scheme)
    if scheme == "lsuv" and data is None:
        raise ConfigError("scheme='lsuv' needs data=an example batch of inputs to measure variances")
    after = following_activations(model, data)
    modules = dict(model.named_modules())
    found = discover_on(model, data)
    ops = [op for op in found.layers if layers is None or op.name in layers]
    chosen = [
        layer.name
        for layer in find_layers(model, required=not candidate_leaves(model))
        if layer.kind == "param"
        and (layers is None or layer.name in layers)
        and layer.name not in found.split
    ]
    weights = sum(isinstance(modules[n], WEIGHT_LAYERS) for n in chosen) + sum(
        op.type in WEIGHT_OP_TYPES for op in ops
    )
    deep = weights >= ORTHOGONAL_FROM_DEPTH
    centred = scheme == "auto" and data is not None  # then sigmoid layers get the centred rescaling
    slopes = _leaky_slopes(model)
    changes = []
    for name in chosen:
        if data is None and not is_torch_layer(modules[name]):  # bare weights: found only on data
            why = "bare weights (maybe used by ops in forward()): pass data= (an example batch) to find them"
            changes.append(Change(Family.INIT, name, why, skipped=True))
            continue
        activation = after.get(name)
        orthogonal = deep or (centred and activation in OFF_CENTRE)
        slope = slopes.get(name, 0.01)
        changes.append(_reinit_layer(name, modules[name], scheme, activation, orthogonal, zero_bias, slope))
    tensors = leaf_tensors(model)
    made_ops = []
    for op in ops:
        activation = after.get(op.name)
        orthogonal = deep or (centred and activation in OFF_CENTRE)
        change = _reinit_op(op, tensors, scheme, activation, orthogonal, zero_bias)
        made_ops += [] if change.skipped else [op]
        changes.append(change)
    modules_changed = changes[: len(chosen)]
    calibrated = _calibrate(model, scheme, data, modules_changed, after)
    return changes + calibrated + _calibrate_ops(model, scheme, data, made_ops, after)


def _calibrate(
    model: nn.Module, scheme: str, data: Any, changes: list[Change], after: dict[str, str]
) -> list[Change]:
    """LSUV's rescaling for ``lsuv``; for ``auto`` with data, the centred rescaling of the layers
    before a sigmoid."""
    from .lsuv import rescale_to_unit_variance

    made = [c.layer for c in changes if not c.skipped]
    if scheme == "lsuv":
        return rescale_to_unit_variance(model, data, made)
    off_centre = [name for name in made if after.get(name) in OFF_CENTRE]
    if scheme == "auto" and data is not None and off_centre:
        return rescale_to_unit_variance(model, data, off_centre, center=True)
    return []


def _calibrate_ops(
    model: nn.Module, scheme: str, data: Any, ops: list[OpLayer], after: dict[str, str]
) -> list[Change]:
    """:func:`_calibrate` for the op layers re-initialised (bare weights), after the modules'."""
    from .lsuv import rescale_op_layers

    if scheme == "lsuv" and ops:
        return rescale_op_layers(model, data, ops)
    off_centre = [op for op in ops if after.get(op.name) in OFF_CENTRE]
    if scheme == "auto" and data is not None and off_centre:
        return rescale_op_layers(model, data, off_centre, center=True)
    return []


def _reinit_op(
    op: OpLayer, tensors: dict[str, Tensor], scheme: str, activation: str | None, deep: bool, zero_bias: bool
) -> Change:
    """Re-initialise an op layer's bare weight (seen as ``[out, in]``) and zero its bias."""
    weight = as_out_in(tensors[op.name], op)
    if op.type == "embedding":
        return Change(Family.INIT, op.name, "an embedding keeps its own initialisation", skipped=True)
    if weight is None:
        return Change(
            Family.INIT, op.name, f"no initialiser for a {op.type} op layer: left as it was", skipped=True
        )
    used = auto_scheme(activation, deep) if scheme == "auto" else "orthogonal" if scheme == "lsuv" else scheme
    init_weight(weight, used, activation)
    if zero_bias:
        with torch.no_grad():
            for name in op.leaves[1:]:
                tensors[name].zero_()
    return Change(Family.INIT, op.name, f"{used} ({activation or 'no activation'})")


def _leaky_slopes(model: nn.Module) -> dict[str, float]:
    """``negative_slope`` of the LeakyReLU module after each layer (definition order); a
    functional ``F.leaky_relu`` keeps the default 0.01."""
    slopes: dict[str, float] = {}
    owner = None
    for name, module in model.named_modules():
        if isinstance(module, nn.LeakyReLU) and owner is not None:
            slopes[owner] = module.negative_slope
        if registry.activation_of(module) is not None:
            owner = None
        elif any(True for _ in module.parameters(recurse=False)):
            owner = name
    return slopes


def _reinit_layer(
    name: str,
    module: nn.Module,
    scheme: str,
    activation: str | None,
    deep: bool,
    zero_bias: bool,
    slope: float = 0.01,
) -> Change:
    if registry.is_recurrent(module):
        from .recurrent import init_recurrent

        return init_recurrent(name, module, "orthogonal")
    if isinstance(module, KEEP_AS_IS):
        return Change(
            Family.INIT, name, f"{type(module).__name__} keeps its own initialisation", skipped=True
        )
    if not isinstance(module, WEIGHT_LAYERS):
        return Change(
            Family.INIT, name, f"no initialiser for {type(module).__name__}: left as it was", skipped=True
        )
    used = auto_scheme(activation, deep) if scheme == "auto" else "orthogonal" if scheme == "lsuv" else scheme
    init_weight(module.weight, used, activation, slope)
    if zero_bias and module.bias is not None:
        with torch.no_grad():
            module.bias.zero_()
    return Change(Family.INIT, name, f"{used} ({activation or 'no activation'})")


# Old names, kept for one release (see gradmedic._deprecation).
__getattr__ = module_getattr(
    __name__,
    {
        "DEEP": ("ORTHOGONAL_FROM_DEPTH", lambda: ORTHOGONAL_FROM_DEPTH),
    },
)
