"""One exception family: every gradmedic error says what went wrong and what to do.

Example:
    >>> from gradmedic.errors import GradmedicError, ConfigError
    >>> issubclass(ConfigError, GradmedicError) and issubclass(ConfigError, ValueError)
    True
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

#: The attribute that marks an exception raised by the user's own code (see :func:`from_user_code`).
USER_CODE = "gradmedic_user_code"


class GradmedicError(Exception):
    """Base class of every error gradmedic raises."""


class ConfigError(GradmedicError, ValueError):
    """An option or argument is invalid; the message names it and the fix."""


class ModelError(GradmedicError, TypeError):
    """The model (or one of its layers) cannot be handled as given."""


class UnsupportedError(GradmedicError, RuntimeError):
    """A setting gradmedic refuses rather than report wrong numbers (e.g. torch.compile)."""


def from_user_code(error: BaseException, what: str) -> BaseException:
    """Mark ``error``, raised inside the user's code (``forward``, ``loss_fn``), as theirs.

    The exception keeps its type and traceback; it gains a note saying what gradmedic was doing
    (Python 3.11+) and the attribute :data:`USER_CODE`, which the command line reads to exit 2
    with one line instead of a traceback. An exception raised inside gradmedic's own hooks, on
    the way, is not marked: that is a gradmedic bug.

    Example:
        >>> def forward():
        ...     raise MemoryError("out of memory")
        >>> try:
        ...     forward()
        ... except MemoryError as error:
        ...     marked = from_user_code(error, "the model's forward")
        >>> type(marked).__name__, getattr(marked, USER_CODE)
        ('MemoryError', "the model's forward")
    """
    if _raised_in_gradmedic(error.__traceback__):
        return error
    setattr(error, USER_CODE, what)
    if hasattr(error, "add_note"):
        error.add_note(f"(raised in {what}, called by gradmedic)")
    return error


_PACKAGE = str(Path(__file__).resolve().parent)


def _raised_in_gradmedic(tb: TracebackType | None) -> bool:
    """Whether a frame below the one that caught the exception is gradmedic's (a hook)."""
    frame = tb.tb_next if tb is not None else None
    while frame is not None:
        if str(Path(frame.tb_frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
            return True
        frame = frame.tb_next
    return False
