"""When to record: every step, every N steps, log-spaced, or never.

Example:
    >>> from gradmedic.schedules import as_schedule
    >>> [s for s in range(12) if as_schedule(5, "every")(s)]
    [0, 5, 10]
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Every:
    """Record steps 0, n, 2n, ...

    Example:
        >>> Every(3)(6), Every(3)(7)
        (True, False)
    """

    n: int

    def __call__(self, step: int) -> bool:
        return step % self.n == 0


@dataclass(frozen=True)
class LogSpaced:
    """Record about ``per_decade`` steps per power of ten, dense early and sparse late.

    Example:
        >>> [s for s in range(200) if LogSpaced(4)(s)]
        [0, 1, 2, 3, 4, 5, 6, 10, 18, 32, 56, 100, 178]
    """

    per_decade: int = 10

    def __call__(self, step: int) -> bool:
        if step <= 6:
            return True
        k = round(math.log10(step) * self.per_decade)
        return round(10 ** (k / self.per_decade)) == step


@dataclass(frozen=True)
class DenseStart:
    """Record every step for the first ``dense`` steps, then every ``n``-th step.

    The default of :func:`gradmedic.watch`'s ``every``: a short run (a trial, a first look) is
    recorded in full, and a long one pays for its hooks on one step in ``n`` only.

    Example:
        >>> [s for s in range(60) if DenseStart(n=20, dense=5)(s)]
        [0, 1, 2, 3, 4, 20, 40]
    """

    n: int = 20
    dense: int = 20

    def __call__(self, step: int) -> bool:
        return step < self.dense or step % self.n == 0


@dataclass(frozen=True)
class Never:
    """Never record (the statistic is turned off)."""

    def __call__(self, step: int) -> bool:
        return False


Schedule = Callable[[int], bool]


def _check_arity(function: Callable[..., object], option: str) -> None:
    """A schedule function must accept one argument, the step (checked now, not in a hook)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return
    try:
        signature.bind(0)
    except TypeError:
        raise ConfigError(
            f"{option}={function!r} takes {signature}: a schedule function takes one argument, the step "
            "(e.g. lambda step: step % 10 == 0), and returns whether to record it"
        ) from None


def as_schedule(value: object, option: str) -> Schedule:
    """Turn an option value into a schedule: a positive int, ``"log"``, ``None`` or a callable.

    Example:
        >>> as_schedule("log", "every")
        LogSpaced(per_decade=10)
        >>> as_schedule(None, "every")(0)
        False
    """
    if value is None or value is False:
        return Never()
    if value == "log":
        return LogSpaced()
    if isinstance(value, bool) or not isinstance(value, int):
        if callable(value):
            _check_arity(value, option)
            return value
        raise ConfigError(
            f"{option}={value!r} is not a schedule: give a positive step interval (1 = every "
            f"step), 'log' for log-spaced steps, None to turn it off, or a function step -> bool"
        )
    if value <= 0:
        raise ConfigError(
            f"{option}={value}: a schedule must be a positive step interval (1 = every step); "
            f"use None to turn this statistic off"
        )
    return Every(value)
