"""One exception family: every gradmedic error says what went wrong and what to do.

Example:
    >>> from gradmedic.errors import GradmedicError, ConfigError
    >>> issubclass(ConfigError, GradmedicError) and issubclass(ConfigError, ValueError)
    True
"""

from __future__ import annotations


class GradmedicError(Exception):
    """Base class of every error gradmedic raises."""


class ConfigError(GradmedicError, ValueError):
    """An option or argument is invalid; the message names it and the fix."""


class ModelError(GradmedicError, TypeError):
    """The model (or one of its layers) cannot be handled as given."""


class UnsupportedError(GradmedicError, RuntimeError):
    """A setting gradmedic refuses rather than report wrong numbers (e.g. torch.compile)."""
