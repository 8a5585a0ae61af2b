"""Failures of convolutional networks, re-created on 8x8 digits or seeded signals."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .cases_mlp import bce
from .core import Case, Setup, adam, cross_entropy, digits, seeded, sgd, sgd_momentum


# --- VGG-style plain stack, 38 hidden conv layers, no normalisation -------------------------------
def plain_vgg(seed: int, depth: int = 38, batchnorm: bool = False) -> Setup:
    seeded(seed)
    x, y = digits(images=True)
    layers: list[nn.Module] = []
    channels = 1
    for i in range(depth):
        layers.append(nn.Conv2d(channels, 16, 3, padding=1))
        if batchnorm:
            layers.append(nn.BatchNorm2d(16))
        layers.append(nn.ReLU())
        channels = 16
        if i in (depth // 3, 2 * depth // 3):
            layers.append(nn.MaxPool2d(2))
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 2 * 2, 10))
    return Setup(model, x, y, cross_entropy, sgd_momentum, 0.01, steps=120)


# --- skorch's MNIST CNN: Adadelta lr 1.0 trains, Adam with the same rate gives NaN -----------------
class SkorchCnn(nn.Module):
    """conv 1->32 -> conv 32->64 -> max-pool -> dropout -> fc 100 -> fc 10, as the notebook."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 4 * 4, 100)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(nn.functional.max_pool2d(self.conv2(x), 2))
        x = self.drop(x.flatten(1))
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def skorch_cnn(seed: int, lr: float) -> Setup:
    seeded(seed)
    x, y = digits(images=True)
    return Setup(SkorchCnn(), x, y, cross_entropy, adam, lr, steps=200)


# --- BatchNorm2d(1) then Conv2d(1, 1, [1, 16]) on one board, SGD 0.1: loss to inf ---------------
def bn_conv(seed: int, lr: float) -> Setup:
    seeded(seed)
    g = torch.Generator().manual_seed(seed + 13)
    x = torch.rand(1, 1, 1, 16, generator=g)
    y = torch.ones(1, 1, 1, 1)
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 1, (1, 16)))

    def sum_squared(output: Tensor, targets: Tensor) -> Tensor:
        return ((output - targets) ** 2).sum()

    setup = Setup(model, x, y, sum_squared, sgd, lr, steps=40, batch=1)
    setup.baseline = float(sum_squared(torch.zeros(1, 1, 1, 1), y))  # the output the model starts near
    return setup


# --- binary CNN with BCE: SGD 0.01 collapses to predicting 0.5 ------------------------------------
def binary_cnn(seed: int, optimizer: object, lr: float) -> Setup:
    seeded(seed)
    x, y10 = digits(images=True)
    y = (y10 % 2).float().unsqueeze(1)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid(),
    )  # fmt: skip
    setup = Setup(model, x, y, bce, optimizer, lr, batch=128)  # type: ignore[arg-type]
    setup.baseline = float(bce(torch.full_like(y, float(y.mean())), y))
    return setup


