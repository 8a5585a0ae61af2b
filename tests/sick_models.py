"""Models for the diagnosis tests: healthy ones that must raise no alarm, and one sick model per
finding kind.

Every builder draws weights and data from torch's global generator (seed it first) and returns
a :class:`Patient`: the model and one batch, ready for ``gradmedic.checkup``. Sizes stay small
(width 32-64, batches of 64) so that the whole catalogue runs in seconds on two CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

N_IN, N_OUT, BATCH = 32, 10, 64


@dataclass
class Patient:
    """A model, a batch of inputs, and (optionally) targets and a loss function."""

    model: nn.Module
    inputs: Any
    targets: Tensor | None = None
    loss_fn: Callable[..., Tensor] | None = None


def classes(batch: int = BATCH, n_out: int = N_OUT) -> Tensor:
    return torch.randint(0, n_out, (batch,))


def linears(model: nn.Module) -> list[str]:
    """Names of the model's Linear layers, in definition (= forward, for the stacks here) order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


# -- plain stacks --------------------------------------------------------------------------


def stack(
    depth: int,
    act: Callable[[], nn.Module],
    width: int = 32,
    n_in: int = N_IN,
    n_out: int = N_OUT,
    init: Callable[[nn.Linear], None] | None = None,
    bias: bool = True,
) -> nn.Sequential:
    """``depth`` blocks Linear -> activation, then a Linear head (PyTorch's default init unless
    ``init`` is given; the head always keeps the default init)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        linear = nn.Linear(n_in if i == 0 else width, width, bias=bias)
        if init is not None:
            init(linear)
        layers += [linear, act()]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def stack_patient(depth: int, act: Callable[[], nn.Module], scale: float = 1.0, **options: Any) -> Patient:
    model = stack(depth, act, **options)
    n_in = options.get("n_in", N_IN)
    return Patient(model, scale * torch.randn(BATCH, n_in), classes())


class FunctionalSigmoidNet(nn.Module):
    """Linear layers in a ModuleList; the sigmoid is a function call inside ``forward``."""

    def __init__(self, depth: int = 20, width: int = 32) -> None:
        super().__init__()
        self.hidden = nn.ModuleList(nn.Linear(N_IN if i == 0 else width, width) for i in range(depth))
        self.head = nn.Linear(width, N_OUT)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = torch.sigmoid(layer(x))
        return self.head(x)


# -- healthy models ------------------------------------------------------------------------


def simple_net() -> Patient:
    """The project brief's example: 784 -> Linear 256 -> BatchNorm1d -> ReLU -> Linear 10."""
    model = nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))
    return Patient(model, torch.randn(BATCH, 784), classes())


def shallow_sigmoid() -> Patient:
    """Two hidden sigmoid layers: sigmoid is harmless when the net is shallow."""
    return stack_patient(2, nn.Sigmoid, width=64)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResNet(nn.Module):
    """A stem, residual blocks with BatchNorm2d, global average pooling and a head."""

    def __init__(self, channels: int = 16, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, N_OUT)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(torch.relu(self.bn(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


def resnet() -> Patient:
    return Patient(ResNet(), torch.randn(32, 3, 12, 12), classes(32))


class PreLNTransformer(nn.Module):
    """An input projection, a pre-LayerNorm encoder (norm_first=True), a final norm and a head."""

    def __init__(self, d_model: int = 32, layers: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(8, d_model)
        block = nn.TransformerEncoderLayer(
            d_model, 4, 2 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, N_OUT)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.encoder(self.inp(x))).mean(dim=1))


def transformer() -> Patient:
    return Patient(PreLNTransformer(), torch.randn(32, 12, 8), classes(32))


def orthogonal_tanh(depth: int = 50) -> Patient:
    """A deep tanh MLP made trainable by orthogonal init with the tanh gain (and zero biases)."""

    def init(layer: nn.Linear) -> None:
        nn.init.orthogonal_(layer.weight, gain=nn.init.calculate_gain("tanh"))
        nn.init.zeros_(layer.bias)

    return stack_patient(depth, nn.Tanh, width=64, n_in=64, init=init)


class LSTMNet(nn.Module):
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, N_OUT)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def lstm(steps: int = 10) -> Patient:
    return Patient(LSTMNet(), torch.randn(BATCH, steps, 8), classes())


HEALTHY: dict[str, Callable[[], Patient]] = {
    "simple_net": simple_net,
    "shallow_sigmoid": shallow_sigmoid,
    "resnet_bn": resnet,
    "pre_ln_transformer": transformer,
    "orthogonal_tanh_50": orthogonal_tanh,
    "lstm_t10": lstm,
}


# -- sick models: one (at least) per finding kind ------------------------------------------


def deep_sigmoid(depth: int = 20) -> Patient:
    """Vanishing gradient from saturating activations (the demo's network)."""
    return stack_patient(depth, nn.Sigmoid)


def deep_tanh(depth: int = 100) -> Patient:
    """Vanishing gradient from PyTorch's default init (gain ~0.58) over a deep tanh stack."""
    return stack_patient(depth, nn.Tanh)


def default_init_tanh_no_bias(depth: int = 50) -> Patient:
    """A deep tanh stack, default weight init, bias-free hidden layers: the forward signal shrinks
    as fast as the backward one, so the *weight* gradients look even while the signal vanishes."""
    return stack_patient(depth, nn.Tanh, width=64, n_in=64, bias=False)


def exploding_relu(depth: int = 20) -> Patient:
    """Weights ~ N(0, 1): gain sqrt(fan_in) ~ 5.7 instead of He's sqrt(2), so the signal grows."""
    return stack_patient(depth, nn.ReLU, init=lambda layer: nn.init.normal_(layer.weight, std=1.0))


def saturated_sigmoid() -> Patient:
    """A shallow sigmoid net fed inputs 50x too large: most first-layer sigmoids sit in their tails."""
    return stack_patient(2, nn.Sigmoid, width=64, scale=50.0)


def saturated_tanh() -> Patient:
    """A shallow tanh net whose weights are ~ N(0, 3): tanh outputs are stuck at +-1."""
    return stack_patient(3, nn.Tanh, width=64, init=lambda layer: nn.init.normal_(layer.weight, std=3.0))


class DeadMiddle(nn.Module):
    """Linear -> ReLU three times; the middle Linear has biases of -20: its ReLUs never fire."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = stack(3, nn.ReLU, width=width)
        nn.init.constant_(self.net[2].bias, -20.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x) + x[:, :N_OUT]  # a skip path keeps the loss differentiable


def dead_relu() -> Patient:
    """ReLU units with very negative biases: zero for every sample (dead)."""
    return Patient(DeadMiddle(), torch.randn(BATCH, N_IN), classes())


def xavier_relu(depth: int = 40) -> Patient:
    """Xavier init (gain 1) before ReLU halves the signal's variance at every layer."""

    def init(layer: nn.Linear) -> None:
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)

    return stack_patient(depth, nn.ReLU, width=64, init=init)


class NaNNet(nn.Module):
    """A forward that takes the log of a negative number in its second block: NaN from there on."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(N_IN, 32)
        self.second = nn.Linear(32, 32)
        self.head = nn.Linear(32, N_OUT)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.tanh(self.first(x))
        x = self.second(x)
        return self.head(torch.log(x - 100.0))  # every value is negative: log gives NaN


def non_finite_model() -> Patient:
    return Patient(NaNNet(), torch.randn(BATCH, N_IN), classes())
