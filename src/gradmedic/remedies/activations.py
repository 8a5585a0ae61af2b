"""Remedy 1: activations that keep the gradient (ReLU, LeakyReLU, ELU, SELU, SiLU, GELU).

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
    >>> [c.action for c in swap_activations(model, new="silu") if c.family == "activation"]
    ['Sigmoid -> SiLU']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .. import registry
from ..diagnosis.findings import Family
from ..errors import ConfigError
from ..tracing import following_activations
from .changes import Change, set_submodule

#: The classic choices, by name (``swish`` is SiLU), each made by the registry with its defaults
#: (LeakyReLU: ``negative_slope=0.01``).
NEW_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    **{name: registry.by_name(name).make for name in ("relu", "leaky_relu", "elu", "selu", "silu")},
    "swish": registry.by_name("silu").make,
    "gelu": registry.by_name("gelu").make,
}
#: What is swapped by default: the two saturating activations (sigmoid, tanh).
SATURATING: tuple[type[nn.Module], ...] = (
    *registry.by_name("sigmoid").modules,
    *registry.by_name("tanh").modules,
)


def activation_factory(new: str | Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """A function making the new activation: from a name (``"silu"``) or a class/factory."""
    if isinstance(new, str):
        if new not in NEW_ACTIVATIONS:
            raise ConfigError(f"unknown activation {new!r}: choose one of {', '.join(NEW_ACTIVATIONS)}")
        return NEW_ACTIVATIONS[new]
    return new


def swap_activations(
    model: nn.Module,
    old: tuple[type[nn.Module], ...] = SATURATING,
    new: str | Callable[[], nn.Module] = "silu",
    data: Any = None,
    reinit_changed: bool = True,
) -> list[Change]:
    """Replace every activation module of a type in ``old`` with ``new``; re-initialise the
    layers whose following activation changed (with the scheme that suits the new one).

    Activations called as functions inside ``forward`` cannot be swapped from outside: when
    ``data`` is given they are found by tracing and reported as skipped.
    """
    make = activation_factory(new)
    before = following_activations(model, data)
    changes = []
    # remove_duplicate=False: an activation module used at several places is replaced at each
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if isinstance(module, old) and registry.activation_of(module) is not None:
            replacement = make()
            if not name:
                changes.append(
                    Change(Family.ACTIVATION, name, "the model itself is the activation", skipped=True)
                )
            elif type(replacement) is not type(module):
                set_submodule(model, name, replacement)
                changes.append(
                    Change(
                        Family.ACTIVATION, name, f"{type(module).__name__} -> {type(replacement).__name__}"
                    )
                )
            else:
                changes.append(
                    Change(Family.ACTIVATION, name, f"already {type(module).__name__}", skipped=True)
                )
    if data is not None:
        changes += _functional_skips(model, before, old)
    if not changes:
        wanted = ", ".join(cls.__name__ for cls in old)
        changes.append(Change(Family.ACTIVATION, "", f"no {wanted} module to replace", skipped=True))
    if reinit_changed and any(not c.skipped for c in changes):
        changes += _reinit_changed(model, data, before)
    return changes


def _functional_skips(
    model: nn.Module, before: dict[str, str], old: tuple[type[nn.Module], ...]
) -> list[Change]:
    """Saturating activations traced after a layer but not found as modules: functional calls."""
    old_names = {found.name for cls in old if (found := registry.activation_of_type(cls)) is not None}
    module_names = set(following_activations(model))
    return [
        Change(
            Family.ACTIVATION,
            layer,
            f"{name} is called inside forward(): change the code to swap it",
            skipped=True,
        )
        for layer, name in before.items()
        if name in old_names and layer not in module_names
    ]


def _reinit_changed(model: nn.Module, data: Any, before: dict[str, str]) -> list[Change]:
    from .init import reinit

    after = following_activations(model, data)
    changed = [layer for layer, name in after.items() if before.get(layer) != name]
    return reinit(model, "auto", data, layers=changed) if changed else []