# --- WaveNet-style stack whose post-processing ReLUs cut the output off ---------------------------
class TinyWaveNet(nn.Module):
    """Dilated causal convolutions with gated units and skips, then ReLU-1x1-ReLU-1x1 to logits."""

    def __init__(self, classes: int = 32, channels: int = 16, post: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.embed = nn.Conv1d(classes, channels, 1)
        self.filters = nn.ModuleList(nn.Conv1d(channels, channels, 2, dilation=d) for d in (1, 2, 4, 8))
        self.gates = nn.ModuleList(nn.Conv1d(channels, channels, 2, dilation=d) for d in (1, 2, 4, 8))
        self.skips = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in range(4))
        self.post = nn.Sequential(
            post(), nn.Conv1d(channels, channels, 1), post(), nn.Conv1d(channels, classes, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(nn.functional.one_hot(x, 32).float().transpose(1, 2))
        skip = 0
        for f, g, s, d in zip(self.filters, self.gates, self.skips, (1, 2, 4, 8)):
            padded = nn.functional.pad(h, (d, 0))
            out = torch.tanh(f(padded)) * torch.sigmoid(g(padded))
            skip = skip + s(out)
            h = h + out
        return self.post(skip).transpose(1, 2)  # [N, T, classes]


def quantised_sine(seed: int, n: int = 256, steps: int = 64) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + 17)
    phase = torch.rand(n, 1, generator=g) * 6.28
    freq = 0.2 + 0.3 * torch.rand(n, 1, generator=g)
    t = torch.arange(steps + 1).float()
    wave = torch.sin(freq * t + phase) + 0.05 * torch.randn(n, steps + 1, generator=g)
    q = ((wave.clamp(-1, 1) + 1) / 2 * 31).round().long()
    return q[:, :-1], q[:, 1:]


def wavenet(seed: int, post: type[nn.Module] = nn.ReLU, lr: float = 1e-3) -> Setup:
    seeded(seed)
    x, y = quantised_sine(seed)
    return Setup(TinyWaveNet(post=post), x, y, cross_entropy, adam, lr, steps=300, batch=16)


# --- residual network without normalisation: the output grows with depth ---------------------------
class Block(nn.Module):
    def __init__(self, fixup_depth: int | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        nn.init.kaiming_normal_(self.conv1.weight, nonlinearity="relu")
        nn.init.kaiming_normal_(self.conv2.weight, nonlinearity="relu")
        if fixup_depth is not None:  # Fixup: scale the branch's first layer, zero its last
            self.conv1.weight.data.mul_(fixup_depth ** (-0.5))
            nn.init.zeros_(self.conv2.weight)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


def resnet_nonorm(seed: int, fixup: bool = False, blocks: int = 32) -> Setup:
    seeded(seed)
    x, y = digits(images=True)
    head = nn.Linear(16 * 8 * 8, 10)  # no pooling: an 8x8 digit averaged over space says little
    if fixup:
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        *[Block(blocks if fixup else None) for _ in range(blocks)],
        nn.Flatten(), head,
    )  # fmt: skip
    return Setup(model, x, y, cross_entropy, sgd_momentum, 0.1, steps=100)


CASES = [
    Case(
        id="vgg38_no_batchnorm",
        source="http://www.cs.ubbcluj.ro/~studia-i/journal/journal/article/view/61",
        symptom="a VGG model with 38 hidden layers (no BatchNorm) suffers from vanishing gradients on "
        "CIFAR-100 while the 8-layer one trains",
        fix="BatchNorm (or residual connections)",
        kind="vanishing",
        family="cnn",
        adaptation="8x8 digits, 38 conv3x3 layers of 16 channels with two max-pools; SGD momentum 0.01, "
        "120 steps of 64",
        build=plain_vgg,
        build_fix=lambda s: plain_vgg(s, batchnorm=True),
    ),
    Case(
        id="skorch_cnn_adam_lr1",
        source="https://github.com/skorch-dev/skorch/issues/468",
        symptom="the MNIST CNN trains with Adadelta (lr 1.0); with Adam at the same rate the loss is NaN "
        "and validation accuracy 0.0987",
        fix="a much smaller learning rate for Adam",
        kind="lr_optimizer",
        family="cnn",
        adaptation="8x8 digits (fc1 sees 64x4x4); Adam 1.0 against Adam 1e-3, 200 steps",
        build=lambda s: skorch_cnn(s, 1.0),
        build_fix=lambda s: skorch_cnn(s, 1e-3),
        lrs=(1.0,),
    ),
    Case(
        id="batchnorm_conv_board_sgd",
        source="https://shijianchuo.net/question/63127564.html",
        symptom="BatchNorm2d(1) then Conv2d(1,1,[1,16]) learning a constant 1 with SGD 0.1: about a "
        "quarter of runs go to inf, then NaN",
        fix="not in the question; the zoo tests SGD at 0.01",
        kind="exploding",
        family="cnn",
        adaptation="as posted (one 16-value board, squared error, 40 steps)",
        build=lambda s: bn_conv(s, 0.1),
        build_fix=lambda s: bn_conv(s, 0.01),
        lrs=(0.1,),
    ),
    Case(
        id="binary_cnn_sgd_collapse",
        source="https://datascience.stackexchange.com/questions/28481/reason-for-having-both-low-loss-and-same-predicted-class",
        symptom="a binary CNN with BCE and SGD 0.01 (batch 128) first reaches 0.99 accuracy, then "
        "converges to loss 0.6 and always predicts 0.5",
        fix="learning rate 0.001 with Adam",
        kind="lr_optimizer",
        family="cnn",
        adaptation="digits even/odd as the two classes; a two-conv CNN with a sigmoid output; 300 steps",
        build=lambda s: binary_cnn(s, sgd, 0.01),
        build_fix=lambda s: binary_cnn(s, adam, 1e-3),
        lrs=(0.01,),
    ),
    Case(
        id="wavenet_relu_postprocessing",
        source="https://github.com/ibab/tensorflow-wavenet/issues/143",
        symptom="the loss falls to ~0.05, then grows again to above 5: the ReLU layers at the end cut off "
        "the entire network output",
        fix="a smaller learning rate, or Tanh in place of the final ReLUs",
        kind="dying",
        family="cnn",
        adaptation="a 4-layer gated dilated stack (16 channels) on seeded quantised sines (32 levels); "
        "Adam 1e-3, 300 steps of 16",
        build=wavenet,
        build_fix=lambda s: wavenet(s, nn.Tanh),
    ),
    Case(
        id="resnet32_no_normalisation",
        source="https://tomesphere.com/paper/1901.09321",
        symptom="residual networks without normalisation explode at initialisation (the output variance "
        "grows with the number of blocks) and do not train at the usual rate",
        fix="Fixup: zero the last layer of each residual branch and the classifier, rescale the rest",
        kind="exploding",
        family="cnn",
        adaptation="32 basic blocks of 16 channels with He init on 8x8 digits, a linear head on the "
        "flattened map (no global pooling at 8x8); SGD momentum 0.1, 100 steps",
        build=resnet_nonorm,
        build_fix=lambda s: resnet_nonorm(s, fixup=True),
    ),
]
