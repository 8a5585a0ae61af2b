"""Unit tests of :mod:`gradmedic.tracing`: the activation that follows each parametrised layer.

Fractions are checked against their definitions recomputed here with autograd (the saturated
fraction: where the activation's local slope is below 5 % of its maximum) or plain tensor math.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradmedic.layers import ACTIVATION_TYPES
from gradmedic.tracing import ActivationTracer, activation_name, activation_of_module, following_activations
from models import dead_reference, saturation_reference


class FunctionalNet(nn.Module):
    """fc -> sigmoid (called as a function), fc2 -> relu then tanh, head without activation."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.sigmoid(self.fc(x))
        h = torch.tanh(F.relu(self.fc2(h)))
        return self.head(h)


class OpNet(nn.Module):
    """A layer written as an op on a bare weight, followed by ``x.tanh()``."""

    def __init__(self) -> None:
        super().__init__()
        self.W1 = nn.Parameter(torch.randn(4, 5))
        self.out = nn.Linear(5, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out((x @ self.W1).tanh())


def test_activation_name_canonical_and_unknown() -> None:
    assert activation_name(torch.relu_) == "relu"  # the in-place form has the same name
    assert activation_name(F.leaky_relu) == "leaky_relu"
    assert activation_name(torch.sigmoid) == "sigmoid"
    assert activation_name(torch.add) is None
    assert activation_name(object()) is None  # no __name__ at all


def test_activation_of_module_names_modules_and_refuses_others() -> None:
    assert activation_of_module(nn.LeakyReLU(0.2)) == "leaky_relu"
    assert activation_of_module(nn.Tanh()) == "tanh"
    assert activation_of_module(nn.Linear(2, 2)) is None
    assert activation_of_module(nn.Softmax(dim=-1)) is None  # not elementwise


def test_tracer_finds_functional_activations_in_order_and_only_the_first_after_a_layer() -> None:
    net = FunctionalNet()
    with ActivationTracer(net) as tracer:
        net(torch.randn(8, 4))
    assert {name: found.name for name, found in tracer.after.items()} == {"fc": "sigmoid", "fc2": "relu"}


def test_saturated_fraction_matches_the_slope_definition() -> None:
    net = nn.Sequential(nn.Linear(4, 32), nn.Sigmoid())
    with torch.no_grad():
        net[0].weight.mul_(8.0)  # wide pre-activations: a good part is saturated
    x = torch.randn(64, 4)
    with ActivationTracer(net) as tracer:
        net(x)
    expected, near = saturation_reference(nn.Sigmoid(), net[0](x))
    found = tracer.after["0"]
    assert found.name == "sigmoid"
    assert 0.05 < expected < 0.95  # the test would see a wrong band
    assert found.saturated == pytest.approx(expected, abs=near + 1e-6)
    assert found.dead != found.dead  # NaN: a sigmoid cannot die


def test_dead_fraction_matches_units_never_active_in_the_batch() -> None:
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
    with torch.no_grad():
        net[0].bias[:6] = -100.0  # six units never fire
    x = torch.randn(32, 4)
    with ActivationTracer(net) as tracer:
        net(x)
    found = tracer.after["0"]
    assert found.dead == pytest.approx(dead_reference(torch.relu(net[0](x))))
    assert found.dead >= 6 / 16
    assert found.saturated != found.saturated  # NaN: ReLU does not saturate


def test_layer_written_as_an_op_is_named_after_its_weight() -> None:
    net = OpNet()
    with ActivationTracer(net) as tracer:
        net(torch.randn(3, 4))
    assert tracer.after["W1"].name == "tanh"
    assert "out" not in tracer.after  # nothing follows the head


def test_tracer_removes_its_hooks_even_after_an_error() -> None:
    net = FunctionalNet()
    with pytest.raises(RuntimeError), ActivationTracer(net):
        net(torch.randn(8, 5))  # wrong width: fc refuses it
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert activation_name(torch.sigmoid) == "sigmoid"
    # the mode is no longer active: a plain call is not recorded anywhere
    with ActivationTracer(net) as tracer:
        pass
    net(torch.randn(8, 4))
    assert tracer.after == {}


def test_following_activations_from_module_order_without_inputs() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert following_activations(model) == {"0": "tanh", "2": "relu"}
    assert following_activations(FunctionalNet()) == {}  # functional calls need a traced pass


def test_following_activations_traced_sees_functional_calls_and_leaves_grads() -> None:
    net = FunctionalNet()
    net(torch.randn(2, 4)).sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    assert following_activations(net, torch.randn(8, 4)) == {"fc": "sigmoid", "fc2": "relu"}
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads))


@pytest.mark.parametrize(
    "activation",
    [cls() for cls in ACTIVATION_TYPES if cls not in (nn.Threshold, nn.Tanhshrink)],
    ids=lambda module: type(module).__name__,
)
def test_traced_and_module_order_agree_for_every_activation_module(activation: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(3, 3), activation, nn.Linear(3, 2))
    traced = following_activations(model, torch.randn(4, 3))
    assert traced == following_activations(model) == {"0": activation_of_module(activation)}


def test_relu6_traced_has_its_own_band_and_can_die() -> None:
    net = nn.Sequential(nn.Linear(4, 32), nn.ReLU6())
    with torch.no_grad():
        net[0].weight.mul_(4.0)
    x = torch.randn(64, 4)
    with ActivationTracer(net) as tracer:
        net(x)
    pre = net[0](x)
    expected, near = saturation_reference(nn.ReLU6(), pre)
    found = tracer.after["0"]
    assert found.name == "relu6"
    assert found.saturated == pytest.approx(expected, abs=near + 1e-6)
    assert found.dead == pytest.approx(dead_reference(F.relu6(pre)))
