"""Which modules of a model gradmedic observes, and what it knows of each.

A *layer* is a module with parameters of its own (``nn.Linear``, ``nn.Conv2d``, ``nn.LSTM``,
``nn.LayerNorm``, the attention's input projection...) or an elementwise activation module
(``nn.ReLU``, ``nn.Tanh``, ...). Containers are not layers: their children are.

Example:
    >>> from torch import nn
    >>> from gradmedic.layers import find_layers
    >>> [(layer.name, layer.kind) for layer in find_layers(nn.Sequential(nn.Linear(2, 2), nn.Tanh()))]
    [('0', 'param'), ('1', 'activation')]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from . import registry
from .errors import ModelError

#: Elementwise activation modules and recurrent layers (see :mod:`gradmedic.registry`). Softmax and
#: attention are not elementwise and are not activations.
ACTIVATION_TYPES = registry.ACTIVATION_TYPES
RECURRENT_TYPES = registry.RECURRENT_TYPES


@dataclass
class LayerInfo:
    """What the History keeps of a layer: plain data, no reference to the module.

    Attributes:
        name: qualified name in the model (``""`` for the root module).
        type: class name, e.g. ``"Linear"``.
        kind: ``"param"`` or ``"activation"``.
        params: qualified names of the layer's own parameters.
        forward_index: position of the layer's first call in a forward pass (-1 if never seen).
    """

    name: str
    type: str
    kind: str
    params: list[str] = field(default_factory=list)
    forward_index: int = -1

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def is_activation(module: nn.Module) -> bool:
    """Whether ``module`` is an elementwise activation module (a registered one or a subclass of one;
    see :mod:`gradmedic.registry` for the rule for the unknown).

    Example:
        >>> is_activation(nn.GELU()), is_activation(nn.Linear(1, 1))
        (True, False)
    """
    return registry.activation_of(module) is not None


def layer_type(module: nn.Module) -> str:
    """The class name of ``module``; of a module sharded by FSDP2's ``fully_shard`` (which makes its
    class ``FSDP<Name>``, a subclass of ``FSDPModule`` and of the original), the original's.

    Example:
        >>> layer_type(nn.Linear(1, 1))
        'Linear'
    """
    for cls in type(module).__mro__:
        if not any(base.__name__ == "FSDPModule" for base in cls.__mro__):
            return cls.__name__
    return type(module).__name__


def find_layers(model: nn.Module, required: bool = True) -> list[LayerInfo]:
    """List the module layers gradmedic observes in ``model``, in ``named_modules`` order.

    Layers written as functional ops on bare weights are found while the model runs (see
    :mod:`gradmedic.op_layers`); ``required=False`` allows a model that has only those.

    Raises:
        ModelError: when ``model`` is not an ``nn.Module`` or has no layer to observe (and ``required``).
    """
    require_module(model)
    layers = []
    for name, module in model.named_modules():
        own = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
        if is_activation(module):
            layers.append(LayerInfo(name, layer_type(module), "activation", own))
        elif own:
            layers.append(LayerInfo(name, layer_type(module), "param", own))
    if not layers and required:
        raise ModelError(
            f"{type(model).__name__} has no parameters and no activation module to observe: "
            "pass the model you train (an nn.Module with parameters)"
        )
    return layers


def require_module(model: object) -> nn.Module:
    """Return ``model`` if it is an ``nn.Module``, else raise a :class:`ModelError` that says so."""
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"expected a torch.nn.Module, got {type(model).__name__}: pass the model itself "
            "(for a Lightning or Hugging Face model, the module you train)"
        )
    return model
