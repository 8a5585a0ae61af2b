"""Hooks are owned and always removed: HookSet, and the monitor on every way out."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from torch import nn

import gradmedic
from gradmedic.hooks import HookSet, count_module_hooks
from gradmedic.monitor import ALL_STATS
from models import ZOO, Case, assert_matches_reference, mlp, recurrent, reference

# -- HookSet ---------------------------------------------------------------------------------


def test_hook_set_removes_every_handle_and_is_safe_twice():
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    hooks = HookSet()
    hooks.add(model[0].register_forward_hook(lambda m, i, o: None))
    hooks.add(model[1].register_forward_pre_hook(lambda m, i: None))
    hooks.add(model[0].register_full_backward_hook(lambda m, gi, go: None))
    assert len(hooks) == 3 and count_module_hooks(model) == 3
    hooks.remove()
    assert len(hooks) == 0 and count_module_hooks(model) == 0
    hooks.remove()
    assert count_module_hooks(model) == 0


def test_hook_set_removes_on_exception_in_with_block():
    layer = nn.Linear(2, 2)
    with pytest.raises(ZeroDivisionError), HookSet() as hooks:
        hooks.add(layer.register_forward_hook(lambda m, i, o: None))
        assert count_module_hooks(layer) == 1
        _ = 1 / 0
    assert count_module_hooks(layer) == 0


def test_count_module_hooks_counts_every_kind_on_every_submodule():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)))
    handles = [
        model.register_forward_hook(lambda m, i, o: None),
        model[0].register_forward_pre_hook(lambda m, i: None),
        model[1][0].register_full_backward_hook(lambda m, gi, go: None),
        model[1][0].register_full_backward_pre_hook(lambda m, go: None),
    ]
    assert count_module_hooks(model) == 4
    for handle in handles:
        handle.remove()
    assert count_module_hooks(model) == 0


# -- the monitor's hooks -------------------------------------------------------------------


def _optimizer_hooks(optimizer: torch.optim.Optimizer) -> int:
    return len(optimizer._optimizer_step_pre_hooks) + len(optimizer._optimizer_step_post_hooks)


def _one_step(case: Case, monitor: gradmedic.Monitor) -> None:
    case.model.zero_grad()
    loss = case.loss()
    loss.backward()
    monitor.step(loss)


@pytest.mark.parametrize("name", ["mlp_tanh", "cnn_bn", "lstm", "transformer"])
def test_detach_removes_every_hook(name):
    case = ZOO[name]()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.01)
    monitor = gradmedic.watch(case.model, optimizer, **ALL_STATS)
    assert count_module_hooks(case.model) == len(monitor.layers)
    assert len(optimizer._optimizer_step_pre_hooks) == len(optimizer._optimizer_step_post_hooks) == 1
    _one_step(case, monitor)
    optimizer.step()
    monitor.detach()
    assert not monitor.attached
    assert count_module_hooks(case.model) == 0
    assert _optimizer_hooks(optimizer) == 0


def test_with_block_removes_hooks_on_normal_exit_and_on_exception():
    case = mlp()
    optimizer = torch.optim.Adam(case.model.parameters())
    with gradmedic.watch(case.model, optimizer) as monitor:
        assert count_module_hooks(case.model) == 5
        assert _optimizer_hooks(optimizer) == 2
    assert count_module_hooks(case.model) == 0 and _optimizer_hooks(optimizer) == 0

    with pytest.raises(RuntimeError, match="boom"), gradmedic.watch(case.model, optimizer) as monitor:
        _one_step(case, monitor)
        raise RuntimeError("boom")
    assert not monitor.attached
    assert count_module_hooks(case.model) == 0 and _optimizer_hooks(optimizer) == 0


class _Failing(nn.Module):
    """Raises in the middle of its forward, after some observed layers have run."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.act = nn.Tanh()
        self.second = nn.Linear(3, 3)
        self.fail = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.first(x))
        if self.fail:
            raise ValueError("bad batch")
        return self.second(x)


def test_exception_inside_the_forward_pass_leaves_no_hook():
    model = _Failing()
    with pytest.raises(ValueError, match="bad batch"), gradmedic.watch(model, **ALL_STATS):
        model(torch.randn(2, 3)).sum().backward()
    assert count_module_hooks(model) == 0


