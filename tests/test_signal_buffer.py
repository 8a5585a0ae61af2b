"""The gradients at layer outputs held in the backward pass: bounded memory, the same numbers at
any budget, and a gradient changed in place after the hook saw it is never measured wrongly."""

from __future__ import annotations

import gc
import math
import weakref
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradmedic
from gradmedic import _signal_buffer
from gradmedic._signal_buffer import SignalBuffer
from models import ZOO, Case, assert_matches_reference, monitored_step, reference


def test_on_cpu_each_norm_is_taken_at_once():
    buffer = SignalBuffer()
    grad = torch.ones(16)
    ref = weakref.ref(grad)
    buffer.add(3, grad)
    del grad
    gc.collect()
    assert ref() is None
    taken = buffer.take()
    assert taken.layers == [3] and taken.norms is not None and taken.norms.tolist() == [4.0]


def test_held_gradients_are_let_go_as_soon_as_the_budget_is_reached(monkeypatch):
    monkeypatch.setattr(_signal_buffer, "CPU_HOLD_BYTES", 100)
    buffer = SignalBuffer()
    grads = [torch.full((16,), float(k + 1)) for k in range(3)]  # 64 bytes each
    refs = [weakref.ref(g) for g in grads]
    for layer, grad in enumerate(grads):
        buffer.add(layer, grad)
    del grads, grad
    gc.collect()
    assert [ref() is None for ref in refs] == [True, True, False]  # 128 bytes reached: the first two go
    taken = buffer.take(extra=[torch.tensor([3.0, 4.0])])
    assert refs[2]() is None
    assert taken.layers == [0, 1, 2] and taken.numels == [16, 16, 16]
    assert taken.norms is not None
    np.testing.assert_allclose(taken.norms.numpy(), [4.0, 8.0, 12.0, 5.0])
    assert buffer.take() == ([], [], None)  # empty afterwards


def test_norms_taken_at_once_and_together_come_back_in_order(monkeypatch):
    monkeypatch.setattr(_signal_buffer, "CPU_HOLD_BYTES", 100)
    buffer = SignalBuffer()
    values = [1.0, 2.0, 3.0, 4.0]
    buffer.add(0, torch.full((16,), values[0]))
    buffer.add(1, torch.full((16,), values[1]))  # 128 bytes: these two are taken together
    buffer.at_once = True  # as after a warning: the next ones are taken one by one
    buffer.add(2, torch.full((16,), values[2]))
    buffer.add(0, torch.full((16,), values[3], dtype=torch.float64))
    taken = buffer.take(extra=[torch.tensor([3.0, 4.0])])
    assert taken.layers == [0, 1, 2, 0]
    assert taken.norms is not None and taken.norms.dtype == torch.float64
    np.testing.assert_allclose(taken.norms.numpy(), [4 * v for v in values] + [5.0])


@pytest.mark.parametrize("budget", [0, 1, 300, 1 << 30])
@pytest.mark.parametrize("name", ["mlp_tanh", "cnn_bn", "shared", "lstm", "transformer", "unused"])
def test_every_statistic_equals_plain_autograd_at_any_budget(monkeypatch, budget, name):
    monkeypatch.setattr(_signal_buffer, "CPU_HOLD_BYTES", budget)
    case = ZOO[name]()
    expected = reference(case)
    assert_matches_reference(monitored_step(case), expected)


class _DoublesItsGrad(torch.autograd.Function):
    """Identity forward; the backward doubles the gradient, in place (legal, if impolite) or not."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, in_place: bool) -> Tensor:
        ctx.in_place = in_place
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return (grad.mul_(2.0) if ctx.in_place else grad * 2.0), None


class RudeLinear(nn.Linear):
    """A layer whose output comes out of a node that writes into its incoming gradient."""

    in_place = True

    def forward(self, x: Tensor) -> Tensor:
        return _DoublesItsGrad.apply(super().forward(x), self.in_place)


def _rude_case() -> tuple[Case, Any]:
    """The case, and the plain-autograd reference of the same weights with a polite backward (the
    reference's own capture of the gradient would see the doubling)."""
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), RudeLinear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    target = torch.randn(16, 3)
    case = Case(model, (torch.randn(16, 5),), lambda out: (out - target).pow(2).mean())
    model[2].in_place = False
    expected = reference(case)
    model[2].in_place = True
    return case, expected


def test_a_gradient_changed_in_place_is_left_out_with_a_warning_then_measured_at_once(monkeypatch):
    monkeypatch.setattr(_signal_buffer, "CPU_HOLD_BYTES", 1 << 20)  # hold them, as on a GPU
    case, expected = _rude_case()
    rude = [layer.name for layer in gradmedic.layers.find_layers(case.model)].index("2")
    with gradmedic.watch(case.model, gradients_every=1, activations_every=1) as monitor:
        for step in range(2):
            case.model.zero_grad(set_to_none=True)
            torch.manual_seed(0)
            loss = case.loss()
            if step == 0:
                with pytest.warns(RuntimeWarning, match="changed in place"):
                    loss.backward()
                    monitor.step(loss)
            else:
                loss.backward()
                monitor.step(loss)
    signal = monitor.history.array("signal_norm")[1]
    assert math.isnan(signal[0, rude])  # left out, not measured after the change
    others = [i for i in range(signal.shape[1]) if i != rude]
    np.testing.assert_allclose(signal[0, others], expected.values["signal_norm"][others], rtol=1e-5)
    np.testing.assert_allclose(signal[1], expected.values["signal_norm"], rtol=1e-5)  # then exact


@pytest.mark.filterwarnings("ignore:Using backward.. with create_graph=True")
def test_detaching_mid_step_lets_go_of_held_gradients_and_their_graph(monkeypatch, collect_garbage):
    """After ``backward(create_graph=True)`` a held gradient has a graph that holds the weights."""
    monkeypatch.setattr(_signal_buffer, "CPU_HOLD_BYTES", 1 << 20)
    case = ZOO["mlp_tanh"]()
    model = case.model
    monitor = gradmedic.watch(model)
    case.loss().backward(create_graph=True)
    assert monitor._collect.signal._held and monitor._collect.signal._held[0].grad_fn is not None
    model_ref, param_ref = weakref.ref(model), weakref.ref(next(model.parameters()))
    monitor.detach()
    for param in model.parameters():
        param.grad = None  # create_graph made the .grad fields part of the graph too
    del model, case
    collect_garbage()
    assert model_ref() is None and param_ref() is None
