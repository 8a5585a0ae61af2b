"""Failures of reduced precision: a model trained in float16, and autocast without a loss scaler."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .core import Case, Setup, adam, cross_entropy, digits, seeded


# --- an EDSR-style super-resolution net trained with model.half() and Adam ------------------------
class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def edsr(c: int = 16, blocks: int = 4) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1),
        *[ResBlock(c) for _ in range(blocks)],
        nn.Conv2d(c, 3 * 4, 3, padding=1),
        nn.PixelShuffle(2),
    )


def images(seed: int, n: int = 256) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + 41)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    high = nn.functional.interpolate(coarse, size=16, mode="bilinear", align_corners=False)
    high = high + 0.02 * torch.randn(n, 3, 16, 16, generator=g)
    return nn.functional.avg_pool2d(high, 2), high


def l1(output: Tensor, targets: Tensor) -> Tensor:
    return nn.functional.l1_loss(output.float(), targets.float())


def half_edsr(seed: int, half: bool = True) -> Setup:
    seeded(seed)
    x, y = images(seed)
    model = edsr()
    if half:
        model, x = model.half(), x.half()
    setup = Setup(model, x, y, l1, adam, 1e-4, steps=300, batch=16)
    setup.baseline = float(l1(y.median(0).values.expand_as(y), y))  # best constant under L1
    return setup


# --- autocast float16 with no GradScaler: small gradients flush to zero ----------------------------
#: The weight of the small bounded term in the loss: its gradients at the logits (~1e-8) lie below
#: float16's smallest subnormal (6e-8) and well inside bfloat16's range.
LOSS_WEIGHT = 1e-5


def cosine_head_loss(output: Tensor, targets: Tensor) -> Tensor:
    """A bounded cosine term, weighted down beside a (here absent) large term, as the issue describes."""
    return LOSS_WEIGHT * cross_entropy(output, targets)


def fp16_no_scaler(seed: int, dtype: torch.dtype = torch.float16) -> Setup:
    seeded(seed)
    x, y = digits()
    model = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
        nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip
    setup = Setup(model, x, y, cosine_head_loss, adam, 1e-3, autocast=dtype)
    setup.baseline *= LOSS_WEIGHT  # the constant baseline of the weighted term
    return setup


CASES = [
    Case(
        id="edsr_half_precision_adam",
        source="https://github.com/sanghyun-son/EDSR-PyTorch/issues/36",
        symptom="EDSR baseline trained with --precision half: 'Skip this batch ... (Loss: inf)' from the "
        "second batch on",
        fix="train in single precision (maintainer: Adam does not work well in half precision; use half "
        "for testing)",
        kind="exploding",
        family="amp",
        adaptation="an EDSR-style net (16 channels, 4 residual blocks, x2 pixel shuffle) on seeded smooth "
        "16x16 images; Adam 1e-4 on the half-precision parameters, L1 loss",
        build=half_edsr,
        build_fix=lambda s: half_edsr(s, half=False),
    ),
    Case(
        id="autocast_fp16_no_gradscaler",
        source="https://github.com/engichang1467/Open-Rig3R/issues/35",
        symptom="autocast defaults to float16 and no GradScaler is used: small gradients silently underflow "
        "to zero; the loss curve just flattens",
        fix="bfloat16 autocast (no scaler needed), or a GradScaler with float16",
        kind="vanishing",
        family="amp",
        adaptation="CPU autocast; a 4-layer ReLU MLP on digits whose loss is a small-weighted bounded "
        "term (1e-5 x cross-entropy, the only term here); Adam 1e-3, which a small but non-zero "
        "gradient still moves",
        build=fp16_no_scaler,
        build_fix=lambda s: fp16_no_scaler(s, torch.bfloat16),
    ),
]