def test_exception_inside_the_forward_pass_while_attached_then_detach():
    model = _Failing()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = gradmedic.watch(model, optimizer, **ALL_STATS)
    with pytest.raises(ValueError, match="bad batch"):
        model(torch.randn(2, 3))
    assert monitor.attached and count_module_hooks(model) == 3
    model.fail = False  # training goes on after the failed batch
    loss = model(torch.randn(2, 3)).pow(2).sum()
    loss.backward()
    monitor.step(loss)
    optimizer.step()
    monitor.detach()
    assert count_module_hooks(model) == 0 and _optimizer_hooks(optimizer) == 0
    signal = monitor.history.array("signal_norm")[1]
    assert signal.shape == (1, 3) and np.isfinite(signal).all()


def test_attaching_twice_keeps_one_set_of_hooks():
    case = mlp()
    expected = reference(case)
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.1)
    monitor = gradmedic.watch(case.model, optimizer, **ALL_STATS)
    n_hooks = count_module_hooks(case.model)
    assert monitor.attach() is monitor
    monitor.attach()
    assert count_module_hooks(case.model) == n_hooks
    assert _optimizer_hooks(optimizer) == 2
    with monitor:  # entering the context of an attached monitor attaches nothing more
        assert count_module_hooks(case.model) == n_hooks
        optimizer.zero_grad()
        torch.manual_seed(0)
        loss = case.loss()
        loss.backward()
        monitor.step(loss)
        optimizer.step()
    assert count_module_hooks(case.model) == 0 and _optimizer_hooks(optimizer) == 0
    assert monitor.history.array("signal_norm")[0].tolist() == [0]
    assert_matches_reference(monitor.history, expected)  # each value recorded once, not twice


def test_detach_then_attach_again_records_again():
    case = mlp()
    monitor = gradmedic.watch(case.model, **ALL_STATS)
    _one_step(case, monitor)
    monitor.detach()
    monitor.detach()  # twice is fine
    monitor.attach()
    assert count_module_hooks(case.model) == len(monitor.layers)
    _one_step(case, monitor)
    monitor.detach()
    assert monitor.history.array("signal_norm")[0].tolist() == [0, 1]
    assert count_module_hooks(case.model) == 0


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_detached_monitor_keeps_no_reference_to_the_model(collect_garbage, with_optimizer):
    case = recurrent("LSTM")
    model = case.model
    optimizer = torch.optim.Adam(model.parameters()) if with_optimizer else None
    monitor = gradmedic.watch(model, optimizer, **ALL_STATS)
    for _ in range(3):
        model.zero_grad()
        loss = case.loss()
        loss.backward()
        monitor.step(loss)
        if optimizer is not None:
            optimizer.step()
    model_ref = weakref.ref(model)
    optimizer_ref = weakref.ref(optimizer) if optimizer is not None else None
    param_ref = weakref.ref(next(model.parameters()))
    monitor.detach()
    del model, optimizer, case, loss
    collect_garbage()
    assert model_ref() is None
    assert param_ref() is None
    assert optimizer_ref is None or optimizer_ref() is None
    # the history is still readable
    history = monitor.history
    assert history.array("signal_norm")[1].shape == (3, len(history.layers))
    assert history.array("loss")[0].tolist() == [0, 1, 2]


def test_attach_after_the_model_is_gone_is_a_model_error(collect_garbage):
    model = nn.Linear(2, 2)
    monitor = gradmedic.watch(model)
    monitor.detach()
    del model
    collect_garbage()
    with pytest.raises(gradmedic.ModelError, match="garbage-collected"):
        monitor.attach()


def test_hooks_of_other_owners_are_left_alone():
    case = mlp()
    mine = case.model[0].register_forward_hook(lambda m, i, o: None)
    with gradmedic.watch(case.model):
        pass
    assert count_module_hooks(case.model) == 1
    mine.remove()


def test_failure_while_attaching_leaves_no_hook(monkeypatch):
    """Forced failure half-way through registration: the hooks already placed are removed."""
    case = mlp()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.1)

    def refuse(*args, **kwargs):
        raise RuntimeError("registration refused")

    monkeypatch.setattr(optimizer, "register_step_post_hook", refuse)
    with pytest.raises(RuntimeError, match="registration refused"):
        gradmedic.watch(case.model, optimizer)
    assert count_module_hooks(case.model) == 0 and _optimizer_hooks(optimizer) == 0

    monkeypatch.setattr(case.model[2], "register_forward_hook", refuse)
    monitor = gradmedic.Monitor(case.model)
    with pytest.raises(RuntimeError, match="registration refused"):
        monitor.attach()
    assert not monitor.attached and count_module_hooks(case.model) == 0
