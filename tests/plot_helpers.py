"""Histories for the picture tests: recorded from small real models, or built by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import gradmedic
from gradmedic.history import History, NonFiniteEvent
from gradmedic.layers import LayerInfo


def mlp(depth: int, activation: type[nn.Module], width: int = 16, kaiming: bool = False) -> nn.Sequential:
    """``depth`` blocks of Linear + activation, then a Linear to one output."""
    blocks: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        if kaiming:
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        blocks += [linear, activation()]
    return nn.Sequential(*blocks, nn.Linear(width, 1))


def record(model: nn.Module, steps: int = 6, seed: int = 0, lr: float = 0.05) -> History:
    """Train ``model`` on a fixed regression task for ``steps`` steps, recording everything."""
    torch.manual_seed(seed)
    width = next(model.parameters()).shape[1]
    x = torch.randn(64, width)
    y = x[:, :1].sin()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with gradmedic.watch(model, opt, activations_every=1, updates_every=1) as monitor:
        for _ in range(steps):
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            monitor.step(loss)
            opt.step()
    return monitor.history


def vanishing(depth: int = 12) -> History:
    """A deep sigmoid MLP: the backprop signal shrinks by orders of magnitude to the input."""
    torch.manual_seed(1)
    return record(mlp(depth, nn.Sigmoid))


def healthy(depth: int = 3) -> History:
    """A shallow ReLU MLP with He initialization: the signal stays within a decade or two."""
    torch.manual_seed(2)
    return record(mlp(depth, nn.ReLU, kaiming=True))


def layers(n: int, kind: str = "param", type_: str = "Linear") -> list[LayerInfo]:
    return [LayerInfo(f"layer{i}", type_, kind, forward_index=i) for i in range(n)]


def synthetic(n_layers: int, metrics: dict[str, np.ndarray], steps: list[int] | None = None) -> History:
    """A History of ``n_layers`` param layers with the given ``[rows, n_layers]`` arrays."""
    history = History(layers(n_layers), [])
    for metric, values in metrics.items():
        values = np.asarray(values, dtype=float)
        history.append(metric, steps if steps is not None else list(range(len(values))), values)
    return history


def with_non_finite(n_layers: int = 4) -> History:
    """Every metric recorded over 5 steps, with Inf values, a NaN event and exact zeros."""
    rng = np.random.default_rng(0)
    values = 10.0 ** rng.uniform(-5, 0, size=(5, n_layers))
    values[2, 1] = np.inf
    values[4, 0] = 0.0
    fractions = rng.uniform(0, 1, size=(5, n_layers))
    fractions[3, 2] = np.inf
    metrics = {m: values for m in ("signal_rms", "signal_norm", "weight_grad_norm", "update_ratio")}
    history = synthetic(n_layers, {**metrics, "act_saturated": fractions, "act_dead": fractions})
    history.add_event(NonFiniteEvent(3, "signal_rms", "layer3"))
    history.add_event(NonFiniteEvent(3, "act_saturated", "layer2"))
    return history


def reload(history: History, tmp_path: Path, name: str = "history.jsonl") -> History:
    """Save ``history`` as JSON Lines and load it back, as a user replotting a run would."""
    return History.load(history.save(tmp_path / name))
