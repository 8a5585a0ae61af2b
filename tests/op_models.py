"""Models written with bare weights and functional ops, each with a plain reference forward.

Every model's ``forward(x, keep=None)`` computes the same thing with or without ``keep``; given a
dict, it stores each op layer's output there (under the layer's expected name) and calls
``retain_grad`` on it: the plain autograd computation gradmedic's numbers are compared with.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Keep = dict[str, Tensor] | None


def kept(keep: Keep, name: str, tensor: Tensor) -> Tensor:
    """Retain ``tensor``'s gradient under ``name`` when a reference forward asks for it."""
    if keep is not None:
        tensor.retain_grad()
        keep[name] = tensor
    return tensor


class MatmulMLP(nn.Module):
    """``tanh(x @ W + b)`` stacks, the last layer without activation; weights as bare parameters."""

    def __init__(self, sizes: tuple[int, ...] = (6, 16, 16, 3), activation: str = "tanh", gain: float = 1.0):
        super().__init__()
        self.activation = getattr(torch, activation)
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            setattr(self, f"W{i}", nn.Parameter(torch.randn(n_in, n_out) * gain / n_in**0.5))
            setattr(self, f"b{i}", nn.Parameter(torch.randn(n_out) * 0.1))
        self.depth = len(sizes) - 1

    def forward(self, x: Tensor, keep: Keep = None) -> Tensor:
        for i in range(self.depth):
            x = kept(keep, f"W{i}", x @ getattr(self, f"W{i}") + getattr(self, f"b{i}"))
            if i < self.depth - 1:
                x = self.activation(x)
        return x


class LinearMLP(nn.Module):
    """The same network written with ``F.linear`` on weights in a ParameterList."""

    def __init__(self, sizes: tuple[int, ...] = (6, 16, 16, 3)):
        super().__init__()
        pairs = list(itertools.pairwise(sizes))
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(o, i) / i**0.5) for i, o in pairs])
        self.biases = nn.ParameterList([nn.Parameter(torch.randn(o) * 0.1) for _, o in pairs])

    def forward(self, x: Tensor, keep: Keep = None) -> Tensor:
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = kept(keep, f"weights.{i}", F.linear(x, w, b))
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x


class EinsumAttention(nn.Module):
    """One attention block with einsum projections (``blocks.0.w_q``...), then a readout."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.blocks = nn.ModuleList([AttentionBlock(dim)])
        self.readout = nn.Parameter(torch.randn(dim, 3) / dim**0.5)

    def forward(self, x: Tensor, keep: Keep = None) -> Tensor:
        x = self.blocks[0](x, keep)
        return kept(keep, "readout", x.mean(dim=1) @ self.readout)


class AttentionBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.w_q, self.w_k, self.w_v, self.w_o = (
            nn.Parameter(torch.randn(dim, dim) / dim**0.5) for _ in "qkvo"
        )

    def forward(self, x: Tensor, keep: Keep = None) -> Tensor:
        q = kept(keep, "blocks.0.w_q", torch.einsum("btd,de->bte", x, self.w_q))
        k = kept(keep, "blocks.0.w_k", torch.einsum("btd,de->bte", x, self.w_k))
        v = kept(keep, "blocks.0.w_v", torch.einsum("btd,de->bte", x, self.w_v))
        scores = torch.softmax(torch.einsum("bqe,bke->bqk", q, k) / q.shape[-1] ** 0.5, dim=-1)
        mixed = torch.bmm(scores, v)
        return x + kept(keep, "blocks.0.w_o", mixed @ self.w_o)


class ConvNet(nn.Module):
    """Two ``F.conv2d`` layers with bias and ReLU, then a flattened readout with ``@``."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Parameter(torch.randn(4, 1, 3, 3) / 3)
        self.c1_bias = nn.Parameter(torch.zeros(4))
        self.c2 = nn.Parameter(torch.randn(4, 4, 3, 3) / 6)
        self.out = nn.Parameter(torch.randn(4 * 4 * 4, 3) / 8)

    def forward(self, x: Tensor, keep: Keep = None) -> Tensor:
        x = F.relu(kept(keep, "c1", F.conv2d(x, self.c1, self.c1_bias, padding=1)))
        x = F.relu(kept(keep, "c2", F.conv2d(x, self.c2, padding=1)))
        x = F.max_pool2d(x, 2)
        return kept(keep, "out", x.flatten(1) @ self.out)


class CharModel(nn.Module):
    """makemore's MLP: an embedding by indexing ``C[x]``, then ``tanh(@ W1 + b1) @ W2 + b2``; the
    weights are plain tensors that require grad, not parameters."""

    def __init__(self, vocab: int = 27, dim: int = 4, context: int = 3, hidden: int = 32):
        super().__init__()
        self.C = torch.randn(vocab, dim, requires_grad=True)
        self.W1 = (torch.randn(context * dim, hidden) * 0.3).requires_grad_()
        self.b1 = (torch.randn(hidden) * 0.01).requires_grad_()
        self.W2 = (torch.randn(hidden, vocab) * 0.1).requires_grad_()
        self.b2 = torch.zeros(vocab, requires_grad=True)

    def forward(self, x: Tensor, keep: Keep = None) -> Tensor:
        emb = kept(keep, "C", self.C[x])
        h = torch.tanh(kept(keep, "W1", emb.view(len(x), -1) @ self.W1 + self.b1))
        return kept(keep, "W2", h @ self.W2 + self.b2)


class MixedNet(nn.Module):
    """A bare input projection, an ``nn.Linear`` and an ``nn.Tanh`` module, a bare readout."""

    def __init__(self):
        super().__init__()
        self.W_in = nn.Parameter(torch.randn(6, 12) / 6**0.5)
        self.hidden = nn.Linear(12, 12)
        self.act = nn.Tanh()
        self.W_out = nn.Parameter(torch.randn(12, 3) / 12**0.5)

    def forward(self, x: Tensor, keep: Keep = None) -> Tensor:
        x = torch.tanh(kept(keep, "W_in", x @ self.W_in))
        x = self.act(kept(keep, "hidden", self.hidden(x)))
        return kept(keep, "W_out", x @ self.W_out)


def inputs_for(model: nn.Module, batch: int = 10) -> Tensor:
    """A batch that fits ``model``."""
    if isinstance(model, EinsumAttention):
        return torch.randn(batch, 5, 8)
    if isinstance(model, ConvNet):
        return torch.randn(batch, 1, 8, 8)
    if isinstance(model, CharModel):
        return torch.randint(0, 27, (batch, 3))
    return torch.randn(batch, 6)


def module_twin(model: MatmulMLP) -> nn.Sequential:
    """The same network as ``model`` written with ``nn.Linear`` and activation modules."""
    activation = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}[model.activation.__name__]
    layers: list[nn.Module] = []
    for i in range(model.depth):
        weight, bias = getattr(model, f"W{i}"), getattr(model, f"b{i}")
        linear = nn.Linear(*weight.shape)
        with torch.no_grad():
            linear.weight.copy_(weight.T)
            linear.bias.copy_(bias)
        layers.append(linear)
        if i < model.depth - 1:
            layers.append(activation())
    return nn.Sequential(*layers)
