"""What a remedy did: one :class:`Change` per layer it touched (or skipped, and why).

Example:
    >>> Change("init", "0", "orthogonal (gain 1)")
    Change(family='init', layer='0', action='orthogonal (gain 1)', skipped=False)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Change:
    """One change (or one deliberate non-change) a remedy made to a model.

    Attributes:
        family: the remedy family (``init``, ``activation``, ``normalization``, ...).
        layer: qualified name of the module changed.
        action: what was done, e.g. ``"Sigmoid -> SiLU"``; for a skip, why it was skipped.
        skipped: True when the remedy did not apply to this layer and left it as it was.
    """

    family: str
    layer: str
    action: str
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        verb = "skipped" if self.skipped else "changed"
        return f"{self.family:<13} {verb:<8} {self.layer or '(model)'}: {self.action}"


def applied(changes: list[Change]) -> list[Change]:
    """The changes that were made (not the skips)."""
    return [c for c in changes if not c.skipped]


def group_changes(changes: list[Change]) -> list[str]:
    """One line per (family, action): the same change on many layers is listed once.

    Example:
        >>> group_changes([Change("init", "0", "orthogonal"), Change("init", "2", "orthogonal")])
        ["init          changed  2 layers ('0', '2'): orthogonal"]
    """
    groups: dict[tuple[str, str, bool], list[str]] = {}
    for change in changes:
        groups.setdefault((change.family, change.action, change.skipped), []).append(change.layer)
    lines = []
    for (family, action, skipped), layers in groups.items():
        verb = "skipped" if skipped else "changed"
        named = [repr(layer) for layer in layers if layer]
        if len(named) > 1:
            where = f"{len(named)} layers ({_shorten(named)})"
        else:
            where = named[0] if named else "(model)"
        lines.append(f"{family:<13} {verb:<8} {where}: {action}")
    return lines


def _shorten(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 4 else f"{', '.join(names[:3])}, ... {names[-1]}"


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called ``name`` (``"blocks.3.act"``) with ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
