"""Train a setup for its budget and score it: the fraction of the constant baseline's loss it removed.

Example:
    >>> from zoo.core import digits_mlp_setup
    >>> setup = digits_mlp_setup(0)
    >>> setup.steps = 100
    >>> learned(setup, seed=0) > 0.5
    True
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch

from .core import Case, Setup, length, take

#: A run "trains" when its final loss is at most half the constant baseline's: it removed at least
#: half of what a constant prediction leaves. A confirmed failure is a reported model whose best
#: rate stays below this while the reported fix reaches it, or a fix that is this much better.
TRAINS = 0.5
#: How much better (in learned fraction, best rate each) the fix must do to confirm the report.
GAP = 0.2
EVAL_ROWS = 512


def forward_loss(setup: Setup, x: Any, y: torch.Tensor) -> torch.Tensor:
    """The setup's loss on one batch, under its autocast dtype if it has one."""
    ctx = torch.autocast("cpu", dtype=setup.autocast) if setup.autocast else contextlib.nullcontext()
    with ctx:
        output = setup.model(**x) if isinstance(x, dict) else setup.model(x)
    return setup.loss_fn(output, y)


def final_loss(setup: Setup) -> float:
    """Loss on the first ``EVAL_ROWS`` training rows, in eval mode, without gradients."""
    rows = torch.arange(min(EVAL_ROWS, length(setup.x)))
    was_training = setup.model.training
    setup.model.eval()
    with torch.no_grad():
        value = float(forward_loss(setup, take(setup.x, rows), setup.y[rows]))
    setup.model.train(was_training)
    return value


def fit(setup: Setup, seed: int, on_step: Callable[[torch.Tensor], None] | None = None) -> float:
    """Train ``setup.model`` in place for ``setup.steps`` mini-batches; return the learned fraction.

    A run whose loss becomes NaN or infinite stops there and scores 0 (it learned nothing usable).
    """
    g = torch.Generator().manual_seed(seed)
    optimizer = setup.optimizer(setup.model.parameters(), setup.lr)
    n = length(setup.x)
    setup.model.train()
    for _ in range(setup.steps):
        rows = torch.randint(0, n, (min(setup.batch, n),), generator=g)
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss(setup, take(setup.x, rows), setup.y[rows])
        if not torch.isfinite(loss):
            return 0.0
        loss.backward()
        if setup.clip is not None:
            torch.nn.utils.clip_grad_norm_(setup.model.parameters(), setup.clip)
        optimizer.step()
        if on_step is not None:
            on_step(loss)
    end = final_loss(setup)
    return 0.0 if not math.isfinite(end) else max(0.0, 1.0 - end / setup.baseline)


def learned(setup: Setup, seed: int) -> float:
    """:func:`fit` with the global RNG seeded too (dropout), so a run is reproducible."""
    torch.manual_seed(seed)
    return fit(setup, seed)


def rates(case: Case, setup: Setup) -> tuple[float, ...]:
    """The rates the reported model is tried at: the case's own, or the reported one and x3 either side."""
    return case.lrs if case.lrs is not None else around(setup.lr)


def around(lr: float) -> tuple[float, ...]:
    """A rate and its neighbours x3 either side."""
    return (lr / 3, lr, lr * 3)


def best_over_rates(build: Callable[[int], Setup], lrs: tuple[float, ...], seeds: tuple[int, ...]) -> dict:
    """Mean learned fraction over ``seeds`` at each rate, and the best rate's mean."""
    per_rate: dict[str, float] = {}
    for lr in lrs:
        scores = []
        for seed in seeds:
            setup = build(seed)
            setup.lr = lr
            scores.append(learned(setup, seed))
        per_rate[f"{lr:g}"] = round(statistics.fmean(scores), 4)
    best = max(per_rate, key=lambda k: per_rate[k])
    return {"per_rate": per_rate, "best_lr": float(best), "best": per_rate[best]}


def confirm(case: Case, seeds: tuple[int, ...] = (0, 1)) -> dict:
    """Train the reported model and the reported fix; say whether training confirms the report.

    The reported model gets the case's rates (by default the reported rate and x3 either side). The
    fix gets its own rate and x3 either side, or only its own rate when the case pins the reported
    rate (the rate is the reported fault, and the fix is a different rate).
    """
    torch.set_flush_denormal(True)
    reported_setup = case.build(0)
    reported = best_over_rates(case.build, rates(case, reported_setup), seeds)
    if case.build_fix is None:
        return {"reported": reported, "fix": None, "confirmed": reported["best"] >= TRAINS}
    fix_setup = case.build_fix(0)
    fix_lrs = (fix_setup.lr,) if case.lrs is not None and len(case.lrs) == 1 else around(fix_setup.lr)
    fix = best_over_rates(case.build_fix, fix_lrs, seeds)
    confirmed = fix["best"] >= reported["best"] + GAP
    return {"reported": reported, "fix": fix, "confirmed": confirmed}
