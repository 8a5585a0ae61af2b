"""Seeded synthetic sequence tasks that need a long memory: the adding problem and copy memory.

Both are the classic tests of learning across many time steps (Hochreiter & Schmidhuber, 1997;
Arjovsky, Shah & Bengio, 2016). Each generator draws from its own ``torch.Generator``, so the same
``seed`` gives the same data on every call and the global random state is left alone.

* **Adding problem** (:func:`adding_problem`): a sequence of ``length`` steps with two channels,
  a value drawn from U(0, 1) and a marker; exactly two steps are marked, one in each half of the
  sequence. The target is the sum of the two marked values. Always predicting 1 (the mean of the
  target) gives the mean squared error :data:`ADDING_BASELINE` = Var(U + U') = 1/6 ~ 0.167; a
  sequence counts as solved when its squared error is below :data:`SOLVED_ERROR` (0.04).
* **Copy memory** (:func:`copy_memory`): ten symbols from eight categories, ``length`` blank steps
  (the last one a delimiter that says "recall now"), then ten blank steps while the model writes
  the ten symbols back. A model without memory can only learn when to write and which symbols
  exist: it predicts blanks exactly and guesses uniformly among the eight categories for the ten
  recalled symbols, a cross-entropy per step of :func:`copy_memory_baseline` =
  ``10 log 8 / (length + 20)``.

Example:
    >>> x, y = adding_problem(4, 50, seed=0)
    >>> tuple(x.shape), tuple(y.shape)
    ((4, 50, 2), (4, 1))
    >>> x[:, :, 1].sum(dim=1).tolist()
    [2.0, 2.0, 2.0, 2.0]
    >>> round(ADDING_BASELINE, 3)
    0.167
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .errors import ConfigError

#: Mean squared error of always predicting 1 on the adding problem: Var(U(0,1) + U(0,1)) = 1/6.
ADDING_BASELINE = 1.0 / 6.0
#: A sequence of the adding problem counts as solved when its squared error is below this.
SOLVED_ERROR = 0.04
#: Copy memory: symbols to recall, categories they are drawn from, and the token ids used.
COPY_SYMBOLS, COPY_CATEGORIES = 10, 8
BLANK, DELIMITER = 0, COPY_CATEGORIES + 1


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _check(n: int, length: int, least: int) -> None:
    if n < 1 or length < least:
        raise ConfigError(f"n={n}, length={length}: give n >= 1 and length >= {least}")


def adding_problem(
    n: int, length: int, *, seed: int = 0, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Inputs ``[n, length, 2]`` (value, marker) and targets ``[n, 1]`` of the adding problem.

    One marker falls uniformly in the first half of each sequence, the other in the second half,
    so the model must carry the first value across ``length / 2`` steps on average, and up to
    ``length - 1``.

    Args:
        n: number of sequences.
        length: time steps per sequence (at least 2).
        seed: seed of the generator; the same seed gives the same data.
        device: where to put the tensors (default: CPU).

    Returns:
        ``(inputs, targets)``, float32, batch first.

    Example:
        >>> x, y = adding_problem(3, 10, seed=1)
        >>> bool(torch.allclose((x[..., 0] * x[..., 1]).sum(dim=1, keepdim=True), y))
        True
    """
    _check(n, length, 2)
    generator = _generator(seed)
    values = torch.rand(n, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, length, (n,), generator=generator)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = torch.stack([values, markers], dim=-1)
    targets = (values * markers).sum(dim=1, keepdim=True)
    return inputs.to(device), targets.to(device)


def solved_fraction(predictions: Tensor, targets: Tensor, tolerance: float = SOLVED_ERROR) -> float:
    """Fraction of sequences whose squared error is below ``tolerance`` (adding problem).

    Example:
        >>> solved_fraction(torch.tensor([[1.0], [1.5]]), torch.tensor([[1.1], [1.0]]))
        0.5
    """
    error = (predictions.detach() - targets).pow(2).reshape(len(targets), -1).mean(dim=1)
    return float((error < tolerance).float().mean())


def copy_memory(
    n: int,
    length: int,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """One-hot inputs ``[n, length + 20, 10]`` and integer targets ``[n, length + 20]``.

    Token ids: 0 blank, 1..8 the symbols, 9 the delimiter. The input is the ten symbols,
    ``length - 1`` blanks, the delimiter and ten blanks; the target is ``length + 10`` blanks
    followed by the ten symbols.

    Args:
        n: number of sequences.
        length: the gap the symbols must be remembered over (at least 1).
        seed: seed of the generator.
        device: where to put the tensors (default: CPU).

    Returns:
        ``(inputs, targets)``: float32 one-hot inputs, int64 targets, batch first. Score a model
        with :func:`copy_memory_loss`.

    Example:
        >>> x, y = copy_memory(2, 5, seed=0)
        >>> tuple(x.shape), tuple(y.shape)
        ((2, 25, 10), (2, 25))
        >>> bool((x[:, :10].argmax(-1) == y[:, -10:]).all()), x[0, 14].argmax().item()
        (True, 9)
    """
    _check(n, length, 1)
    generator = _generator(seed)
    symbols = torch.randint(1, COPY_CATEGORIES + 1, (n, COPY_SYMBOLS), generator=generator)
    total = length + 2 * COPY_SYMBOLS
    tokens = torch.full((n, total), BLANK, dtype=torch.long)
    tokens[:, :COPY_SYMBOLS] = symbols
    tokens[:, COPY_SYMBOLS + length - 1] = DELIMITER
    targets = torch.full((n, total), BLANK, dtype=torch.long)
    targets[:, -COPY_SYMBOLS:] = symbols
    inputs = F.one_hot(tokens, COPY_CATEGORIES + 2).float()
    return inputs.to(device), targets.to(device)


def copy_memory_loss(output: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy per time step of logits ``[n, steps, 10]`` against ``[n, steps]``.

    Example:
        >>> x, y = copy_memory(2, 5)
        >>> round(copy_memory_loss(torch.zeros(2, 25, 10), y).item(), 4) == round(math.log(10), 4)
        True
    """
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), targets.reshape(-1))


def copy_memory_baseline(length: int) -> float:
    """Cross-entropy per step of the best memoryless model: ``10 log 8 / (length + 20)``.

    Example:
        >>> round(copy_memory_baseline(100), 4)
        0.1733
    """
    return COPY_SYMBOLS * math.log(COPY_CATEGORIES) / (length + 2 * COPY_SYMBOLS)


__all__ = [
    "ADDING_BASELINE",
    "SOLVED_ERROR",
    "adding_problem",
    "copy_memory",
    "copy_memory_baseline",
    "copy_memory_loss",
    "solved_fraction",
]
