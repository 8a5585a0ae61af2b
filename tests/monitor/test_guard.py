"""Steps the schedules do not record: the model runs with no gradmedic hook in it, and the one
fused check at the step's end still catches the first non-finite gradient at its exact step."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

import gradmedic
from gradmedic.history import NonFiniteEvent
from gradmedic.hooks import count_module_hooks
from models import ZOO, Case, mlp, recurrent

GRADMEDIC = str(Path(gradmedic.__file__).parent)
EVERY = {"gradients_every": 3, "activations_every": 3, "updates_every": 3, "through_time_every": 3}


@contextmanager
def gradmedic_calls() -> Iterator[list[str]]:
    """Names of the gradmedic functions Python entered (called from C too: module hooks,
    autograd-node hooks) while the block ran."""
    seen: list[str] = []

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "call" and frame.f_code.co_filename.startswith(GRADMEDIC):
            seen.append(frame.f_code.co_name)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


def steps(history: gradmedic.History, metric: str) -> list[int]:
    return history.array(metric)[0].tolist()


def _leaf_hooks(model: nn.Module) -> int:
    return sum(len(p._backward_hooks or {}) for p in model.parameters())


def _step(case: Case, optimizer: torch.optim.Optimizer) -> list[str]:
    """One training step; the gradmedic functions run during its forward and backward passes."""
    optimizer.zero_grad()
    with gradmedic_calls() as seen:
        case.loss().backward()
    optimizer.step()
    return seen


@pytest.mark.parametrize("build", [mlp, recurrent], ids=["mlp", "lstm"])
def test_an_unrecorded_step_runs_the_model_without_any_gradmedic_hook(build):
    case = build()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.01)
    with gradmedic.watch(case.model, optimizer, **EVERY) as monitor:
        for step in range(7):
            hooks_before = count_module_hooks(case.model) + _leaf_hooks(case.model)
            seen = _step(case, optimizer)
            if step % 3 == 0:  # recorded: the probes are in place and run (so the check can fail)
                assert hooks_before > 0 and seen, step
            else:  # no module, leaf or autograd-node hook: no gradmedic code ran in the passes
                assert hooks_before == 0 and seen == [], (step, seen[:5])
        assert count_module_hooks(case.model) == 0  # step 6 closed; step 7 is not recorded
    assert count_module_hooks(case.model) == 0
    rows = steps(monitor.history, "signal_norm")
    assert rows == [0, 3, 6]


def test_the_next_step_is_decided_when_a_step_closes_without_an_optimizer():
    case = mlp()
    with gradmedic.watch(
        case.model, gradients_every=2, activations_every=None, updates_every=None
    ) as monitor:
        for step in range(4):
            assert (count_module_hooks(case.model) > 0) == (step % 2 == 0), step
            case.loss().backward()
            monitor.step()
            case.model.zero_grad()
    assert steps(monitor.history, "signal_norm") == [0, 2]


def _poison(model: nn.Module, names: list[str]) -> None:
    params = dict(model.named_parameters())
    for name in names:
        grad = params[name].grad
        assert grad is not None
        grad.view(-1)[0] = math.nan if name.endswith("weight") else math.inf


def _train_poisoned(
    poison_at: dict[int, list[str]], steps: int, with_optimizer: bool, **options: object
) -> gradmedic.History:
    """An MLP trained with some gradients made non-finite after backward (by name, per step);
    each update is undone, so the weights stay finite and only the poisoned steps' gradients are not."""
    case = mlp()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.01)
    monitor = gradmedic.watch(case.model, optimizer if with_optimizer else None, **options)
    with monitor:
        for step in range(steps):
            optimizer.zero_grad()
            case.loss().backward()
            _poison(case.model, poison_at.get(step, []))
            if with_optimizer:
                weights = [p.detach().clone() for p in case.model.parameters()]
                optimizer.step()
                with torch.no_grad():  # the poisoned update undone: only the gradients are non-finite
                    for param, weight in zip(case.model.parameters(), weights):
                        param.copy_(weight)
            else:
                monitor.step()
    return monitor.history


