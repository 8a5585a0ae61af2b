"""The lab's model recipes: small MLPs, CNNs and recurrent nets, changed by gradmedic's own remedies.

A recipe builds the plain model, then applies the remedies its ``params`` name, each through the
function a user would call, so the lab measures gradmedic's remedies themselves:

* ``mlp`` (digits as 64-vectors): ``depth`` blocks Linear -> activation (``width`` units), then
  a Linear head;
* ``cnn`` (digits as 1x8x8 images): ``depth`` blocks Conv2d 3x3 (``channels``, 'same' padding)
  -> activation, then Flatten and a Linear head;
* ``rnn`` (sequences): ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (``cell``) with ``hidden`` units and
  a Linear head on the last step (digits_rows, adding) or on every step (copy);
  ``cell="loop"`` is a tanh ``nn.RNNCell`` looped by hand, layer-normalized with
  ``layernorm=True`` (:class:`LayerNormRNNCell`).

Params (all optional): ``activation`` (:data:`ACTIVATIONS`), ``init`` (``default``: PyTorch's
own; else a :func:`gradmedic.reinit` scheme, ``lsuv`` with an example batch), ``norm``
(``batch``/``layer``: :func:`gradmedic.add_normalization`), ``residual`` (``zero``:
:func:`gradmedic.add_residual`, blocks ``x + alpha * f(x)`` with ``alpha = 0``; ``plain``: the same
with ``alpha = 1``), ``gain`` (weights multiplied by it after the init: a net that explodes),
``cut_from`` (build that many blocks, then keep ``depth`` of them with :func:`gradmedic.make_shallower`:
the first blocks and the head of the deeper net); for ``rnn``: ``init``
(``default``, ``orthogonal``, ``identity``: :func:`gradmedic.remedies.recurrent_weights`),
``nonlinearity`` (``tanh``/``relu``, vanilla RNN), ``forget_bias`` (a number or ``"chrono"``:
:func:`gradmedic.set_forget_gate_bias`).

Example:
    >>> import torch
    >>> model = build_model("mlp", {"depth": 3, "width": 16, "activation": "selu", "init": "lecun"},
    ...                     n_inputs=64, n_outputs=10)
    >>> tuple(model(torch.randn(5, 64)).shape)
    (5, 10)
    >>> rnn = build_model("rnn", {"cell": "lstm", "hidden": 8, "forget_bias": 1.0}, 2, 1)
    >>> tuple(rnn(torch.randn(5, 7, 2)).shape)
    (5, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import registry
from ..errors import ConfigError
from ..remedies import (
    Residual,
    add_normalization,
    add_residual,
    make_shallower,
    recurrent_weights,
    reinit,
    set_forget_gate_bias,
)

#: The activations a recipe can build (the activation study's arms), each made by the registry with
#: its default arguments (LeakyReLU: ``negative_slope=0.01``).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    name: registry.by_name(name).make
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "silu", "gelu")
}
RECIPES = ("mlp", "cnn", "rnn")
CELLS = ("rnn", "lstm", "gru", "loop")
WEIGHTS = (nn.Linear, nn.Conv2d)


def build_model(
    recipe: str, params: dict[str, Any], n_inputs: int, n_outputs: int, example: Tensor | None = None
) -> nn.Module:
    """The model of ``recipe`` with ``params`` (see the module docstring), drawn from torch's global
    generator (seed it first). ``example``: an input batch, needed by ``init="lsuv"``.

    Raises:
        ConfigError: for an unknown recipe, activation, cell or option.
    """
    built = {**params, "depth": params.get("cut_from", params.get("depth", 4))}
    if recipe == "mlp":
        model: nn.Module = stack(mlp_layers(built, n_inputs, n_outputs), params, example)
    elif recipe == "cnn":
        model = stack(cnn_layers(built, n_outputs), params, example)
    elif recipe == "rnn":
        model = recurrent(params, n_inputs, n_outputs)
    else:
        raise ConfigError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    return model


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp_layers(params: dict[str, Any], n_inputs: int, n_outputs: int) -> list[nn.Module]:
    """``depth`` x (Linear, activation), then the Linear head."""
    depth, width, act = (
        int(params.get("depth", 4)),
        int(params.get("width", 64)),
        params.get("activation", "relu"),
    )
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_inputs if i == 0 else width, width), activation(act)]
    return [*layers, nn.Linear(width, n_outputs)]


def cnn_layers(params: dict[str, Any], n_outputs: int) -> list[nn.Module]:
    """``depth`` x (Conv2d 3x3 'same', activation) on 1x8x8 images, then Flatten and a Linear head."""
    depth, channels = int(params.get("depth", 4)), int(params.get("channels", 16))
    act = params.get("activation", "relu")
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(1 if i == 0 else channels, channels, 3, padding=1), activation(act)]
    return [*layers, nn.Flatten(), nn.Linear(channels * 64, n_outputs)]


def stack(layers: list[nn.Module], params: dict[str, Any], example: Tensor | None) -> nn.Module:
    """The plain stack with the init, gain, truncation, normalization and residual remedies of ``params``."""
    model: nn.Module = nn.Sequential(*layers)
    initialize(model, params.get("init", "default"), example)
    scale_weights(model, float(params.get("gain", 1.0)))
    if params.get("cut_from") is not None:
        model, _ = make_shallower(model, int(params.get("depth", 4)))
    norm = params.get("norm")
    if norm is not None:
        add_normalization(model, norm)
    residual = params.get("residual")
    if residual is not None:
        make_residual(model, residual, example)
    return model


def initialize(model: nn.Module, scheme: str, example: Tensor | None) -> None:
    """PyTorch's default init (``default``) or :func:`gradmedic.reinit` with ``scheme``."""
    if scheme == "default":
        return
    if scheme == "lsuv" and example is None:
        raise ConfigError("init='lsuv' needs an example batch: build_model(..., example=x)")
    # Only LSUV sees data: ``auto`` stays the conventional data-free choice per activation
    # (He, LeCun, Xavier or orthogonal), not the data-calibrated sigmoid init that treat uses.
    reinit(model, scheme, example if scheme == "lsuv" else None)


