"""Failures in code written with bare ``nn.Parameter`` tensors and functional ops, as the sources write it.

Today's checkup sees each of these models as one layer (its parameters are used through ``@`` and
``torch.tanh``, not through modules): that is a finding the zoo reports, not something it works around.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .core import Case, Setup, cross_entropy, digits, markov_text, mse, seeded, sgd


# --- y = sigmoid(W x), W a bare N(0, 1) parameter ---------------------------------------------------
class SigmoidWx(nn.Module):
    def __init__(self, n: int, scale: float) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(n, n) * scale)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x @ self.W.T)


def sigmoid_wx(seed: int, scale: float = 1.0, lr: float = 100.0) -> Setup:
    seeded(seed)
    g = torch.Generator().manual_seed(seed + 29)
    x = torch.rand(1000, 100, generator=g)
    w_true = torch.randn(100, 100, generator=g)
    y = torch.sigmoid(x @ w_true.T)
    return Setup(SigmoidWx(100, scale), x, y, mse, sgd, lr, steps=300, batch=100)


# --- character MLP with bare parameters, W1 ~ N(0, 1): tanh saturated ------------------------------
class CharMLP(nn.Module):
    def __init__(self, fixed: bool) -> None:
        super().__init__()
        self.C = nn.Parameter(torch.randn(27, 10))
        gain = (5 / 3) / math.sqrt(30) if fixed else 1.0
        self.W1 = nn.Parameter(torch.randn(30, 200) * gain)
        self.b1 = nn.Parameter(torch.randn(200) * 0.01)
        self.W2 = nn.Parameter(torch.randn(200, 27) * (0.01 if fixed else 1.0))
        self.b2 = nn.Parameter(torch.randn(27) * (0.0 if fixed else 1.0))

    def forward(self, x: Tensor) -> Tensor:
        emb = self.C[x].reshape(len(x), -1)
        h = torch.tanh(emb @ self.W1 + self.b1)
        return h @ self.W2 + self.b2


def char_mlp(seed: int, fixed: bool = False) -> Setup:
    seeded(seed)
    text = markov_text(400, 12, 27, seed)
    windows = text.unfold(1, 4, 1).reshape(-1, 4)
    model = CharMLP(fixed)
    return Setup(model, windows[:, :3], windows[:, 3], cross_entropy, sgd, 0.1, steps=400, batch=32)


# --- d2l's RNN from scratch: bare W_xh, W_hh (sigma 0.01), trained without clipping ---------------
class RNNScratch(nn.Module):
    def __init__(self, vocab: int = 28, hidden: int = 32, sigma: float = 0.01) -> None:
        super().__init__()
        self.W_xh = nn.Parameter(torch.randn(vocab, hidden) * sigma)
        self.W_hh = nn.Parameter(torch.randn(hidden, hidden) * sigma)
        self.b_h = nn.Parameter(torch.zeros(hidden))
        self.W_hq = nn.Parameter(torch.randn(hidden, vocab) * sigma)
        self.b_q = nn.Parameter(torch.zeros(vocab))

    def forward(self, tokens: Tensor) -> Tensor:
        x = nn.functional.one_hot(tokens, self.W_xh.shape[0]).float()
        state = torch.zeros(len(tokens), self.W_hh.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            state = torch.tanh(x[:, t] @ self.W_xh + state @ self.W_hh + self.b_h)
            outputs.append(state @ self.W_hq + self.b_q)
        return torch.stack(outputs, 1)


def rnn_scratch(seed: int, clip: float | None = None) -> Setup:
    seeded(seed)
    text = markov_text(512, 33, 28, seed)
    return Setup(
        RNNScratch(), text[:, :-1], text[:, 1:], cross_entropy, sgd, 1.0, steps=300, batch=32, clip=clip
    )


# --- a layer whose weight columns are all equal: neurons stay identical -----------------------------
class Repeated(nn.Module):
    def __init__(self, n_in: int, n_out: int, symmetric: bool) -> None:
        super().__init__()
        w = torch.randn(n_out).repeat(n_in, 1).transpose(0, 1) if symmetric else torch.randn(n_out, n_in)
        self.w = nn.Parameter(w / math.sqrt(n_in))

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(x, self.w.T)


def repeated(seed: int, symmetric: bool = True) -> Setup:
    seeded(seed)
    x, y = digits()
    model = nn.Sequential(Repeated(64, 64, symmetric), nn.Tanh(), Repeated(64, 10, symmetric))
    return Setup(model, x, y, cross_entropy, sgd, 0.5)


CASES = [
    Case(
        id="bare_sigmoid_wx_saturated",
        source="https://discuss.pytorch.org/t/gradient-seems-to-small-when-training-parameters/153791",
        symptom="y = sigmoid(W x) with W a bare N(0,1) parameter converges for small n but not for n = 100; "
        "it needs a learning rate as high as 100",
        fix="no answer in the thread excerpt; the zoo tests W initialised at N(0, 1/n) (unsaturated sigmoid)",
        kind="saturation",
        family="functional",
        adaptation="the per-sample loop batched (100 rows per step, same mean loss); SGD 100 as posted",
        build=sigmoid_wx,
        build_fix=lambda s: sigmoid_wx(s, scale=0.1),
        lrs=(30.0, 100.0, 300.0),
    ),
    Case(
        id="bare_char_mlp_tanh_saturated",
        source="https://breno.bearblog.dev/the-weights-in-a-study-on-fixing-the-saturated-function",
        symptom="C, W1 ~ N(0,1) (30x200), tanh: pre-activations range about -18..18, tanh saturates at "
        "+-1 and the neurons stop learning",
        fix="scale W1 by (5/3)/sqrt(30), W2 by 0.01, b2 to 0",
        kind="saturation",
        family="functional",
        adaptation="seeded 27-symbol Markov text instead of names; SGD 0.1, 400 steps of 32",
        build=char_mlp,
        build_fix=lambda s: char_mlp(s, fixed=True),
    ),
    Case(
        id="bare_rnn_scratch_no_clipping",
        source="https://github.com/patrickwrowe/deep-learning-notebooks",
        symptom="the notebook re-creates d2l.ai's RNN from scratch (bare W_xh, W_hh, sigma 0.01, tanh); "
        "d2l's chapter trains it with gradient clipping because its gradients can explode (the "
        "notebook page itself shows the model, not a failing run)",
        fix="clip the gradient norm to 1",
        kind="exploding",
        family="functional",
        adaptation="seeded 28-symbol Markov text, 32 steps per sequence, hidden 32, SGD 1.0",
        build=rnn_scratch,
        build_fix=lambda s: rnn_scratch(s, clip=1.0),
    ),
    Case(
        id="bare_repeated_columns",
        source="https://pages.dogdog.run/machine_learning/weight_initialization.html",
        symptom="weights initialised with identical columns: all neurons of the layer have the same output "
        "and receive the same gradient, so they stay identical",
        fix="independent random initialisation",
        kind="other",
        family="functional",
        adaptation="two such layers with tanh between them on digits (the page: one layer fitting ones); "
        "weights scaled by 1/sqrt(fan-in); SGD 0.5",
        build=repeated,
        build_fix=lambda s: repeated(s, symmetric=False),
    ),
]
