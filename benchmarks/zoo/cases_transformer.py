"""Failures of attention models, re-created on seeded sequence tasks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .core import Case, Setup, adam, cross_entropy, mse, seeded


def majority_task(seed: int, n: int = 2000, length: int = 16, vocab: int = 8) -> tuple[Tensor, Tensor]:
    """Sequences of tokens; the label is the most frequent token (ties: the smallest)."""
    g = torch.Generator().manual_seed(seed + 31)
    x = torch.randint(0, vocab, (n, length), generator=g)
    counts = nn.functional.one_hot(x, vocab).sum(1)
    return x, counts.argmax(1)


class Encoder(nn.Module):
    def __init__(self, layers: int, norm_first: bool, vocab: int = 8, d: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 4, 128, dropout=0.0, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(self.embed(x)).mean(1))


def post_ln(seed: int, norm_first: bool = False) -> Setup:
    seeded(seed)
    x, y = majority_task(seed)
    return Setup(Encoder(6, norm_first), x, y, cross_entropy, adam, 1e-3, steps=200)


# --- nn.Transformer with d_model 1 on raw numbers --------------------------------------------------
class NumberTransformer(nn.Module):
    def __init__(self, d_model: int, seq: int = 20) -> None:
        super().__init__()
        self.d_model = d_model
        self.project = nn.Linear(1, d_model) if d_model > 1 else nn.Identity()
        self.trans = nn.Transformer(d_model, 1, num_encoder_layers=10, num_decoder_layers=1,
                                    dim_feedforward=32, dropout=0.0, batch_first=True)  # fmt: skip
        self.tgt = nn.Parameter(torch.rand(1, 1, d_model), requires_grad=False)
        self.lin = nn.Linear(d_model, 1)

    def forward(self, x: Tensor) -> Tensor:
        src = self.project(x)
        out = self.trans(src, self.tgt.expand(len(x), 1, self.d_model))
        return self.lin(out[:, 0])


def counting(seed: int, scaled: bool, n: int = 1000, seq: int = 20) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + 37)
    start = torch.randint(0, 100, (n, 1), generator=g).float()
    x = start + torch.arange(seq).float()
    y = start + seq
    if scaled:
        x, y = x / 100, y / 100
    return x.unsqueeze(-1), y


def numbers(seed: int, fixed: bool = False) -> Setup:
    seeded(seed)
    x, y = counting(seed, scaled=fixed)
    model = NumberTransformer(16 if fixed else 1)
    return Setup(model, x, y, mse, adam, 1e-3, steps=200, batch=16)


# --- self-attention written with bare projections and no 1/sqrt(d_k) -------------------------------
class BareAttention(nn.Module):
    def __init__(self, scaled: bool, vocab: int = 8, d: int = 64) -> None:
        super().__init__()
        self.scaled = scaled
        self.embed = nn.Parameter(torch.randn(vocab, d))
        self.Wq = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.Wk = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.Wv = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.Wo = nn.Parameter(torch.randn(d, vocab) / math.sqrt(d))

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed[x]
        q, k, v = h @ self.Wq, h @ self.Wk, h @ self.Wv
        scores = q @ k.transpose(1, 2)
        if self.scaled:
            scores = scores / math.sqrt(q.shape[-1])
        return (scores.softmax(-1) @ v).mean(1) @ self.Wo


def bare_attention(seed: int, scaled: bool = False) -> Setup:
    seeded(seed)
    x, y = majority_task(seed)
    return Setup(BareAttention(scaled), x, y, cross_entropy, adam, 1e-3, steps=300)


CASES = [
    Case(
        id="post_ln_transformer_no_warmup",
        source="https://www.arxiv-vanity.com/papers/2002.04745/",
        symptom="the original Post-LN Transformer has large gradients near the output at initialisation; "
        "without a learning-rate warm-up, training at a large rate is unstable",
        fix="Pre-LN (LayerNorm inside the residual branch), which trains without warm-up",
        kind="lr_optimizer",
        family="transformer",
        adaptation="6 encoder layers (d 64, 4 heads) on a seeded majority-token task; Adam 1e-3 without "
        "warm-up, 200 steps of 64",
        build=post_ln,
        build_fix=lambda s: post_ln(s, norm_first=True),
        lrs=(1e-3,),
    ),
    Case(
        id="transformer_d_model_1_raw_numbers",
        source="https://discuss.pytorch.org/t/transformer-cannot-predict-next-number-in-linear-sequence/184454",
        symptom="nn.Transformer with embed dim 1, 1 head and 10 encoders fed raw numbers (1..200): the loss "
        "does not decrease",
        fix="no answer in the thread excerpt; the zoo tests d_model 16 with a linear embedding and inputs "
        "scaled to ~1 (LayerNorm over a single feature outputs its bias whatever the input)",
        kind="other",
        family="transformer",
        adaptation="windows of 20 consecutive numbers (the post: 100), MSE on the next one, 1 decoder layer "
        "and feed-forward 32 to fit the budget; Adam 1e-3, 200 steps of 16",
        build=numbers,
        build_fix=lambda s: numbers(s, fixed=True),
    ),
    Case(
        id="bare_attention_unscaled_scores",
        source="https://physea-wiki.pages.dev/language-model-architecture/attention-explained/scaling-and-softmax",
        symptom="for large d_k the dot products grow large, pushing the softmax into regions where it has "
        "extremely small gradients (Attention Is All You Need, as quoted)",
        fix="divide the scores by sqrt(d_k)",
        kind="saturation",
        family="transformer",
        adaptation="one attention layer written with bare parameters (d 64, unit-variance q and k) on a "
        "seeded majority-token task; Adam 1e-3, 300 steps",
        build=bare_attention,
        build_fix=lambda s: bare_attention(s, scaled=True),
    ),
]
