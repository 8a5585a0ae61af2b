"""Issue 16, watch(): bad options are refused before any hook is placed; odd runs are refused or
watched, never crashed into.

Each test here failed on the code before its fix (see the commit messages).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

import gradmedic
from gradmedic.errors import ConfigError, UnsupportedError


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _hooks_left(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    on_model = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    on_optimizer = len(optimizer._optimizer_step_pre_hooks) + len(optimizer._optimizer_step_post_hooks)
    return on_model + on_optimizer


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()


BAD_OPTIONS = [
    ({"log_path": "no/such/dir/run.jsonl"}, "does not exist"),
    ({"log_path": "."}, "is a directory"),
    ({"log_path": 123}, "give a file path"),
    ({"gradients_every": lambda step, other: True}, "takes one argument"),
    ({"activations_every": lambda: True}, "takes one argument"),
    ({"scaler": "yes"}, "GradScaler"),
    ({"max_rows": 0}, "positive integer"),
    ({"flush_every": "often"}, "positive integer"),
]


@pytest.mark.parametrize(
    ("options", "says"),
    BAD_OPTIONS,
    ids=[f"{name}-{i}" for i, (o, _) in enumerate(BAD_OPTIONS) for name in o],
)
def test_bad_option_is_refused_before_any_hook_and_training_goes_on(options, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ConfigError, match=says):
        gradmedic.watch(model, optimizer, **options)
    assert _hooks_left(model, optimizer) == 0
    _train(model, optimizer, 40)  # past a flush: nothing of gradmedic runs any more


def test_unwritable_log_file_is_refused_before_any_hook(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    try:
        if (folder / "probe").exists() or _can_write(folder):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(ConfigError, match="cannot be written"):
            gradmedic.watch(model, optimizer, log_path=folder / "run.jsonl")
    finally:
        folder.chmod(0o700)
    assert _hooks_left(model, optimizer) == 0


def _can_write(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("")
    except OSError:
        return False
    return True


@pytest.mark.parametrize("loss", ["low", torch.ones(3), [1.0]], ids=["str", "vector", "list"])
def test_step_refuses_a_loss_that_is_not_a_scalar(loss):
    model = _mlp()
    with gradmedic.watch(model) as monitor, pytest.raises(ConfigError, match="scalar loss"):
        model(torch.randn(8, 4)).pow(2).mean().backward()
        monitor.step(loss)


def test_per_sample_gradients_with_vmap_on_a_watched_model():
    model = _mlp()
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, p, (x[None],)).pow(2).sum()

    with gradmedic.watch(model) as monitor:
        per_sample = vmap(grad(loss), in_dims=(None, 0))(params, torch.randn(5, 4))
        model(torch.randn(8, 4)).pow(2).mean().backward()  # an ordinary step is still recorded
        monitor.step()
    assert per_sample["0.weight"].shape == (5, 8, 4)
    steps, signal = monitor.history.array("signal_norm")
    assert steps.tolist() == [0] and torch.isfinite(torch.from_numpy(signal)).all()


def test_meta_device_model_is_refused_clearly_by_watch_and_checkup():
    model = _mlp().to("meta")
    with pytest.raises(UnsupportedError, match=r"meta device.*to_empty"):
        gradmedic.watch(model)
    with pytest.raises(UnsupportedError, match="meta device"):
        gradmedic.checkup(model, torch.randn(3, 4, device="meta"))
    assert all(not m._forward_hooks for m in model.modules())


def test_an_optimizer_that_never_steps_is_warned_about():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.warns(UserWarning, match="never ran step"), gradmedic.watch(model, optimizer):
        for _ in range(3):
            model(torch.randn(8, 4)).pow(2).mean().backward()


def test_no_warning_when_the_optimizer_steps():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gradmedic.watch(model, optimizer) as monitor:
            _train(model, optimizer, 2)
    assert len(monitor.history) == 2


@pytest.mark.parametrize("loss", [0.5, 2, np.float32(0.5), torch.tensor(0.5), torch.tensor([0.5])])
def test_step_takes_every_kind_of_scalar_loss(loss):
    model = _mlp()
    with gradmedic.watch(model) as monitor:
        model(torch.randn(8, 4)).pow(2).mean().backward()
        monitor.step(loss)
    assert monitor.history.array("loss")[1].ravel().tolist() == [float(loss)]
