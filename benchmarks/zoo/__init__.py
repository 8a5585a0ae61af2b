"""gradmedic's failure zoo: public reports of failures re-created in PyTorch, and healthy models.

``ALL`` lists every case; ``SICK`` the reported failures, ``HEALTHY`` the controls.

Example:
    >>> from zoo import ALL, SICK, HEALTHY
    >>> len(SICK) >= 30 and len(HEALTHY) >= 10 and len(ALL) == len(SICK) + len(HEALTHY)
    True
"""

from __future__ import annotations

from . import cases_amp, cases_cnn, cases_functional, cases_mlp, cases_rnn, cases_transformer, healthy
from .core import Case

SICK: list[Case] = [
    *cases_mlp.CASES,
    *cases_cnn.CASES,
    *cases_rnn.CASES,
    *cases_functional.CASES,
    *cases_transformer.CASES,
    *cases_amp.CASES,
]
HEALTHY: list[Case] = list(healthy.CASES)
ALL: list[Case] = SICK + HEALTHY
BY_ID: dict[str, Case] = {case.id: case for case in ALL}
KINDS_ORDER = ("vanishing", "exploding", "dying", "saturation", "lr_optimizer", "other")
