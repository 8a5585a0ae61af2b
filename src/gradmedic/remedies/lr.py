"""Remedy 7: the learning rate (a range test, Smith 2017) and an adaptive optimizer.

Example:
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    >>> result = find_lr(nn.Linear(8, 3), (x, y), nn.functional.cross_entropy, steps=60)
    >>> 1e-5 < result.suggestion < 1.0
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..diagnosis.findings import Kind, Report
from ..errors import ConfigError
from ..running import call_model, preserved
from ..training import make_optimizer

SMOOTHING = 0.9
DIVERGED = 4.0
#: The optimizers of :func:`gradmedic.training.make_optimizer` that can step sparse gradients.
SPARSE_READY = ("sgd", "momentum", "adagrad")


def sparse_gradient_layers(model: nn.Module) -> list[str]:
    """Names of the embeddings that make sparse gradients (``nn.Embedding(sparse=True)``).

    Example:
        >>> sparse_gradient_layers(nn.Sequential(nn.Embedding(5, 2, sparse=True), nn.Linear(2, 1)))
        ['0']
    """
    kinds = (nn.Embedding, nn.EmbeddingBag)
    return [name for name, module in model.named_modules() if isinstance(module, kinds) and module.sparse]


@dataclass
class LRFinderResult:
    """The range test's curve and the rate it suggests."""

    lrs: list[float]
    losses: list[float]
    suggestion: float

    def to_dict(self) -> dict[str, Any]:
        return {"lrs": self.lrs, "losses": self.losses, "suggestion": self.suggestion}


def find_lr(
    model: nn.Module,
    data: tuple[Any, Tensor] | Iterable[tuple[Any, Tensor]],
    loss_fn: Callable[[Any, Tensor], Tensor],
    optimizer: str = "adam",
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 100,
) -> LRFinderResult:
    """Train a copy of ``model`` while the rate grows geometrically from ``start`` to ``end``;
    stop when the smoothed loss exceeds 4x its best. The suggestion is the rate where the
    smoothed loss fell fastest (per log step), divided by 2 for safety, but at most a tenth of
    the rate at the smallest loss. The model itself is not changed.

    Args:
        data: one ``(inputs, targets)`` batch (used at every step) or an iterable of batches.
    """
    if not 0 < start < end or steps < 5:
        raise ConfigError("find_lr needs 0 < start < end and at least 5 steps")
    _check_data(data, loss_fn)
    sparse = sparse_gradient_layers(model)
    if sparse and optimizer not in SPARSE_READY:
        raise ConfigError(
            f"find_lr with {optimizer!r} cannot step the sparse gradients of {', '.join(sparse)} "
            f"(an embedding with sparse=True): pass optimizer= one of {', '.join(SPARSE_READY)}, "
            "or build the embedding with sparse=False"
        )
    trial = copy.deepcopy(model)
    trial.train()
    opt = make_optimizer(optimizer, trial.parameters(), start)
    factor = (end / start) ** (1 / (steps - 1))
    lrs, losses, smooth, best = [], [], 0.0, math.inf
    with preserved(model):
        for step, (inputs, targets) in zip(range(steps), _batches(data)):
            lr = start * factor**step
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(call_model(trial, inputs), targets)
            loss.backward()
            opt.step()
            value = loss.item()
            smooth = value if step == 0 else SMOOTHING * smooth + (1 - SMOOTHING) * value
            lrs.append(lr)
            losses.append(smooth)
            best = min(best, smooth)
            if not math.isfinite(smooth) or smooth > DIVERGED * best:
                break
    return LRFinderResult(lrs, losses, suggest(lrs, losses))


_HOW = "call find_lr(model, (inputs, targets), loss_fn), or give an iterable of (inputs, targets) batches"


def _check_data(data: Any, loss_fn: Any) -> None:
    """Refuse, before anything runs, data that is not a batch or batches, and a loss that is no function."""
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise ConfigError(f"find_lr got {type(data).__name__} as data, not (inputs, targets): {_HOW}")
    if not callable(loss_fn):
        raise ConfigError(f"find_lr got {type(loss_fn).__name__} as loss_fn, not a function: {_HOW}")


def _batches(data: Any) -> Iterator[tuple[Any, Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], Tensor):
        while True:
            yield data
    while True:
        for batch in data:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ConfigError(
                    f"find_lr: a batch of the data is a {type(batch).__name__}, not (inputs, targets): {_HOW}"
                )
            yield batch[0], batch[1]


def suggest(lrs: list[float], losses: list[float]) -> float:
    """Half the rate of steepest descent of the loss curve, at most a tenth of the minimum's rate."""
    finite = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if len(finite) < 3:
        return lrs[0]
    rates, values = zip(*finite)
    slopes = [(values[i + 1] - values[i]) / math.log(rates[i + 1] / rates[i]) for i in range(len(values) - 1)]
    steepest = rates[min(range(len(slopes)), key=slopes.__getitem__)]
    at_minimum = rates[min(range(len(values)), key=values.__getitem__)]
    return min(steepest / 2, at_minimum / 10)


def suggest_optimizer(report: Report) -> tuple[str, str]:
    """An optimizer name and why, from a diagnosis: Adam where layers get tiny gradients.

    Example:
        >>> suggest_optimizer(Report([], 1.0, "checkup"))[0]
        'adam'
    """
    kinds = set(report.kinds)
    if kinds & {Kind.VANISHING_GRADIENT, Kind.STALLED_LAYERS, Kind.VANISHING_THROUGH_TIME, Kind.LOSS_PLATEAU}:
        return "adam", "per-parameter step sizes let the layers with small gradients move (Adam)"
    if kinds & {Kind.EXPLODING_GRADIENT, Kind.NON_FINITE}:
        return "adam", "Adam's normalised steps bound each update; use it with gradient clipping"
    if Kind.DEAD_UNITS in kinds:
        return "rmsprop", "smaller effective steps on large gradients keep units from being pushed dead"
    return "adam", "a robust default for a healthy network (SGD with momentum also fits)"
