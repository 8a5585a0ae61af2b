"""The registry of activations and layer kinds: every list consumer agrees with it, and its
saturation bands, dying units and init gains agree with first principles (autograd on the
activation itself)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradmedic import registry, stats
from gradmedic.diagnosis import evidence, rules
from gradmedic.layers import find_layers, is_activation
from gradmedic.registry import ACTIVATIONS, Activation, ActivationFamily
from gradmedic.remedies import init as init_remedy
from gradmedic.remedies import reinit
from gradmedic.tracing import ActivationTracer, activation_name, activation_of_module, following_activations
from models import local_slope, max_slope

#: Modules that need arguments to be built.
ARGUMENTS: dict[type[nn.Module], tuple[Any, ...]] = {nn.Threshold: (0.0, 0.0)}


def instance(activation: Activation) -> nn.Module:
    cls = activation.modules[0]
    return cls(*ARGUMENTS.get(cls, ())).double().eval()  # eval: RReLU's slope is then fixed


NAMES = [a.name for a in ACTIVATIONS]
BY_NAME = {a.name: a for a in ACTIVATIONS}


def test_names_modules_and_functions_are_unique():
    modules = [cls for a in ACTIVATIONS for cls in a.modules]
    functions = [f for a in ACTIVATIONS for f in a.functions]
    assert len(set(NAMES)) == len(NAMES)
    assert len(set(modules)) == len(modules)
    assert len(set(functions)) == len(functions)


# -- every consumer agrees with the registry --------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_each_module_type_is_recognised_by_every_consumer(name):
    activation = BY_NAME[name]
    module = instance(activation)
    assert is_activation(module)
    assert [layer.kind for layer in find_layers(nn.Sequential(nn.Linear(2, 2), module))][1] == "activation"
    assert activation_of_module(module) == name
    assert evidence.module_activation(type(module).__name__) == name
    kind = stats.activation_kind(module)
    assert kind == stats.ActivationKind(activation.band_of(module), activation.can_die)


@pytest.mark.parametrize("name", NAMES)
def test_structure_without_data_names_the_activation_after_a_layer(name):
    model = nn.Sequential(nn.Linear(3, 3), instance(BY_NAME[name]), nn.Linear(3, 1))
    assert following_activations(model) == {"0": name}


def _torch_callables(function: str) -> list[Callable[..., Any]]:
    """The callables of torch, torch.nn.functional and Tensor whose ``__name__`` is ``function``."""
    found = []
    for namespace in (torch, F, torch.Tensor, torch._C._nn):
        for attribute in dir(namespace):
            candidate = getattr(namespace, attribute, None)
            if callable(candidate) and getattr(candidate, "__name__", None) == function:
                found.append(candidate)
    return found


class _LayerThen(nn.Module):
    """A Linear layer, then a torch function called in ``forward``."""

    def __init__(self, call: Callable[..., Tensor], extra: tuple[Any, ...]) -> None:
        super().__init__()
        self.fc, self.call, self.extra = nn.Linear(3, 3), call, extra

    def forward(self, x: Tensor) -> Tensor:
        return self.call(self.fc(x), *self.extra)


FUNCTIONS = [(a.name, f) for a in ACTIVATIONS for f in a.functions]


@pytest.mark.parametrize(("name", "function"), FUNCTIONS)
def test_each_functional_name_is_seen_by_the_tracer_after_a_layer(name, function):
    """Every registered function name is a real torch callable, and the tracer, on a small model
    calling it after a Linear layer, attributes that activation to the layer."""
    callables = _torch_callables(function)
    assert callables, f"no torch callable is named {function!r}"
    extra = (torch.tensor([0.25]),) if function == "prelu" else ()
    for call in callables:
        net = _LayerThen(call, extra)
        with torch.no_grad(), ActivationTracer(net) as tracer:
            net(torch.randn(4, 3))
        assert tracer.after["fc"].name == name, call


def test_the_tracer_sees_in_place_forms_and_tensor_methods():
    assert activation_name(torch.relu_) == "relu"
    assert activation_name(torch.Tensor.sigmoid) == "sigmoid"
    assert activation_name(F.softmax) is None  # not elementwise: not an activation


@pytest.mark.parametrize("name", NAMES)
def test_rules_and_init_choose_by_the_registry_family(name):
    activation = BY_NAME[name]
    he = activation.family in registry.HE_FAMILIES
    assert init_remedy.nonlinearity(name) == activation.gain
    assert (init_remedy.auto_scheme(name, deep=False) == "kaiming_uniform") == he
    expected = "He" if he else "LeCun" if name == "selu" else "Xavier"
    assert expected in rules.recommended_init(name, deep=False).name
    assert (name in rules.SATURATING) == (activation.family is ActivationFamily.SATURATING)


@pytest.mark.parametrize("name", sorted(rules.GAIN_BAND))
def test_auto_init_lands_inside_the_rules_gain_band(name):
    """The init reinit chooses for an activation passes the rule that checks that init."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), instance(BY_NAME[name]), nn.Linear(256, 1))
    reinit(model, "auto")
    low, high = rules.GAIN_BAND[name]
    assert low <= evidence.weight_gain(model[0]) <= high


