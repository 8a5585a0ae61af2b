"""The embedded default: a deep sigmoid network on scikit-learn's digits, trained under watch.

Example:
    >>> net = sick_network(depth=3, width=8)
    >>> [type(m).__name__ for m in net][:3]
    ['Linear', 'Sigmoid', 'Linear']
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .datasets import load_digits_split
from .history import History
from .profile import layer_profile
from .terminal import fmt, signal_table
from .training import train_classifier


def sick_network(depth: int = 20, width: int = 64, n_in: int = 64, n_out: int = 10) -> nn.Sequential:
    """A plain MLP of ``depth`` Linear+Sigmoid blocks with PyTorch's default initialisation."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else width, width), nn.Sigmoid()]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def sick_example(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The demo's sick network and a batch of 128 digits: a ready TARGET for the command line."""
    torch.manual_seed(seed)
    data = load_digits_split(seed)
    model = sick_network(n_in=data.n_features, n_out=data.n_classes)
    return model, data.x_train[:128], data.y_train[:128]


def signal_summary(history: History) -> str:
    """One sentence: how much of the last layer's backprop signal reaches the first layer."""
    profile = layer_profile(history, "signal_rms").observed()
    if len(profile.values) < 2:
        return "fewer than two layers received a backprop signal"
    first, last = profile.values[0], profile.values[-1]
    ratio = first / last
    per_layer = ratio ** (1 / (len(profile.values) - 1))
    return (
        f"the backprop signal reaching layer {profile.names[0]!r} is {fmt(ratio)} of the one at "
        f"layer {profile.names[-1]!r}: x{per_layer:.2f} per layer over {len(profile.values)} layers"
    )


def run_demo(steps: int = 300, depth: int = 20, seed: int = 0, echo: Callable[[str], None] = print) -> float:
    """Check up the sick network, then train it under the monitor; return its test accuracy."""
    from .diagnosis import checkup, print_report

    torch.manual_seed(seed)
    data = load_digits_split(seed)
    model = sick_network(depth, n_in=data.n_features, n_out=data.n_classes)
    echo(
        f"gradmedic demo: a {depth}-layer sigmoid MLP (PyTorch default init) on scikit-learn's digits "
        f"({len(data.y_train)} train / {len(data.y_test)} test)"
    )
    echo("\n1. Checkup: one forward/backward pass on 128 training digits\n")
    print_report(checkup(model, data.x_train[:128], data.y_train[:128]))
    echo(f"\n2. Training under gradmedic.watch: Adam lr 1e-3, {steps} steps of 64\n")
    result = train_classifier(model, data, steps, lr=1e-3, seed=seed, monitor_options={})
    assert result.history is not None
    echo(signal_table(result.history))
    echo("")
    losses = np.array(result.losses)
    echo(
        f"loss {losses[:10].mean():.3f} -> {losses[-10:].mean():.3f}; test accuracy "
        f"{result.test_accuracy:.1%} (chance: {1 / data.n_classes:.0%})"
    )
    echo(signal_summary(result.history))
    return result.test_accuracy
