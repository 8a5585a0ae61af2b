"""Issue 16: random architectures through watch, checkup, trial and treat.

A seeded generator mixes MLP, CNN and recurrent parts with every ``torch.nn`` activation,
normalization layers, dropout and residual wrappers. For each net: training with and without
the monitor gives bit-identical losses and parameters; checkup, trial and treat raise nothing but
gradmedic errors, leave no hook and leave the model exactly as found; the treated model returns
outputs of the same shapes. 50 nets by default; ``GRADMEDIC_FUZZ=500`` runs more.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

import gradmedic
from gradmedic.errors import GradmedicError

NETS = int(os.environ.get("GRADMEDIC_FUZZ", "50"))

#: Every activation module of ``torch.nn`` (MultiheadAttention aside), built with working arguments.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "Threshold": lambda: nn.Threshold(0.1, 0.0),
    "ReLU": nn.ReLU,
    "RReLU": nn.RReLU,
    "Hardtanh": nn.Hardtanh,
    "ReLU6": nn.ReLU6,
    "Sigmoid": nn.Sigmoid,
    "Hardsigmoid": nn.Hardsigmoid,
    "Tanh": nn.Tanh,
    "SiLU": nn.SiLU,
    "Mish": nn.Mish,
    "Hardswish": nn.Hardswish,
    "ELU": nn.ELU,
    "CELU": nn.CELU,
    "SELU": nn.SELU,
    "GLU": nn.GLU,  # halves the last dimension: the layer before it doubles it
    "GELU": nn.GELU,
    "Hardshrink": nn.Hardshrink,
    "LeakyReLU": nn.LeakyReLU,
    "LogSigmoid": nn.LogSigmoid,
    "Softplus": nn.Softplus,
    "Softshrink": nn.Softshrink,
    "PReLU": nn.PReLU,
    "Softsign": nn.Softsign,
    "Tanhshrink": nn.Tanhshrink,
    "Softmin": lambda: nn.Softmin(dim=-1),
    "Softmax": lambda: nn.Softmax(dim=-1),
    "Softmax2d": nn.Softmax2d,  # images only
    "LogSoftmax": lambda: nn.LogSoftmax(dim=-1),
}
VECTOR_ACTIVATIONS = [name for name in ACTIVATIONS if name != "Softmax2d"]
CLASSES = 3


class Residual(nn.Module):
    """``x + body(x)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class LastStep(nn.Module):
    """A recurrent layer's output at the last time step."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0][:, -1]


@dataclass
class Net:
    model: nn.Module
    x: Tensor
    y: Tensor
    description: str


def _activation(rng: random.Random, width: int, names: list[str]) -> tuple[list[nn.Module], str]:
    name = rng.choice(names)
    if name == "GLU":
        return [nn.Linear(width, 2 * width), nn.GLU()], name
    return [ACTIVATIONS[name]()], name


def _vector_block(rng: random.Random, width: int) -> tuple[nn.Module, str]:
    act, name = _activation(rng, width, VECTOR_ACTIVATIONS)
    layers: list[nn.Module] = [nn.Linear(width, width)]
    norm = rng.choice(["", "batch", "layer"])
    if norm:
        layers.append(nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width))
    layers += act
    if rng.random() < 0.3:
        layers.append(nn.Dropout(0.1))
    return _maybe_residual(rng, layers, f"{norm}{'+' if norm else ''}{name}")


def _image_block(rng: random.Random, channels: int) -> tuple[nn.Module, str]:
    name = rng.choice([n for n in ACTIVATIONS if n != "GLU"])
    layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=1)]
    norm = rng.choice(["", "batch", "group", "instance"])
    norms = {"batch": nn.BatchNorm2d(channels), "group": nn.GroupNorm(2, channels),
             "instance": nn.InstanceNorm2d(channels, affine=True)}  # fmt: skip
    if norm:
        layers.append(norms[norm])
    layers.append(ACTIVATIONS[name]())
    if rng.random() < 0.3:
        layers.append(nn.Dropout2d(0.1))
    block, label = _maybe_residual(rng, layers, f"{norm}{'+' if norm else ''}{name}")
    return block, f"conv:{label}"


def _maybe_residual(rng: random.Random, layers: list[nn.Module], label: str) -> tuple[nn.Module, str]:
    """The block of ``layers``, wrapped as a residual 30 % of the time (its label says so)."""
    body = nn.Sequential(*layers)
    residual = rng.random() < 0.3
    return (Residual(body), f"res:{label}") if residual else (body, label)


def random_net(seed: int) -> Net:
    """A seeded random classifier of CLASSES classes and a batch for it."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    batch, width = rng.choice([4, 8, 16]), rng.choice([4, 8, 16])
    kind = rng.choice(["mlp", "cnn", "rnn"])
    parts: list[nn.Module] = []
    names: list[str] = [kind]
    if kind == "cnn":
        channels, side = rng.choice([2, 4]), 4
        x = torch.randn(batch, 1, side, side)
        parts.append(nn.Conv2d(1, channels, 3, padding=1))
        for _ in range(rng.randint(1, 4)):
            block, name = _image_block(rng, channels)
            parts.append(block)
            names.append(name)
        parts += [nn.Flatten(), nn.Linear(channels * side * side, width)]
    elif kind == "rnn":
        x = torch.randn(batch, rng.randint(2, 12), 3)
        cell = rng.choice([nn.RNN, nn.LSTM, nn.GRU])
        layers = rng.randint(1, 2)
        parts.append(LastStep(cell(3, width, num_layers=layers, batch_first=True)))
        names.append(f"{cell.__name__}x{layers}")
    else:
        x = torch.randn(batch, 5)
        parts.append(nn.Linear(5, width))
    for _ in range(rng.randint(0 if kind != "mlp" else 1, 6)):
        block, name = _vector_block(rng, width)
        parts.append(block)
        names.append(name)
    parts.append(nn.Linear(width, CLASSES))
    y = torch.randint(0, CLASSES, (batch,))
    return Net(nn.Sequential(*parts), x, y, f"seed {seed}: " + " ".join(names))