# -- first principles --------------------------------------------------------------------------

GRID = torch.arange(-12 * 4096, 12 * 4096 + 1, dtype=torch.float64) / 4096  # band corners exact


@pytest.mark.parametrize("name", [a.name for a in ACTIVATIONS if a.band is not None])
def test_band_is_where_the_slope_is_below_five_percent_of_its_maximum(name):
    module = instance(BY_NAME[name])
    band = BY_NAME[name].band_of(module)
    assert band is not None
    slope, y = local_slope(module, GRID), module(GRID)
    flat = slope < registry.SATURATION_SLOPE * max_slope(module)
    distance = (y - band.center).abs()
    inside = distance >= band.radius if band.inclusive else distance > band.radius
    edge = (distance - band.radius).abs() < 1e-3  # grid points at the edge itself may go either way
    assert torch.equal(inside[~edge], flat[~edge])


@pytest.mark.parametrize("name", NAMES)
def test_a_band_exactly_for_activations_bounded_on_both_sides(name):
    module = instance(BY_NAME[name])
    far = torch.tensor([-1e6, -1e3, 1e3, 1e6], dtype=torch.float64)
    bounded = bool(module(far).abs().max() <= 10)
    assert (BY_NAME[name].band is not None) == bounded


@pytest.mark.parametrize("name", NAMES)
def test_units_can_die_exactly_when_output_and_slope_are_zero_on_a_half_line(name):
    """Dead means the unit's largest output over a batch is at most 0 (see stats.dead_fraction):
    that is a unit whose slope is 0 only for an activation that is never negative and is exactly
    0, with slope 0, on a half-line."""
    module = instance(BY_NAME[name])
    x = torch.linspace(-50, 50, 20001, dtype=torch.float64)
    y, slope = module(x), local_slope(module, x)
    left = x <= -5
    never_negative = bool((y >= 0).all())
    zero_half_line = bool((y[left] == 0).all() and (slope[left] == 0).all())
    assert BY_NAME[name].can_die == (never_negative and zero_half_line)


@pytest.mark.parametrize("name", [a.name for a in ACTIVATIONS if a.family is ActivationFamily.RELU])
def test_he_gain_keeps_the_second_moment_of_the_relu_family(name):
    """For z ~ N(0, 1), gain^2 * E[f(z)^2] = 1 is what keeps the forward signal's scale layer after
    layer (He et al., 2015): exact for ReLU and LeakyReLU, within the slope of the negative side
    for PReLU (0.25 at init) and RReLU (mean slope 0.23)."""
    activation = BY_NAME[name]
    z = torch.linspace(-12, 12, 480001, dtype=torch.float64)
    density = torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    second_moment = float(torch.trapezoid(instance(activation)(z).detach() ** 2 * density, z))
    gain = nn.init.calculate_gain(activation.gain, 0.01 if activation.gain == "leaky_relu" else None)
    assert gain == pytest.approx(nn.init.calculate_gain(init_remedy.nonlinearity(name), 0.01))
    tolerance = 1e-6 if name in ("relu", "leaky_relu") else 0.07
    assert gain**2 * second_moment == pytest.approx(1.0, abs=tolerance)


