"""The nine classic remedies, each as a :class:`Remedy` with the code a user would write.

Example:
    >>> he_init().family
    'init'
    >>> "kaiming" in he_init().code
    True
"""

from __future__ import annotations

from .findings import Family, Remedy

#: Remedy families that ``gradmedic.treat`` applies by itself: the diagnosis declares them here,
#: and ``tests/remedies/test_treat.py`` checks they are the families ``treat`` can apply.
AUTOMATIC_FAMILIES = frozenset({"init", "activation", "normalization", "residual", "recurrent", "clipping"})


def _remedy(family: Family, name: str, why: str, code: str) -> Remedy:
    return Remedy(family, name, why, code, automatic=family in AUTOMATIC_FAMILIES)


def non_saturating_activation(current: str | None = None) -> Remedy:
    """1. Activations that keep the gradient: ReLU family, ELU, SELU, SiLU."""
    was = f" instead of {current}" if current else ""
    return _remedy(
        Family.ACTIVATION,
        "Non-saturating activation (SiLU, ReLU, LeakyReLU, ELU)",
        f"their slope stays near 1 for positive inputs{was}; sigmoid's is at most 0.25",
        "nn.SiLU()  # or nn.ReLU(), nn.LeakyReLU(0.01), nn.ELU(), nn.SELU() with LeCun init",
    )


def leaky_activation() -> Remedy:
    """1b. Against dead units: a slope on the negative side."""
    return _remedy(
        Family.ACTIVATION,
        "LeakyReLU / ELU instead of ReLU",
        "a unit with a small negative slope still gets a gradient and can come back to life",
        "nn.LeakyReLU(negative_slope=0.01)  # or nn.ELU()",
    )


def he_init() -> Remedy:
    """2a. He/Kaiming initialization for the ReLU family."""
    return _remedy(
        Family.INIT,
        "He (Kaiming) initialization",
        "keeps the signal's variance constant through ReLU-family layers (gain sqrt(2))",
        "nn.init.kaiming_uniform_(layer.weight, nonlinearity='relu'); nn.init.zeros_(layer.bias)",
    )


def xavier_or_orthogonal_init(deep: bool, activation: str = "tanh") -> Remedy:
    """2b. Xavier/Glorot (or orthogonal, for deep stacks) for tanh and sigmoid."""
    gain = f"nn.init.calculate_gain('{activation}')"
    if deep:
        # Gain 1, not calculate_gain('tanh') = 5/3: over 100 tanh layers 5/3 makes the signal
        # grow 1000x, over 1000 layers it overflows; gain 1 keeps it within 1e-2 (measured).
        return _remedy(
            Family.INIT,
            "Orthogonal initialization (gain 1)",
            "an orthogonal matrix keeps every direction's norm, so the signal neither shrinks "
            f"nor grows through a deep {activation} stack",
            "nn.init.orthogonal_(layer.weight); nn.init.zeros_(layer.bias)",
        )
    return _remedy(
        Family.INIT,
        "Xavier (Glorot) initialization",
        f"balances the variance of the forward signal and of the gradient for {activation}",
        f"nn.init.xavier_uniform_(layer.weight, gain={gain})",
    )


def lecun_init() -> Remedy:
    """2c. LeCun initialization for SELU."""
    return _remedy(
        Family.INIT,
        "LeCun initialization",
        "SELU self-normalizes only with weights of variance 1/fan_in",
        "nn.init.kaiming_normal_(layer.weight, nonlinearity='linear')  # LeCun normal",
    )


def batch_norm() -> Remedy:
    """3. Batch normalization."""
    return _remedy(
        Family.NORMALIZATION,
        "Batch normalization after each linear/conv layer",
        "re-centres and re-scales every layer's input, so no layer drifts into a flat region",
        "nn.Sequential(nn.Linear(n, n), nn.BatchNorm1d(n), nn.ReLU())  # BatchNorm2d for conv",
    )


def residual() -> Remedy:
    """4. Residual connections."""
    return _remedy(
        Family.RESIDUAL,
        "Residual connections",
        "y = F(x) + x gives the gradient a path that skips every layer's factor",
        "def forward(self, x): return x + self.alpha * self.block(x)  # alpha starts at 0",
    )