# -- what is checked --------------------------------------------------------------------------


def _hooks(model: nn.Module) -> int:
    count = 0
    for module in model.modules():
        count += len(module._forward_hooks) + len(module._forward_pre_hooks)
        count += len(module._backward_hooks) + len(module._backward_pre_hooks)
    for param in model.parameters():
        count += len(getattr(param, "_backward_hooks", None) or {})
    return count


def _state(model: nn.Module) -> tuple[list[tuple[str, Tensor]], list[bool], list[Tensor | None]]:
    tensors = [(name, t.detach().clone()) for name, t in model.state_dict().items()]
    grads = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
    return tensors, [m.training for m in model.modules()], grads


def _same_state(a: tuple, b: tuple) -> bool:
    (tensors_a, modes_a, grads_a), (tensors_b, modes_b, grads_b) = a, b
    same_tensors = [n for n, _ in tensors_a] == [n for n, _ in tensors_b] and all(
        torch.equal(s, t) for (_, s), (_, t) in zip(tensors_a, tensors_b)
    )
    same_grads = all((g is None and h is None) or (g is not None and h is not None and torch.equal(g, h))
                     for g, h in zip(grads_a, grads_b))  # fmt: skip
    return same_tensors and modes_a == modes_b and same_grads


def _train(model: nn.Module, net: Net, watched: bool, steps: int = 3) -> list[float]:
    torch.manual_seed(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    options = {
        "gradients_every": 1,
        "activations_every": 1,
        "updates_every": 1,
        "through_time_every": 2,
        "flush_every": 2,
    }
    monitor = gradmedic.watch(model, optimizer, **options) if watched else None
    losses = []
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(net.x), net.y)
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.step(loss)
            losses.append(loss.item())
    finally:
        if monitor is not None:
            monitor.detach()
    if monitor is not None:
        monitor.diagnose()
    return losses


def _gradmedic_only(net: Net, what: str, call: Callable[[], object]) -> object:
    """Run ``call``; a gradmedic error is an answer, anything else is a failure of this test."""
    try:
        return call()
    except GradmedicError:
        return None
    except Exception as error:  # pragma: no cover - what the fuzz is here to find
        raise AssertionError(f"{what} of {net.description} raised {type(error).__name__}: {error}") from error


@pytest.mark.parametrize("seed", range(NETS))
def test_random_architecture(seed: int) -> None:
    torch.set_flush_denormal(True)
    net = random_net(seed)
    plain, watched = copy.deepcopy(net.model), copy.deepcopy(net.model)
    losses = _train(plain, net, watched=False)
    assert _gradmedic_only(net, "watch", lambda: _train(watched, net, watched=True)) == losses, (
        net.description
    )
    for a, b in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(a, b), net.description
    assert _hooks(watched) == 0, net.description

    model = net.model
    with torch.no_grad():
        shapes = tuple(copy.deepcopy(model).eval()(net.x).shape)
    before = _state(model)
    report = _gradmedic_only(net, "checkup", lambda: gradmedic.checkup(model, net.x, net.y))
    if isinstance(report, gradmedic.Report):
        assert (report.score >= 0.5) == report.healthy, f"{net.description}: {report.score} {report.kinds}"
    assert _hooks(model) == 0 and _same_state(before, _state(model)), f"checkup changed {net.description}"
    rng_state = torch.get_rng_state()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    trial = _gradmedic_only(
        net, "trial", lambda: gradmedic.trial(model, (net.x, net.y), optimizer=optimizer, steps=6)
    )
    if isinstance(trial, gradmedic.Report):
        assert (trial.score >= 0.5) == trial.healthy, f"{net.description}: trial {trial.score} {trial.kinds}"
    assert _hooks(model) == 0 and _same_state(before, _state(model)), f"trial changed {net.description}"
    assert not optimizer.state and torch.equal(torch.get_rng_state(), rng_state), net.description
    treatment = _gradmedic_only(
        net, "treat", lambda: gradmedic.treat(model, net.x, net.y, suggest_lr=False, max_rounds=3)
    )
    assert _hooks(model) == 0 and _same_state(before, _state(model)), f"treat changed {net.description}"
    if treatment is not None:
        assert round(treatment.after.score, 2) >= round(treatment.before.score, 2), net.description
        treated = treatment.model.eval()
        with torch.no_grad():
            assert tuple(treated(net.x).shape) == shapes, net.description
        assert _hooks(treated) == 0, net.description


@pytest.mark.parametrize("seed", [7, 57])  # the nets where the raw estimate and the verdict disagree
def test_the_score_agrees_with_the_verdict_where_the_raw_estimate_does_not(seed: int) -> None:
    net = random_net(seed)
    report = gradmedic.checkup(net.model, net.x, net.y)
    assert (report.raw_score >= 0.5) != report.healthy, "no longer a net of disagreement: pick another"
    assert (report.score >= 0.5) == report.healthy
    assert report.score == (0.5 if report.healthy else 0.49)
    assert gradmedic.Report.from_json(report.to_json()).raw_score == pytest.approx(report.raw_score)
