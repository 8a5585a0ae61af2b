"""A small, seeded training loop for classifiers: what the demo, the benchmarks and the lab use.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from gradmedic.datasets import load_digits_split
    >>> data = load_digits_split(seed=0)
    >>> result = train_classifier(nn.Linear(64, 10), data, steps=50, lr=1e-2, seed=0)
    >>> result.test_accuracy > 0.8
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .datasets import Split
from .history import History
from .monitor import Monitor

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "momentum": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
}


@dataclass
class TrainResult:
    """Losses per step, the final test accuracy and (if watched) the run's History."""

    losses: list[float] = field(default_factory=list)
    test_accuracy: float = float("nan")
    history: History | None = None


def make_optimizer(name: str, params: object, lr: float) -> torch.optim.Optimizer:
    """An optimizer by name: ``sgd``, ``momentum``, ``rmsprop``, ``adagrad`` or ``adam``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correctly classified samples (the model is put in eval mode, then back)."""
    was_training = model.training
    model.eval()
    try:
        return (model(x).argmax(dim=1) == y).float().mean().item()
    finally:
        model.train(was_training)


def train_classifier(
    model: nn.Module,
    data: Split,
    steps: int,
    lr: float,
    seed: int = 0,
    batch_size: int = 64,
    optimizer: str = "adam",
    monitor_options: dict[str, object] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with cross-entropy for ``steps`` mini-batch steps.

    With ``monitor_options`` (a dict of :func:`gradmedic.watch` options, ``{}`` for the
    defaults) the run is watched and its History is kept in the result.
    """
    generator = torch.Generator().manual_seed(seed)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    monitor = Monitor(model, opt, **monitor_options) if monitor_options is not None else None
    result = TrainResult()
    model.train()
    with monitor if monitor is not None else contextlib.nullcontext():
        for step in range(steps):
            index = torch.randint(0, len(data.y_train), (batch_size,), generator=generator)
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(data.x_train[index]), data.y_train[index])
            loss.backward()
            opt.step()
            if monitor is not None:
                monitor.step(loss)
            result.losses.append(loss.item())
            if on_step is not None:
                on_step(step, result.losses[-1])
    result.test_accuracy = accuracy(model, data.x_test, data.y_test)
    result.history = monitor.history if monitor is not None else None
    return result


@dataclass
class SweepResult:
    """The best learning rate of a sweep (chosen on validation data) and its test accuracy."""

    lr: float
    val_accuracy: float
    test_accuracy: float
    by_lr: dict[float, float] = field(default_factory=dict)


def validation_split(data: Split, fraction: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """Split ``data``'s training set into (train, validation) splits; the test set is untouched."""
    order = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))
    n_val = round(len(order) * fraction)
    val, train = order[:n_val], order[n_val:]
    fit = Split(data.x_train[train], data.y_train[train], data.x_train[val], data.y_train[val])
    return fit, Split(data.x_train[train], data.y_train[train], data.x_test, data.y_test)


def sweep_lr(
    make_model: Callable[[], nn.Module],
    data: Split,
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3),
    steps: int = 600,
    seed: int = 0,
    optimizer: str = "adam",
) -> SweepResult:
    """Train a fresh model per rate, pick the rate with the best validation accuracy, and report
    that model's test accuracy: a fair comparison gives every configuration its own rate.
    """
    fit, final = validation_split(data, seed=seed)
    best: tuple[float, float, float] | None = None
    by_lr = {}
    for lr in lrs:
        torch.manual_seed(seed)
        model = make_model()
        result = train_classifier(model, fit, steps, lr, seed, optimizer=optimizer)
        by_lr[lr] = result.test_accuracy  # the fit split's "test" is the validation set
        if best is None or result.test_accuracy > best[1]:
            best = (lr, result.test_accuracy, accuracy(model, final.x_test, final.y_test))
    assert best is not None
    return SweepResult(best[0], best[1], best[2], by_lr)
