"""How bad a finding is: its own module, so the report's text views and the report both import it.

Example:
    >>> Severity.WARNING > Severity.INFO, Severity.CRITICAL.label
    (True, 'critical')
"""

from __future__ import annotations

import enum


class Severity(enum.IntEnum):
    """How bad a finding is. ``Report.healthy`` means no finding is WARNING or worse."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()
