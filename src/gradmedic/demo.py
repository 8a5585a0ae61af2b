"""The embedded default: a deep sigmoid network on scikit-learn's digits, trained under watch.

Example:
    >>> net = sick_network(depth=3, width=8)
    >>> [type(m).__name__ for m in net][:3]
    ['Linear', 'Sigmoid', 'Linear']
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from . import registry
from .datasets import load_digits_split
from .history import History
from .layer_profiles import layer_profile
from .terminal import fmt, log_bar
from .training import train_classifier

#: Class names of the weight layers (Linear, Conv...), as a History keeps them.
WEIGHT_TYPES = registry.class_names(registry.WEIGHT_TYPES)


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


def weight_layer_signal(history: History) -> list[float]:
    """Backprop signal (RMS) of the Linear/Conv layers, in forward order."""
    profile = layer_profile(history, "signal_rms")
    return [float(v) for layer, v in zip(profile.layers, profile.values) if layer.type in WEIGHT_TYPES]


def side_by_side(before: list[float], after: list[float]) -> str:
    """Two log-scale bar columns, one row per Linear layer, on one common scale."""
    values = [v for v in before + after if math.isfinite(v) and v > 0]
    low, high = (min(values), max(values)) if values else (1.0, 1.0)
    width = 22
    lines = [f"{'Linear #':<9}{'sick: signal rms':>17}  {'':<{width}}{'treated':>10}  {'':<{width}}"]
    for index in range(max(len(before), len(after))):
        b = before[index] if index < len(before) else math.nan
        a = after[index] if index < len(after) else math.nan
        lines.append(
            f"{index:<9}{fmt(b):>17}  {log_bar(b, low, high, width)}"
            f"{fmt(a):>10}  {log_bar(a, low, high, width)}"
        )
    return "\n".join(lines)


def run_demo(steps: int = 300, depth: int = 20, seed: int = 0, echo: Callable[[str], None] = print) -> float:
    """Checkup of the sick network, treat, then train both: accuracy and gradient side by side.

    Returns the treated network's test accuracy.
    """
    from .diagnosis import checkup, print_report
    from .remedies import treat

    torch.manual_seed(seed)
    data = load_digits_split(seed)
    model = sick_network(depth, n_in=data.n_features, n_out=data.n_classes)
    batch = (data.x_train[:256], data.y_train[:256])
    echo(
        f"gradmedic demo: a {depth}-layer sigmoid MLP (PyTorch default init) on scikit-learn's digits "
        f"({len(data.y_train)} train / {len(data.y_test)} test)"
    )
    echo("\n1. Checkup: one forward/backward pass on 256 training digits\n")
    print_report(checkup(model, *batch))
    echo("\n2. Treatment: remedies applied to a copy, each kept only if a new checkup scores better\n")
    treatment = treat(model, *batch, suggest_lr=False)
    echo(treatment.summary())
    echo(f"\n3. Proof: both trained under gradmedic.watch, Adam lr 1e-3, {steps} steps of 64\n")
    sick = train_classifier(model, data, steps, lr=1e-3, seed=seed, monitor_options={})
    cured = train_classifier(treatment.model, data, steps, lr=1e-3, seed=seed, monitor_options={})
    assert sick.history is not None and cured.history is not None
    echo(side_by_side(weight_layer_signal(sick.history), weight_layer_signal(cured.history)))
    echo("")
    for name, run in (("sick", sick), ("treated", cured)):
        assert run.history is not None
        losses = np.array(run.losses)
        echo(
            f"{name:>8}: loss {losses[:10].mean():.3f} -> {losses[-10:].mean():.3f}, test accuracy "
            f"{run.test_accuracy:.1%} (chance {1 / data.n_classes:.0%}); {signal_summary(run.history)}"
        )
    return cured.test_accuracy