@pytest.mark.parametrize("name", NAMES)
def test_every_gain_name_is_one_calculate_gain_knows(name):
    assert nn.init.calculate_gain(BY_NAME[name].gain) > 0


# -- the rule for the unknown ------------------------------------------------------------------


def test_an_unregistered_module_is_not_an_activation_and_a_subclass_is_its_parent():
    class Cube(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x**3

    class MyReLU(nn.ReLU):
        pass

    assert not is_activation(Cube()) and registry.activation_of(Cube()) is None
    assert stats.activation_kind(Cube()) == stats.ActivationKind()
    assert [layer.name for layer in find_layers(nn.Sequential(nn.Linear(2, 2), Cube()))] == ["0"]
    assert is_activation(MyReLU()) and activation_of_module(MyReLU()) == "relu"
    assert stats.can_die(MyReLU())
    assert registry.lookup("cube") is None
    with pytest.raises(KeyError, match="unknown activation 'cube'"):
        registry.by_name("cube")


# -- layer kinds -------------------------------------------------------------------------------

WEIGHTS = [
    nn.Linear(4, 4),
    nn.Conv1d(2, 2, 3),
    nn.Conv2d(2, 2, 3),
    nn.Conv3d(2, 2, 3),
    nn.ConvTranspose2d(2, 2, 3),
]
NORMS = [
    nn.BatchNorm1d(4),
    nn.LayerNorm(4),
    nn.GroupNorm(2, 4),
    nn.InstanceNorm2d(4, affine=True),
    nn.RMSNorm(4),
]
RECURRENT = [nn.RNN(2, 2), nn.LSTM(2, 2), nn.GRU(2, 2), nn.RNNCell(2, 2), nn.LSTMCell(2, 2), nn.GRUCell(2, 2)]


@pytest.mark.parametrize("module", WEIGHTS + NORMS + RECURRENT + [nn.Embedding(4, 4)], ids=repr)
def test_a_layer_kind_read_from_the_module_or_from_its_class_name_agrees(module):
    """The checkup reads the model; a History alone keeps class names: both see the same kind."""
    name = type(module).__name__
    assert (name in evidence.WEIGHT_NAMES) == isinstance(module, registry.WEIGHT_TYPES)
    assert (name in evidence.NORM_NAMES) == isinstance(module, registry.NORM_TYPES)
    assert (name in evidence.RECURRENT_NAMES) == registry.is_recurrent(module)
    assert (name in evidence.GATED_NAMES) == isinstance(module, registry.GATED_TYPES)
    assert evidence._is_weight(module, name, None) == evidence._is_weight(None, name, None)


@pytest.mark.parametrize("norm", NORMS, ids=repr)
def test_reinit_keeps_every_norm_layers_own_init(norm):
    (change,) = reinit(nn.Sequential(norm), "auto")
    assert change.skipped and change.action == f"{type(norm).__name__} keeps its own initialisation"


def test_the_labs_activation_arms_are_registry_activations_the_recipes_build():
    from gradmedic.lab import recipes, studies
    from gradmedic.remedies.activations import NEW_ACTIVATIONS

    assert set(studies.ACTIVATIONS) <= set(recipes.ACTIVATIONS)
    for name, make in [*recipes.ACTIVATIONS.items(), *NEW_ACTIVATIONS.items()]:
        found = registry.activation_of(make())
        assert found is not None and found.name == ("silu" if name == "swish" else name)
