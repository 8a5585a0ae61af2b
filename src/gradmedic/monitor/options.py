"""The options of :func:`gradmedic.watch`: their defaults and their checks (before any hook).

Example:
    >>> from gradmedic.monitor.options import validate_options
    >>> validate_options({"gradients_every": 5})["flush_every"]
    32
    >>> from gradmedic.errors import ConfigError
    >>> try:
    ...     validate_options({"flush_evry": 5})
    ... except ConfigError as error:
    ...     print(str(error)[:56])
    unknown option 'flush_evry': did you mean 'flush_every'?
"""

from __future__ import annotations

import difflib
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from .._deprecation import renamed_keyword
from ..errors import ConfigError
from ..schedules import DenseStart, Schedule, as_schedule
from ..sinks import Sink, check_sinks

#: Options of :func:`watch` and their defaults.
#: The schedules are chosen so that the default costs at most 3 % of a training step (measured
#: by ``benchmarks/overhead.py``; see the README): a recorded step costs up to ~1.25x a plain
#: one with the signal and weight-gradient norms, up to ~1.6x with every statistic, and an
#: unrecorded step pays only a fused norm of the gradients (the non-finite check, ~0.5 %).
DEFAULT_OPTIONS: dict[str, Any] = {
    "gradients_every": DenseStart(n=20, dense=50),  # dense: the loss rules judge 50 rows (PLATEAU_STEPS)
    "activations_every": 100,
    "updates_every": 100,
    "through_time_every": 200,  # the replay costs about a plain step of the layer (README)
    "flush_every": 32,
    "max_rows": 4096,
    "log_path": None,
    "sinks": None,
    "scaler": None,
    "distributed": "auto",
}

#: Options for "every statistic on every step" (what the checkup uses).
ALL_STATS: dict[str, Any] = {
    "gradients_every": 1,
    "activations_every": 1,
    "updates_every": 1,
    "through_time_every": 1,
}


@dataclass(frozen=True, kw_only=True)
class Options:
    """The options of one monitor, checked and typed (see :class:`~gradmedic.monitor.Monitor`).

    Example:
        >>> options = Options.parse({"gradients_every": 5, "flush_every": 8})
        >>> options.gradients_every(10), options.gradients_every(11), options.flush_every
        (True, False, 8)
        >>> options.given["gradients_every"]
        5
    """

    gradients_every: Schedule
    activations_every: Schedule
    updates_every: Schedule
    through_time_every: Schedule
    flush_every: int
    max_rows: int
    log_path: Path | None
    sinks: list[Sink]
    scaler: object
    distributed: object
    given: dict[str, Any] = field(compare=False)  # every option as given, the defaults filled in

    @classmethod
    def parse(cls, options: dict[str, Any]) -> Options:
        """Check every option (an unknown name gets a did-you-mean) before anything is attached.

        Raises:
            ConfigError: naming the first option that is unknown or has a bad value.
        """
        given = validate_options(options)
        return cls(
            gradients_every=as_schedule(given["gradients_every"], "gradients_every"),
            activations_every=as_schedule(given["activations_every"], "activations_every"),
            updates_every=as_schedule(given["updates_every"], "updates_every"),
            through_time_every=as_schedule(given["through_time_every"], "through_time_every"),
            flush_every=positive_int(given["flush_every"], "flush_every"),
            max_rows=positive_int(given["max_rows"], "max_rows"),
            log_path=log_path(given["log_path"]),
            sinks=check_sinks(given["sinks"]),
            scaler=check_scaler(given["scaler"]),
            distributed=given["distributed"],
            given=given,
        )


#: Options renamed in 0.2 (old -> new): the old names work, with a DeprecationWarning, until 0.3.
RENAMED_OPTIONS = {"every": "gradients_every", "time_every": "through_time_every"}


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the defaults filled in, after checking every name is known (an old name of
    :data:`RENAMED_OPTIONS` is taken as its new one, with a ``DeprecationWarning``)."""
    options = renamed_keyword(options, RENAMED_OPTIONS, "gradmedic.watch")
    unknown = [name for name in options if name not in DEFAULT_OPTIONS]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, [*DEFAULT_OPTIONS, *RENAMED_OPTIONS], n=1)
        hint = f"did you mean {RENAMED_OPTIONS.get(close[0], close[0])!r}? " if close else ""
        raise ConfigError(f"unknown option {name!r}: {hint}known options: {', '.join(DEFAULT_OPTIONS)}")
    return {**DEFAULT_OPTIONS, **options}


def log_path(value: object) -> Path | None:
    """The ``log_path`` option as a Path, checked before anything is attached.

    Raises:
        ConfigError: if it is not a path, names a directory, or its folder does not exist.
    """
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"log_path={value!r}: give a file path (str or pathlib.Path), e.g. 'run.jsonl'")
    path = Path(value)
    if path.is_dir():
        raise ConfigError(
            f"log_path={str(path)!r} is a directory: name a file in it, e.g. {str(path / 'run.jsonl')!r}"
        )
    if not path.parent.is_dir():
        raise ConfigError(
            f"log_path={str(path)!r}: the folder {str(path.parent)!r} does not exist; create it first"
        )
    return path


def check_scaler(scaler: object) -> object:
    """The ``scaler`` option: None or a ``torch.amp.GradScaler`` (anything with ``scale`` and ``update``)."""
    if scaler is None or (
        callable(getattr(scaler, "scale", None)) and callable(getattr(scaler, "update", None))
    ):
        return scaler
    raise ConfigError(
        f"scaler={scaler!r}: give the torch.amp.GradScaler of a mixed-precision run (or leave it out)"
    )


def check_loss(loss: object) -> None:
    """``Monitor.step``'s loss: None, a real number or a one-element tensor."""
    if loss is None or (isinstance(loss, numbers.Real) and not isinstance(loss, bool)):
        return
    if isinstance(loss, Tensor) and loss.numel() == 1:
        return
    what = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else repr(loss)
    raise ConfigError(
        f"monitor.step(loss) got {what}: pass the scalar loss tensor (reduce it, e.g. .mean()), "
        "a float, or nothing"
    )


def positive_int(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{option}={value!r}: give a positive integer")
    return value
