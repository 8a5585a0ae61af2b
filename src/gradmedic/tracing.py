"""What the forward pass shows about a model's structure: the activation after each layer.

A layer written as an op on a bare weight (``torch.tanh(x @ self.W1 + self.b1)``, see
:mod:`gradmedic.op_layers`) is named after its weight (``W1``) and gets its activation the same way.

Activations may be modules (``nn.Tanh()``) or plain calls inside ``forward``
(``torch.sigmoid(x)``, ``F.relu(x)``, ``x.tanh()``); both go through ``torch`` functions, so a
``TorchFunctionMode`` sees them in execution order. Each parametrised layer gets the first
activation function called after it returns and before the next layer starts, with the
saturated and dead fractions of that activation's output.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(3, 3)
    ...     def forward(self, x):
    ...         return torch.sigmoid(self.fc(x))
    >>> net = Net()
    >>> with ActivationTracer(net) as tracer:
    ...     _ = net(torch.randn(4, 3))
    >>> tracer.after["fc"].name
    'sigmoid'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from . import registry, stats
from .hooks import HookSet
from .layers import find_layers
from .op_layers import candidate_leaves, leaf_of, op_type, operands
from .running import call_model, preserved


@dataclass
class FollowingActivation:
    """The activation applied to a layer's output, and how its output looked."""

    name: str
    saturated: float = math.nan
    dead: float = math.nan


def activation_name(func: Callable[..., Any]) -> str | None:
    """Canonical activation name of a torch function, or None (``relu_`` -> ``relu``): the
    functions :mod:`gradmedic.registry` lists for each activation."""
    found = registry.activation_of_function(getattr(func, "__name__", ""))
    return found.name if found is not None else None


def called_activation(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """:func:`activation_name` of a call, telling ReLU6 apart: ``nn.ReLU6`` runs ``hardtanh(x, 0, 6)``.

    Example:
        >>> called_activation(torch.nn.functional.hardtanh, (torch.zeros(1), 0.0, 6.0), {})
        'relu6'
    """
    name = activation_name(func)
    if name == "hardtanh":
        low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
        return "relu6" if (low, high) == (0.0, 6.0) else name
    return name


class ActivationTracer(TorchFunctionMode):
    """Records, during forward passes, the activation that follows each parametrised layer."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._model = model
        self._hooks = HookSet()
        self._open: str | None = None
        self._weights: dict[int, str] = {}
        self.after: dict[str, FollowingActivation] = {}

    def __enter__(self) -> ActivationTracer:
        self._weights = {key: leaf.name for key, leaf in candidate_leaves(self._model).items()}
        modules = dict(self._model.named_modules())
        for layer in find_layers(self._model, required=False):
            if layer.kind == "param":
                module = modules[layer.name]
                self._hooks.add(module.register_forward_pre_hook(self._on_start))
                self._hooks.add(module.register_forward_hook(self._make_on_end(layer.name)))
        super().__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            self._hooks.remove()

    def _on_start(self, module: nn.Module, args: object) -> None:
        self._open = None

    def _make_on_end(self, name: str) -> Callable[[nn.Module, object, object], None]:
        def on_end(module: nn.Module, args: object, output: object) -> None:
            self._open = name

        return on_end

    def __torch_function__(
        self, func: Callable[..., Any], types: object, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        if self._weights and op_type(getattr(func, "__name__", ""), args) is not None:
            weight = next(
                (w for _, t in operands(args, kwargs or {}) if (w := self._weights.get(id(leaf_of(t))))), None
            )
            if weight is not None:  # an op layer starts (and ends): the next activation is its
                self._open = weight
                return result
        name = called_activation(func, args, kwargs or {})
        if name is not None and self._open is not None and isinstance(result, Tensor):
            if self._open not in self.after:
                self.after[self._open] = describe(name, result)
            self._open = None
        return result


@torch.no_grad()
def describe(name: str, output: Tensor) -> FollowingActivation:
    """Saturated and dead fractions of an activation's output (NaN where they do not apply)."""
    activation = registry.by_name(name)
    kind = stats.ActivationKind(activation.band_of(), activation.can_die)
    values = stats.activation_stats(output, kind).tolist()
    return FollowingActivation(name, saturated=values[2], dead=values[3])


def activation_of_module(module: nn.Module) -> str | None:
    """Canonical name of an activation module (``nn.LeakyReLU`` -> ``"leaky_relu"``), or None."""
    found = registry.activation_of(module)
    return found.name if found is not None else None


def following_activations(model: nn.Module, inputs: Any = None) -> dict[str, str]:
    """The activation after each parametrised layer: traced on ``inputs`` when given (functional
    activations count), else read from the order of activation modules in ``named_modules``.

    The traced forward pass leaves the model as it was (modes, buffers, grads, RNG state).
    """
    if inputs is not None:
        with preserved(model), torch.no_grad(), ActivationTracer(model) as tracer:
            call_model(model, inputs)
        return {name: found.name for name, found in tracer.after.items()}
    after: dict[str, str] = {}
    owner = None
    for name, module in model.named_modules():
        activation = activation_of_module(module)
        if activation is not None and owner is not None:
            after[owner] = activation
            owner = None
        elif activation is None and any(True for _ in module.parameters(recurse=False)):
            owner = name
    return after
