"""The zoo's records: a case (where it comes from, what was reported) and a setup (what to train).

A case is a failure someone reported in public, re-created in PyTorch; ``build(seed)`` returns the
reported configuration and ``build_fix(seed)`` the reported fix, each as a :class:`Setup`: the
model, the training data, the loss, the optimizer and its reported rate.

Example:
    >>> setup = digits_mlp_setup(seed=0)
    >>> setup.model(setup.x[:2]).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

KINDS = ("vanishing", "exploding", "dying", "saturation", "lr_optimizer", "other")
FAMILIES = ("mlp", "cnn", "rnn", "transformer", "functional", "amp")

LossFn = Callable[[Any, Tensor], Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with PyTorch's defaults but the rate."""
    return torch.optim.Adam(params, lr=lr)


def sgd(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Plain SGD, no momentum."""
    return torch.optim.SGD(params, lr=lr)


def sgd_momentum(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """SGD with momentum 0.9."""
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def cross_entropy(output: Any, targets: Tensor) -> Tensor:
    """Cross-entropy on logits ``[N, C]`` or on sequences of logits ``[N, T, C]``."""
    logits = getattr(output, "logits", output)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def mse(output: Any, targets: Tensor) -> Tensor:
    """Mean squared error, computed in float32 whatever the output's dtype."""
    return nn.functional.mse_loss(output.float(), targets.float())


@dataclass
class Setup:
    """What one training run needs: the model, its data, loss and optimizer, and the budget.

    ``baseline`` is the loss of the best constant prediction on ``(x, y)`` (the label entropy for
    cross-entropy, the target variance for squared error): a model "learned" the fraction
    ``1 - loss / baseline`` of what a constant leaves.
    """

    model: nn.Module
    x: Any
    y: Tensor
    loss_fn: LossFn
    optimizer: OptimizerFactory
    lr: float
    steps: int = 300
    batch: int = 64
    clip: float | None = None
    autocast: torch.dtype | None = None
    baseline: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        if self.baseline != self.baseline:  # NaN: compute it from the targets
            self.baseline = constant_baseline(self.y, self.loss_fn)


@dataclass(frozen=True)
class Case:
    """One reported failure (or, with ``healthy=True``, one model others wrote that trains)."""

    id: str
    source: str
    symptom: str
    fix: str
    kind: str
    family: str
    adaptation: str
    build: Callable[[int], Setup]
    build_fix: Callable[[int], Setup] | None = None
    lrs: tuple[float, ...] | None = None  # rates tried for the reported model; None: lr/3, lr, 3 lr
    healthy: bool = False

    def __post_init__(self) -> None:
        if self.kind not in (*KINDS, "healthy"):
            raise ValueError(f"case {self.id}: kind {self.kind!r} is not one of {KINDS}")
        if self.family not in FAMILIES:
            raise ValueError(f"case {self.id}: family {self.family!r} is not one of {FAMILIES}")


def constant_baseline(y: Tensor, loss_fn: LossFn) -> float:
    """Loss of the best constant prediction: label entropy (integer targets) or target variance."""
    if y.dtype in (torch.int64, torch.int32):
        counts = torch.bincount(y.reshape(-1)).double()
        p = counts[counts > 0] / counts.sum()
        return float(-(p * p.log()).sum())
    return float(y.float().var(unbiased=False).mean())


def take(x: Any, index: Tensor) -> Any:
    """Rows ``index`` of a tensor, or of each tensor of a dict of keyword inputs."""
    if isinstance(x, dict):
        return {k: v[index] for k, v in x.items()}
    return x[index]


def length(x: Any) -> int:
    """Number of examples in a tensor or a dict of tensors."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def seeded(seed: int) -> torch.Generator:
    """A CPU generator with ``seed``; also seeds the global RNG so module inits are reproducible."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def digits(images: bool = False) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled digits (1797), standardised vectors of 64 or ``[N, 1, 8, 8]`` images."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return (x.reshape(-1, 1, 8, 8), y) if images else (x, y)


def digits_mlp_setup(seed: int) -> Setup:
    """A two-layer ReLU MLP on digits with Adam 1e-3: the zoo's sanity setup."""
    seeded(seed)
    x, y = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return Setup(model, x, y, cross_entropy, adam, 1e-3)


def markov_text(n: int, length_: int, vocab: int, seed: int) -> Tensor:
    """``n`` sequences of ``length_`` symbols from a fixed random sparse Markov chain (seeded)."""
    g = torch.Generator().manual_seed(1000 + vocab)
    logits = torch.randn(vocab, vocab, generator=g) * 3.0
    probs = logits.softmax(-1)
    g = torch.Generator().manual_seed(seed)
    seq = torch.empty(n, length_, dtype=torch.int64)
    seq[:, 0] = torch.randint(0, vocab, (n,), generator=g)
    for t in range(1, length_):
        seq[:, t] = torch.multinomial(probs[seq[:, t - 1]], 1, generator=g).squeeze(1)
    return seq