@pytest.mark.parametrize("with_optimizer", [True, False], ids=["optimizer", "monitor.step"])
def test_an_unrecorded_step_still_catches_a_non_finite_gradient_at_its_step_and_parameter(with_optimizer):
    names = [name for name, _ in mlp().model.named_parameters()]
    first, last = names[0], names[-2]  # the first layer's weight, the last layer's weight
    poison = {4: [first, last], 5: [names[1]], 7: [first]}  # steps 4, 5, 7: not recorded (gradients_every=3)
    history = _train_poisoned(poison, 9, with_optimizer, gradients_every=3, flush_every=64)
    assert steps(history, "signal_norm") == [0, 3, 6]
    # step 4 is the first, and the backward pass meets the last layer's weight first
    assert history.non_finite == [NonFiniteEvent(4, "param_grad_norm", last)]


def test_the_non_finite_check_reports_once_per_flush_the_first_of_its_window():
    names = [name for name, _ in mlp().model.named_parameters()]
    poison = {1: [names[0]], 2: [names[0]], 40: [names[2]]}
    options = {"gradients_every": 100, "activations_every": None, "updates_every": 20, "flush_every": 1}
    history = _train_poisoned(poison, 45, True, **options)
    # a flush at each step that records something (0, 20, 40: update ratios); each reads the guard
    assert NonFiniteEvent(1, "param_grad_norm", names[0]) in history.non_finite
    assert NonFiniteEvent(40, "param_grad_norm", names[2]) in history.non_finite
    assert all(event.step in (1, 40) for event in history.non_finite)


def test_a_recorded_step_reports_non_finite_gradients_as_before():
    names = [name for name, _ in mlp().model.named_parameters()]
    history = _train_poisoned({3: [names[0]]}, 5, True, gradients_every=3)
    assert history.non_finite == [
        NonFiniteEvent(3, "param_grad_norm", names[0]),
        NonFiniteEvent(3, "weight_grad_norm", "0"),
    ]


def test_the_check_adds_nothing_to_the_record_of_a_finite_run():
    history = _train_poisoned({}, 8, True, gradients_every=4)
    assert history.non_finite == []
    assert steps(history, "param_grad_norm") == [0, 4]


def _train_zoo(name: str, options: dict[str, object] | None, n: int = 8):
    """Adam on a zoo model, plain (``options`` None) or watched; its losses and final weights."""
    torch.manual_seed(0)
    case = ZOO[name]()
    optimizer = torch.optim.Adam(case.model.parameters(), lr=0.01)
    monitor = None if options is None else gradmedic.watch(case.model, optimizer, **options)
    torch.manual_seed(1)
    losses = []
    for _ in range(n):
        optimizer.zero_grad()
        loss = case.loss()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach().clone())
    if monitor is not None:
        monitor.detach()
        assert steps(monitor.history, "signal_norm") == list(range(0, n, 3))
    return losses, {key: value.detach().clone() for key, value in case.model.state_dict().items()}


@pytest.mark.parametrize("name", ["mlp_tanh", "cnn_bn", "lstm", "inplace_dropout", "transformer"])
def test_training_with_hooks_placed_and_removed_step_by_step_is_bit_identical(name):
    plain_losses, plain_state = _train_zoo(name, None)
    losses, state = _train_zoo(name, EVERY)
    assert all(torch.equal(a, b) for a, b in zip(losses, plain_losses))
    assert all(torch.equal(state[key], plain_state[key]) for key in plain_state)
    assert not torch.equal(plain_losses[0], plain_losses[-1])  # it did train


def test_the_check_covers_sparse_gradients_and_parameters_without_one():
    """An ``nn.Embedding(sparse=True)`` gradient made non-finite on an unrecorded step; a frozen
    layer (no gradient) between the others."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    model[1].requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    tokens = torch.randint(0, 10, (8,))
    with gradmedic.watch(
        model, optimizer, gradients_every=3, activations_every=None, updates_every=None
    ) as monitor:
        for step in range(5):
            optimizer.zero_grad()
            model(tokens).pow(2).mean().backward()
            if step == 2:
                grad = model[0].weight.grad
                assert grad is not None and grad.is_sparse
                grad._values()[0, 0] = math.nan
            optimizer.step()
    events = monitor.history.non_finite  # the NaN row reaches the weights: step 3 is non-finite too
    assert events[0] == NonFiniteEvent(2, "param_grad_norm", "0.weight")
    assert all(event.step == 3 for event in events[1:])