def clipping(max_norm: float = 1.0) -> Remedy:
    """5. Gradient clipping."""
    return _remedy(
        Family.CLIPPING,
        "Gradient clipping",
        "bounds the size of one update, so one huge gradient cannot throw the weights away",
        f"torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={max_norm})  # before step()",
    )


def gated_recurrent() -> Remedy:
    """6. LSTM / GRU."""
    return _remedy(
        Family.RECURRENT,
        "LSTM or GRU instead of a vanilla RNN",
        "their additive, gated cell state carries the gradient across many time steps",
        "nn.LSTM(input_size, hidden_size, batch_first=True)  # or nn.GRU(...)",
    )


def adaptive_optimizer() -> Remedy:
    """7. Learning rate and adaptive optimizers."""
    return _remedy(
        Family.OPTIMIZER,
        "Adaptive optimizer (Adam, RMSprop) and a tuned learning rate",
        "per-parameter step sizes let layers with small gradients still move",
        "torch.optim.Adam(model.parameters(), lr=1e-3)  # find the rate with gradmedic.find_lr",
    )


def lower_learning_rate() -> Remedy:
    """7b. A smaller learning rate (against divergence)."""
    return _remedy(
        Family.OPTIMIZER,
        "Smaller learning rate",
        "a step too large for the curvature makes values grow until they overflow",
        "for group in optimizer.param_groups: group['lr'] *= 0.1",
    )


def layer_norm() -> Remedy:
    """8. Layer normalization."""
    return _remedy(
        Family.NORMALIZATION,
        "Layer normalization",
        "normalizes each sample's features, independent of batch size: good in sequence models",
        "nn.LayerNorm(hidden_size)  # after each layer, or before each block (pre-LN)",
    )


def shallower(depth: int) -> Remedy:
    """9. A shallower model."""
    return _remedy(
        Family.SHALLOWER,
        f"A shallower model (about {depth} layers)",
        "the signal only reaches that many layers; the layers below it do not learn anyway",
        f"model = build_model(depth={depth})  # the same recipe with fewer blocks",
    )


def loss_scaling() -> Remedy:
    """Mixed precision: loss scaling, so small gradients stay in float16's range."""
    return _remedy(
        Family.PRECISION,
        "Loss scaling (torch.amp.GradScaler)",
        "multiplies the loss, so every gradient, by a large factor (2**16 to start) during the "
        "backward pass, lifting small gradients into float16's normal range; the step is unscaled",
        "scaler = torch.amp.GradScaler()\n"
        "scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()",
    )


def bfloat16() -> Remedy:
    """Mixed precision: bfloat16, which has float32's exponent range."""
    return _remedy(
        Family.PRECISION,
        "bfloat16 instead of float16",
        "bfloat16 keeps float32's exponent range (smallest normal 1.2e-38): gradients do not "
        "underflow and no loss scaling is needed",
        "with torch.autocast(device_type='cuda', dtype=torch.bfloat16): loss = loss_fn(model(x), y)",
    )


def forget_gate_bias(length: int | None = None) -> Remedy:
    """6b. An open forget gate (LSTM) / update gate (GRU): bias 1, or chrono initialization."""
    chrono = f", max_len={length}" if length else ", max_len=T"
    return _remedy(
        Family.RECURRENT,
        "Forget-gate bias 1 (or chrono initialization)",
        "the cell keeps a share sigmoid(bias) of its state, and of its gradient, per step: bias 1 "
        "keeps 73 %, chrono biases log(U(1, T-1)) keep the state for up to T steps",
        f"gradmedic.set_forget_gate_bias(model, 1.0)  # or value='chrono'{chrono}",
    )


def recurrent_init() -> Remedy:
    """2d. Orthogonal (or identity) recurrent weights."""
    return _remedy(
        Family.INIT,
        "Orthogonal (or identity) recurrent weights",
        "an orthogonal W_hh keeps the norm of the signal at every step (identity + ReLU: the IRNN)",
        "gradmedic.remedies.recurrent_weights(model, 'orthogonal')  # or 'identity' with nonlinearity='relu'",
    )
