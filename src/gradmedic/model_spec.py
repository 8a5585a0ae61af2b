"""Load what the command line examines: ``package.module:function`` or ``path/file.py:function``.

The function takes no argument and returns the model and an example batch, as a tuple
``(model, inputs)``, ``(model, inputs, targets)`` or ``(model, inputs, targets, loss_fn)``, or as a
dict with those keys. For ``gradmedic trial`` it may also return the optimizer it trains with, as
a fifth element or the dict key ``optimizer``.

Example:
    >>> target = load_model_spec("gradmedic.demo:sick_example")
    >>> type(target.model).__name__
    'Sequential'
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError


@dataclass
class ModelSpec:
    """A model and an example batch to examine."""

    model: nn.Module
    inputs: Any
    targets: Tensor | None = None
    loss_fn: Callable[..., Tensor] | None = None
    optimizer: Any = None


def load_model_spec(spec: str) -> ModelSpec:
    """Import the function named by ``spec`` and call it.

    Raises:
        ConfigError: when the spec is malformed, the module or function is missing, importing
            the module or calling the function raises, or the function returns something else
            than described above.
    """
    if ":" not in spec:
        raise ConfigError(
            f"TARGET {spec!r} must name a function: 'package.module:function' or 'path/to/file.py:function'"
        )
    where, name = spec.rsplit(":", 1)
    module = _import(where)
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"{where} has no function {name!r}")
    try:
        value = function()
    except Exception as error:  # the user's code: say so, rather than crash with exit status 1
        raise ConfigError(f"{spec} raised {type(error).__name__}: {error}") from error
    return _as_target(value, spec)


def _import(where: str) -> Any:
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ConfigError(f"no such file: {where}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, module)
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            if sys.modules.get(path.stem) is module:
                del sys.modules[path.stem]
            raise ConfigError(f"cannot import {where}: {type(error).__name__}: {error}") from error
        return module
    try:
        return importlib.import_module(where)
    except ImportError as error:
        raise ConfigError(f"cannot import {where!r}: {error}") from None
    except Exception as error:  # the module itself fails (SyntaxError, an exception at import)
        raise ConfigError(f"cannot import {where!r}: {type(error).__name__}: {error}") from error


def _as_target(value: Any, spec: str) -> ModelSpec:
    if isinstance(value, dict):
        unknown = set(value) - {"model", "inputs", "targets", "loss_fn", "optimizer"}
        if unknown or "model" not in value or "inputs" not in value:
            raise ConfigError(
                f"{spec} returned a dict with keys {sorted(value)}: use model, inputs[, targets, loss_fn]"
            )
        target = ModelSpec(**value)
    elif isinstance(value, (tuple, list)) and 2 <= len(value) <= 5 and _optimizer_or_absent(value):
        target = ModelSpec(*value)
    elif isinstance(value, (tuple, list)) and len(value) == 5:
        raise ConfigError(
            f"{spec} returned {type(value).__name__} whose fifth item is a {type(value[4]).__name__}: "
            "the fifth item is the optimizer (a torch.optim.Optimizer built on model.parameters())"
        )
    else:
        raise ConfigError(
            f"{spec} returned {type(value).__name__}: return (model, inputs[, targets[, loss_fn]]) or a dict"
        )
    if not isinstance(target.model, nn.Module):
        raise ConfigError(
            f"{spec} returned a {type(target.model).__name__} as the model: return an nn.Module first"
        )
    return target


def _optimizer_or_absent(value: tuple[Any, ...] | list[Any]) -> bool:
    """A fifth item, when there is one, is the optimizer."""
    return len(value) < 5 or isinstance(value[4], torch.optim.Optimizer)
