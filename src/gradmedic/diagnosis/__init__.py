"""Diagnosis: the checkup, the rules and the report.

Example:
    >>> from gradmedic.diagnosis import Report, Severity
    >>> Severity.WARNING > Severity.INFO
    True
"""

from .._providers import provide
from .checkups import checkup, diagnose
from .findings import Curve, Family, Finding, Kind, LayerSummary, Remedy, Report, Severity
from .render import print_report
from .trials import trial

provide("diagnose", diagnose)  # for Monitor.diagnose, a lower layer

__all__ = [
    "Curve", "Family", "Finding", "Kind", "LayerSummary", "Remedy", "Report", "Severity", "checkup",
    "diagnose", "print_report", "trial",
]  # fmt: skip