@torch.no_grad()
def scale_weights(model: nn.Module, gain: float) -> None:
    """Multiply every Linear/Conv weight but the head's by ``gain`` (1: unchanged)."""
    if gain == 1.0:
        return
    weights = [m for m in model.modules() if isinstance(m, WEIGHTS)]
    for module in weights[:-1]:
        module.weight.mul_(gain)


def make_residual(model: nn.Module, kind: str, example: Tensor | None) -> None:
    """``zero``: :func:`gradmedic.add_residual` (``alpha = 0``); ``plain``: the same with ``alpha = 1``."""
    if kind not in ("zero", "plain"):
        raise ConfigError(f"residual={kind!r}: choose 'zero' (alpha = 0) or 'plain' (alpha = 1)")
    add_residual(model, example)
    if kind == "plain":
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, Residual):
                    module.alpha.fill_(1.0)


class SequenceNet(nn.Module):
    """A recurrent layer (``nn.RNN``/``LSTM``/``GRU``) and a Linear head on the last or every step."""

    def __init__(self, rnn: nn.RNNBase, n_outputs: int, every_step: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, n_outputs)
        self.every_step = every_step

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out if self.every_step else out[:, -1])


class LayerNormRNNCell(nn.RNNCell):
    """A tanh RNN cell with layer normalization of its summed input, as in Ba, Kiros & Hinton
    (2016): ``h_t = tanh(LN(W x_t + U h_{t-1} + b))``.

    (Normalizing the state before it enters the step instead, ``tanh(W x_t + U LN(h_{t-1}) +
    b)``, did worse: on the adding problem over 10 steps, seeds 0-2 of the full preset, it solved
    0.67, 0.85 and 0.81 of the test sequences; this cell 0.97, 0.94 and 0.57; no LayerNorm 0.88,
    0.97 and 0.88.)

    Example:
        >>> cell = LayerNormRNNCell(2, 4)
        >>> h = cell(torch.randn(3, 2), torch.zeros(3, 4))
        >>> tuple(h.shape), bool(h.abs().max() < 1)
        ((3, 4), True)
    """

    def __init__(self, n_inputs: int, hidden: int) -> None:
        super().__init__(n_inputs, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if hx is None:
            hx = input.new_zeros(input.shape[0], self.hidden_size)
        summed = F.linear(input, self.weight_ih, self.bias_ih) + F.linear(hx, self.weight_hh, self.bias_hh)
        return torch.tanh(self.norm(summed))


class LoopedRNN(nn.Module):
    """A tanh RNN cell looped over the steps (:class:`LayerNormRNNCell` with ``layernorm``); the
    head reads the last state, or every state."""

    def __init__(self, n_inputs: int, hidden: int, n_outputs: int, every_step: bool, layernorm: bool) -> None:
        super().__init__()
        self.cell = LayerNormRNNCell(n_inputs, hidden) if layernorm else nn.RNNCell(n_inputs, hidden)
        self.head = nn.Linear(hidden, n_outputs)
        self.every_step = every_step

    def forward(self, x: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        states = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            states.append(h)
        return self.head(torch.stack(states, dim=1) if self.every_step else h)


def recurrent(params: dict[str, Any], n_inputs: int, n_outputs: int) -> nn.Module:
    """The ``rnn`` recipe: see the module docstring."""
    cell, hidden = params.get("cell", "lstm"), int(params.get("hidden", 64))
    every_step = bool(params.get("every_step", False))
    if cell not in CELLS:
        raise ConfigError(f"unknown cell {cell!r}: choose one of {', '.join(CELLS)}")
    if cell == "loop":
        return LoopedRNN(n_inputs, hidden, n_outputs, every_step, bool(params.get("layernorm", False)))
    if cell == "rnn":
        layer: nn.RNNBase = nn.RNN(n_inputs, hidden, batch_first=True,
                                   nonlinearity=params.get("nonlinearity", "tanh"))  # fmt: skip
    else:
        layer = (nn.LSTM if cell == "lstm" else nn.GRU)(n_inputs, hidden, batch_first=True)
    model = SequenceNet(layer, n_outputs, every_step)
    if params.get("init", "default") != "default":
        recurrent_weights(model, params["init"])
    if params.get("forget_bias") is not None:
        set_forget_gate_bias(model, params["forget_bias"], max_len=params.get("length"))
    return model
