"""Unit tests of :mod:`gradmedic.layers`: which modules are layers, and the errors for non-models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic.errors import ModelError
from gradmedic.layers import LayerInfo, find_layers, is_activation, require_module


class Bare(nn.Module):
    """A root module holding its own weight: it is the layer (named ``""``)."""

    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W


def test_layers_in_named_modules_order_with_kind_type_and_own_params() -> None:
    model = nn.Sequential(
        nn.Linear(4, 4), nn.LayerNorm(4), nn.GELU(), nn.Sequential(nn.Linear(4, 2), nn.Softmax(-1))
    )
    found = [(layer.name, layer.type, layer.kind, layer.params) for layer in find_layers(model)]
    assert found == [
        ("0", "Linear", "param", ["0.weight", "0.bias"]),
        ("1", "LayerNorm", "param", ["1.weight", "1.bias"]),
        ("2", "GELU", "activation", []),
        ("3.0", "Linear", "param", ["3.0.weight", "3.0.bias"]),
    ]  # containers and the (not elementwise) softmax are not layers


def test_a_prelu_is_an_activation_that_owns_its_slope() -> None:
    (layer,) = find_layers(nn.Sequential(nn.PReLU()))
    assert (layer.name, layer.kind, layer.params) == ("0", "activation", ["0.weight"])


def test_a_root_module_with_bare_weights_is_the_layer_named_empty() -> None:
    assert [(layer.name, layer.params) for layer in find_layers(Bare())] == [("", ["W"])]


def test_a_shared_module_is_one_layer() -> None:
    shared = nn.Linear(2, 2)
    assert [layer.name for layer in find_layers(nn.Sequential(shared, nn.Tanh(), shared))] == ["0", "1"]


def test_forward_index_starts_unknown_and_to_dict_is_plain_data() -> None:
    (layer,) = find_layers(nn.Linear(1, 1))
    assert layer.forward_index == -1
    assert layer.to_dict() == {
        "name": "", "type": "Linear", "kind": "param", "params": ["weight", "bias"], "forward_index": -1
    }  # fmt: skip
    assert LayerInfo(**layer.to_dict()) == layer


def test_is_activation() -> None:
    assert is_activation(nn.Tanh()) and is_activation(nn.LeakyReLU(0.3)) and is_activation(nn.Threshold(0, 0))
    assert not is_activation(nn.Softmax(dim=1))
    assert not is_activation(nn.Linear(1, 1))
    assert not is_activation(nn.Dropout())


def test_a_model_without_parameters_or_activations_is_refused_with_advice() -> None:
    with pytest.raises(ModelError, match=r"Dropout has no parameters.*pass the model you train"):
        find_layers(nn.Dropout())
    assert find_layers(nn.Dropout(), required=False) == []


@pytest.mark.parametrize(
    "thing", [lambda x: x, "model", None, torch.zeros(2)], ids=["function", "str", "None", "tensor"]
)
def test_not_a_module_is_refused_naming_what_it_was(thing: object) -> None:
    with pytest.raises(ModelError, match=f"expected a torch.nn.Module, got {type(thing).__name__}"):
        find_layers(thing)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="the module you train"):
        require_module(thing)


def test_require_module_returns_the_same_module() -> None:
    model = nn.Linear(1, 1)
    assert require_module(model) is model
