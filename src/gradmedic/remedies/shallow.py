"""Remedy 9: a shallower model, for a plain stack of identical blocks.

A plain stack is an ``nn.Sequential`` made of: a first block (a Linear/Conv layer and the
modules after it), repeated blocks identical in structure and size, and a head (the last
Linear/Conv layer and what follows it). ``make_shallower`` keeps the first block, the first
``depth - 1`` repeated blocks and the head, so inputs and outputs keep their shapes.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(*[m for _ in range(10) for m in (nn.Linear(8, 8), nn.Tanh())], nn.Linear(8, 2))
    >>> short, changes = make_shallower(model, 3)
    >>> sum(isinstance(m, nn.Linear) for m in short), changes[0].action
    (4, 'kept 3 of 10 blocks and the head')
"""

from __future__ import annotations

import copy

from torch import nn

from .. import registry
from .._deprecation import module_getattr
from ..diagnosis.findings import Family
from ..errors import ConfigError, ModelError
from .changes import Change

WEIGHT_LAYERS = registry.WEIGHT_TYPES


def split_blocks(model: nn.Sequential) -> list[list[nn.Module]]:
    """The children of ``model`` grouped into blocks that each start at a Linear/Conv layer."""
    blocks: list[list[nn.Module]] = []
    for child in model:
        if isinstance(child, WEIGHT_LAYERS) or not blocks:
            blocks.append([child])
        else:
            blocks[-1].append(child)
    return blocks


def _signature(block: list[nn.Module]) -> tuple[str, ...]:
    return tuple(repr(m) for m in block)


def make_shallower(model: nn.Module, depth: int) -> tuple[nn.Sequential, list[Change]]:
    """A copy of the plain stack ``model`` with ``depth`` blocks before the head.

    Raises:
        ModelError: when ``model`` is not a plain stack of identical blocks.
        ConfigError: when ``depth`` is not between 1 and the current number of blocks.
    """
    if not isinstance(model, nn.Sequential):
        raise ModelError(f"make_shallower needs an nn.Sequential plain stack, got {type(model).__name__}")
    blocks = split_blocks(model)
    if len(blocks) < 3:
        raise ModelError("make_shallower needs a first block, repeated blocks and a head (at least 3 blocks)")
    first, middle, head = blocks[0], blocks[1:-1], blocks[-1]
    if len({_signature(b) for b in middle}) != 1:
        raise ModelError(
            "the middle blocks differ in structure or size: this is not a plain stack to shorten"
        )
    current = len(middle) + 1
    if not 1 <= depth <= current:
        raise ConfigError(f"depth={depth}: choose between 1 and the current {current} blocks")
    kept = [first, *middle[: depth - 1], head]
    short = nn.Sequential(*[copy.deepcopy(m) for block in kept for m in block])
    return short, [Change(Family.SHALLOWER, "", f"kept {depth} of {current} blocks and the head")]


# Old names, kept for one release (see gradmedic._deprecation).
__getattr__ = module_getattr(
    __name__,
    {
        "truncate": ("make_shallower", lambda: make_shallower),
    },
)
