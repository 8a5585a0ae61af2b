"""Failures of recurrent networks, re-created on the seeded adding problem and seeded series."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradmedic.tasks import adding_problem

from .core import Case, Setup, adam, mse, seeded, sgd


class LastStep(nn.Module):
    """A recurrent layer read at its last step by a linear head: ``out, h = rnn(x)``."""

    def __init__(self, rnn: nn.Module, hidden: int, outputs: int = 1) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def adding(seed: int, kind: str, length: int = 25, lr: float = 1e-3, clip: float | None = None,
           nonlinearity: str = "tanh", identity: bool = False, hidden: int = 64, steps: int = 1000,
           optimizer: object = adam) -> Setup:  # fmt: skip
    seeded(seed)
    x, y = adding_problem(2000, length, seed=seed)
    if kind == "lstm":  # with Keras' unit_forget_bias: forget-gate bias 1
        rnn: nn.Module = nn.LSTM(2, hidden, batch_first=True)
        rnn.bias_ih_l0.data[hidden : 2 * hidden] = 1.0
    else:
        rnn = nn.RNN(2, hidden, batch_first=True, nonlinearity=nonlinearity)
        if identity:
            nn.init.eye_(rnn.weight_hh_l0)
            nn.init.zeros_(rnn.bias_hh_l0)
            nn.init.zeros_(rnn.bias_ih_l0)
            nn.init.normal_(rnn.weight_ih_l0, std=0.001)
    model = LastStep(rnn, hidden)
    return Setup(model, x, y, mse, optimizer, lr, steps=steps, clip=clip)  # type: ignore[arg-type]


# --- LSTM(1, 256) encoder + dense decoder forecasting a series (Keras re-implementation) ----------
class Seq2Dense(nn.Module):
    def __init__(self, forget_bias: float = 0.0, horizon: int = 16) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 256, batch_first=True)
        for name, p in self.lstm.named_parameters():
            if name.startswith("weight_ih"):
                nn.init.xavier_uniform_(p)
            elif name.startswith("weight_hh"):
                nn.init.orthogonal_(p)
            else:
                nn.init.zeros_(p)
        if forget_bias:
            self.lstm.bias_ih_l0.data[256:512] = forget_bias
        self.decoder = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, horizon))
        for m in self.decoder:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return self.decoder(out[:, -1])


def series(seed: int, n: int = 600, past: int = 32, horizon: int = 16) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + 19)
    t = torch.arange(past + horizon).float()
    freq = 0.05 + 0.25 * torch.rand(n, 1, generator=g)
    phase = torch.rand(n, 1, generator=g) * 6.28
    s = (
        torch.sin(freq * t + phase)
        + 0.3 * torch.sin(2.1 * freq * t)
        + 0.05 * torch.randn(n, past + horizon, generator=g)
    )
    return s[:, :past].unsqueeze(-1), s[:, past:]


def seq2dense(seed: int, forget_bias: float = 0.0) -> Setup:
    seeded(seed)
    x, y = series(seed)
    return Setup(Seq2Dense(forget_bias), x, y, mse, adam, 1e-3, steps=100)


# --- RNN(16) on a noisy sine of amplitude 10, predicting the next value ---------------------------
def noisy_sine(seed: int, standardise: bool) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed + 23)
    data = 10 * torch.sin(2 * torch.pi * torch.arange(3000) / 10) + torch.randn(3000, generator=g)
    if standardise:
        data = (data - data.mean()) / data.std()
    windows = data[:2000].unfold(0, 11, 1)
    return windows[:, :10].unsqueeze(-1), windows[:, 10:]


def sine_rnn(seed: int, standardise: bool = False) -> Setup:
    seeded(seed)
    x, y = noisy_sine(seed, standardise)
    rnn = nn.RNN(1, 16, batch_first=True)
    model = LastStep(rnn, 16)
    for p in model.parameters():
        nn.init.normal_(p, std=0.1)  # init.Normal(sigma=0.1) as posted
    return Setup(model, x, y, mse, adam, 0.01, steps=300, batch=32, clip=10.0)


CASES = [
    Case(
        id="vanilla_rnn_adding_25",
        source="https://axeldomingues.dev/blog/the-pain-of-training-rnns",
        symptom="a vanilla RNN learns local structure but long context does not improve: it can only "
        "'hear' the last few time steps",
        fix="LSTM (gated cell) instead of the vanilla RNN; here with forget-gate bias 1, Keras' default",
        kind="vanishing",
        family="rnn",
        adaptation="the adding problem over 25 steps (gradmedic.tasks), hidden 64, Adam 1e-3, "
        "1000 steps of 64 (an LSTM needs about 500 to solve it)",
        build=lambda s: adding(s, "rnn"),
        build_fix=lambda s: adding(s, "lstm"),
    ),
    Case(
        id="rnn_jumps_to_flat_region",
        source="https://stats.stackexchange.com/posts/487195/revisions",
        symptom="RNNs take a large step and get trapped in a virtually flat place of the loss surface",
        fix="gradient clipping (e.g. at 1.0); a smaller step size alone might not help",
        kind="exploding",
        family="rnn",
        adaptation="tanh nn.RNN(2, 64) on the adding problem over 25 steps with plain SGD at 0.5, 1000 steps",
        build=lambda s: adding(s, "rnn", lr=0.5, optimizer=sgd),
        build_fix=lambda s: adding(s, "rnn", lr=0.5, optimizer=sgd, clip=1.0),
    ),
    Case(
        id="relu_rnn_default_init",
        source="https://ar5iv.labs.arxiv.org/html/1504.00941",
        symptom="recurrent networks of ReLU units with a standard initialisation suffer vanishing and "
        "exploding gradients and fail the adding problem",
        fix="initialise the recurrent matrix to the identity (IRNN)",
        kind="exploding",
        family="rnn",
        adaptation="adding problem over 25 steps, hidden 64, Adam 1e-3, 1000 steps (the paper: SGD "
        "with clipping, T up to 400)",
        build=lambda s: adding(s, "rnn", nonlinearity="relu"),
        build_fix=lambda s: adding(s, "rnn", nonlinearity="relu", identity=True),
    ),
    Case(
        id="lstm_seq2dense_forecast",
        source="https://discuss.pytorch.org/t/loss-not-decreasing-in-lstm-network/159152",
        symptom="LSTM(1, 256) (Xavier input, orthogonal recurrent, zero biases) and a dense decoder: the "
        "MSE does not decrease, while the identical Keras model trains",
        fix="not in the thread excerpt; the zoo tests Keras' unit_forget_bias (forget-gate bias 1)",
        kind="other",
        family="rnn",
        adaptation="seeded two-tone sines, 32 past steps -> 16 future (the post: 256 -> 128); Adam 1e-3, "
        "100 steps",
        build=seq2dense,
        build_fix=lambda s: seq2dense(s, 1.0),
    ),
    Case(
        id="rnn_noisy_sine_predicts_mean",
        source="https://discuss.mxnet.apache.org/t/difficulties-with-recurrent-network/6483",
        symptom="an RNN of 16 units on a noisy sine (amplitude 10): the loss oscillates around a constant, "
        "the prediction is the mean of the data",
        fix="no fix in the thread; the zoo tests standardised data",
        kind="other",
        family="rnn",
        adaptation="MXNet re-created in PyTorch: nn.RNN(1, 16), all weights N(0, 0.1), Adam 0.01 with "
        "clipping 10, windows of 10 steps predicting the next",
        build=sine_rnn,
        build_fix=lambda s: sine_rnn(s, True),
    ),
]
