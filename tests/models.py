"""A small model zoo for the tests, and the plain-autograd reference the monitor is checked against.

Each builder returns a :class:`Case`: a model, the positional inputs of its forward, and a loss
function of its output. Builders draw weights and data from torch's global generator: seed it
first (the autouse fixture in ``conftest.py`` does) to get the same case twice.

:func:`reference` computes every per-layer number the monitor records, the slow and obvious way:
forward hooks keep each observed module's outputs, ``torch.autograd.grad`` gives the gradient of
the loss with respect to them, and the activation statistics are recomputed from their
definitions (the saturated fraction from the activation's local slope, found by autograd).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import gradmedic
from gradmedic.history import History
from gradmedic.layers import find_layers
from gradmedic.monitor import ALL_STATS

# -- the zoo -------------------------------------------------------------------------------


@dataclass
class Case:
    """A model, the positional arguments of its forward, and a loss function of its output."""

    model: nn.Module
    inputs: tuple[Any, ...]
    loss_fn: Callable[[Any], Tensor]

    def loss(self) -> Tensor:
        return self.loss_fn(self.model(*self.inputs))


def _mse_to(target: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda out: (out - target).pow(2).mean()


def mlp(
    depth: int = 3, width: int = 8, act: type[nn.Module] = nn.Tanh, in_features: int = 5, batch: int = 16
) -> Case:
    """``depth`` Linear layers with an activation module between each two."""
    sizes = [in_features] + [width] * (depth - 1) + [3]
    modules: list[nn.Module] = []
    for i in range(depth):
        modules.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < depth - 1:
            modules.append(act())
    model = nn.Sequential(*modules)
    return Case(model, (torch.randn(batch, in_features),), _mse_to(torch.randn(batch, 3)))


def cnn_bn(batch: int = 6) -> Case:
    """Two conv blocks with BatchNorm2d (ReLU, then Tanh), a flatten and a linear head."""
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2),
        nn.BatchNorm2d(4),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 3),
    )
    target = torch.randint(0, 3, (batch,))
    return Case(model, (torch.randn(batch, 2, 6, 6),), lambda out: nn.functional.cross_entropy(out, target))


class RecurrentNet(nn.Module):
    """A 2-layer RNN/LSTM/GRU and a head; ``use_state`` feeds the final state(s) to the head too."""

    def __init__(self, kind: str, batch_first: bool, use_state: bool) -> None:
        super().__init__()
        self.kind, self.batch_first, self.use_state = kind, batch_first, use_state
        self.rnn = getattr(nn, kind)(3, 5, num_layers=2, batch_first=batch_first)
        self.head = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:
        out, state = self.rnn(x)
        last = out[:, -1] if self.batch_first else out[-1]
        if self.use_state:
            if self.kind == "LSTM":
                h, c = state
                last = last + h[-1] + c[0]
            else:
                last = last + state[-1]
        return self.head(last)


def recurrent(kind: str = "LSTM", batch_first: bool = True, use_state: bool = True, batch: int = 4) -> Case:
    model = RecurrentNet(kind, batch_first, use_state)
    x = torch.randn(batch, 6, 3) if batch_first else torch.randn(6, batch, 3)
    return Case(model, (x,), _mse_to(torch.randn(batch, 2)))


class TinyTransformer(nn.Module):
    """Input projection, a 2-layer TransformerEncoder (GELU module), mean pooling and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=nn.GELU(), batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(self.inp(x)).mean(dim=1))


def transformer(batch: int = 3) -> Case:
    return Case(TinyTransformer(), (torch.randn(batch, 5, 4),), _mse_to(torch.randn(batch, 2)))


def inplace_dropout(batch: int = 16) -> Case:
    """Linear -> ReLU(inplace=True) -> Dropout, twice, and a head."""
    model = nn.Sequential(
        nn.Linear(5, 8),
        nn.ReLU(inplace=True),
        nn.Dropout(0.25),
        nn.Linear(8, 8),
        nn.ReLU(inplace=True),
        nn.Dropout(0.25),
        nn.Linear(8, 3),
    )
    return Case(model, (torch.randn(batch, 5),), _mse_to(torch.randn(batch, 3)))


class SharedNet(nn.Module):
    """One Linear and one Tanh module, each called three times in a forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(6, 6)
        self.act = nn.Tanh()
        self.head = nn.Linear(6, 2)

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(3):
            x = self.act(self.block(x))
        return self.head(x)


def shared(batch: int = 8) -> Case:
    return Case(SharedNet(), (torch.randn(batch, 6),), _mse_to(torch.randn(batch, 2)))


def frozen(batch: int = 8) -> Case:
    """An MLP whose first Linear ("0") and a middle Linear ("4") are frozen."""
    case = mlp(depth=4, batch=batch)
    for index in (0, 4):
        for p in case.model[index].parameters():
            p.requires_grad_(False)
    return case


class UnusedNet(nn.Module):
    """A layer that is never called ("spare") and a branch the forward does not take ("skip")."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.spare = nn.Linear(6, 6)
        self.skip = nn.Linear(5, 2)
        self.c = nn.Linear(6, 2)
        self.use_skip = False

    def forward(self, x: Tensor) -> Tensor:
        y = self.c(torch.tanh(self.a(x)))
        return y + self.skip(x) if self.use_skip else y


def unused(batch: int = 8) -> Case:
    return Case(UnusedNet(), (torch.randn(batch, 5),), _mse_to(torch.randn(batch, 2)))


class DictNet(nn.Module):
    """Its forward takes a dict of tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 6)
        self.act = nn.Sigmoid()
        self.out = nn.Linear(6, 2)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.out(self.act(self.embed(batch["x"])) * batch["mask"])


def dict_input(batch: int = 8) -> Case:
    inputs = {"x": torch.randn(batch, 4), "mask": (torch.rand(batch, 6) > 0.3).float()}
    return Case(DictNet(), (inputs,), _mse_to(torch.randn(batch, 2)))


class PairNet(nn.Module):
    """Its forward takes a tuple of two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(3, 4)
        self.right = nn.Linear(2, 4)
        self.act = nn.Tanh()
        self.out = nn.Linear(4, 1)

    def forward(self, pair: tuple[Tensor, Tensor]) -> Tensor:
        a, b = pair
        return self.out(self.act(self.left(a) + self.right(b)))


def tuple_input(batch: int = 8) -> Case:
    pair = (torch.randn(batch, 3), torch.randn(batch, 2))
    return Case(PairNet(), (pair,), _mse_to(torch.randn(batch, 1)))


class SwappedNet(nn.Module):
    """Registered in the reverse of the order it is called: ``late`` first, ``early`` last."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(6, 3)
        self.act = nn.Tanh()
        self.early = nn.Linear(5, 6)

    def forward(self, x: Tensor) -> Tensor:
        return self.late(self.act(self.early(x)))


def swapped(batch: int = 8) -> Case:
    return Case(SwappedNet(), (torch.randn(batch, 5),), _mse_to(torch.randn(batch, 3)))


class _NaNGradient(torch.autograd.Function):
    """Identity forward; the backward turns the gradient into NaN."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad * float("nan")


class NaNGradient(nn.Module):
    """No parameters (so not a layer): passes values on, poisons the gradient."""

    def forward(self, x: Tensor) -> Tensor:
        return _NaNGradient.apply(x)


def nan_gradient(batch: int = 8) -> Case:
    """Linear "0", Tanh "1", NaNGradient "2", Linear "3", Tanh "4", Linear "5"."""
    model = nn.Sequential(
        nn.Linear(5, 8), nn.Tanh(), NaNGradient(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)
    )
    return Case(model, (torch.randn(batch, 5),), _mse_to(torch.randn(batch, 3)))


#: Builders of the models every "works on" and "changes nothing" test runs.
ZOO: dict[str, Callable[[], Case]] = {
    "mlp_tanh": mlp,
    "mlp_sigmoid": lambda: mlp(act=nn.Sigmoid),
    "mlp_relu": lambda: mlp(act=nn.ReLU),
    "cnn_bn": cnn_bn,
    "rnn": lambda: recurrent("RNN"),
    "lstm": lambda: recurrent("LSTM"),
    "gru": lambda: recurrent("GRU"),
    "lstm_seq_first": lambda: recurrent("LSTM", batch_first=False),
    "lstm_out_only": lambda: recurrent("LSTM", use_state=False),
    "transformer": transformer,
    "inplace_dropout": inplace_dropout,
    "shared": shared,
    "frozen": frozen,
    "unused": unused,
    "dict_input": dict_input,
    "tuple_input": tuple_input,
    "swapped": swapped,
}


# -- running it with the monitor -----------------------------------------------------------


def monitored_step(case: Case, seed: int = 0, **options: Any) -> History:
    """One forward/backward of ``case`` with a monitor recording every statistic."""
    with gradmedic.watch(case.model, **{**ALL_STATS, **options}) as monitor:
        case.model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        loss = case.loss()
        loss.backward()
        monitor.step(loss)
    return monitor.history


# -- the reference -------------------------------------------------------------------------

#: Activations whose slope flattens out at the tails (ReLU6 is a Hardtanh).
SATURATING = (nn.Sigmoid, nn.Tanh, nn.Softsign, nn.Hardtanh, nn.Hardsigmoid)
#: Activations whose output and slope are exactly zero on a half-line.
DYING = (nn.ReLU, nn.ReLU6, nn.Threshold, nn.Hardsigmoid)


def local_slope(activation: nn.Module, x: Tensor) -> Tensor:
    """d activation(x) / dx elementwise, in float64, by autograd."""
    fn = copy.deepcopy(activation)
    if hasattr(fn, "inplace"):
        fn.inplace = False
    xx = x.detach().double().requires_grad_(True)
    (slope,) = torch.autograd.grad(fn(xx).sum(), xx)
    return slope


def max_slope(activation: nn.Module) -> float:
    """The largest slope of ``activation``, found on a fine grid."""
    return local_slope(activation, torch.linspace(-10, 10, 40001, dtype=torch.float64)).max().item()


def saturation_reference(activation: nn.Module, x: Tensor) -> tuple[float, float]:
    """Fraction of ``x`` where the slope is below 5 % of its maximum, and the fraction of
    values so close to that edge (1e-4 relative) that float32 rounding may decide them."""
    slope = local_slope(activation, x)
    threshold = 0.05 * max_slope(activation)
    n = max(x.numel(), 1)
    near = ((slope - threshold).abs() <= 1e-4 * threshold).sum().item()
    return (slope < threshold).sum().item() / n, near / n


def dead_reference(output: Tensor) -> float:
    """Fraction of units (positions but the batch dimension) never above zero in the batch."""
    units = output.reshape(output.shape[0], -1)
    return (units.max(dim=0).values <= 0).double().mean().item()


def _floats(output: object) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _floats(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in _floats(item)]
    return []


def _cloned(output: Any) -> Any:
    """The same structure with every tensor cloned, so in-place changes downstream hit the clone."""
    if isinstance(output, Tensor):
        return output.clone()
    if isinstance(output, tuple):
        return tuple(_cloned(item) for item in output)
    if isinstance(output, list):
        return [_cloned(item) for item in output]
    if isinstance(output, dict):
        return {key: _cloned(item) for key, item in output.items()}
    return output


@dataclass
class _Call:
    outputs: list[Tensor]
    values: list[Tensor]
    pre: Tensor | None


@dataclass
class Reference:
    """Per metric, one row of reference values in the monitor's column order (NaN: none)."""

    layers: list[str]
    params: list[str]
    loss: float
    values: dict[str, np.ndarray] = field(default_factory=dict)
    #: Allowed absolute difference of ``act_saturated`` per layer (values on the 5 % edge).
    saturated_slack: np.ndarray = field(default_factory=lambda: np.zeros(0))


def reference(case: Case, seed: int = 0) -> Reference:
    """Every per-layer statistic of one forward/backward of ``case``, by plain autograd.

    The model's ``.grad`` fields are left alone. A module called several times contributes the
    squared gradient norms of all its calls to its signal, and the mean of its calls' activation
    statistics (what the monitor documents).
    """
    model = case.model
    names = [layer.name for layer in find_layers(model)]
    modules = {name: model.get_submodule(name) for name in names}
    calls: dict[str, list[_Call]] = {name: [] for name in names}
    pending: dict[str, Tensor | None] = {}

    def pre_hook(name: str, module: nn.Module, args: tuple[Any, ...]) -> None:
        first = args[0] if args and isinstance(args[0], Tensor) else None
        pending[name] = first.detach().clone() if first is not None else None

    def hook(name: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        tensors = _floats(output)
        calls[name].append(_Call(tensors, [t.detach().clone() for t in tensors], pending.pop(name, None)))
        return _cloned(output)

    handles = []
    for name, module in modules.items():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: pre_hook(n, m, a)))
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: hook(n, m, a, o)))
    try:
        torch.manual_seed(seed)
        loss = case.loss()
    finally:
        for handle in handles:
            handle.remove()

    outputs = [t for name in names for call in calls[name] for t in call.outputs if t.requires_grad]
    named_params = list(model.named_parameters())
    trainable = [p for _, p in named_params if p.requires_grad]
    grads = torch.autograd.grad(loss, outputs + trainable, allow_unused=True)
    output_grads = {id(t): g for t, g in zip(outputs, grads[: len(outputs)])}
    param_grads = dict(zip(map(id, trainable), grads[len(outputs) :]))

    ref = Reference(names, [n for n, _ in named_params], loss.item())
    signal_sq, signal_numel = np.zeros(len(names)), np.zeros(len(names))
    acts = np.full((len(names), 4), np.nan)
    slack = np.zeros(len(names))
    for column, name in enumerate(names):
        for call in calls[name]:
            for tensor in call.outputs:
                grad = output_grads.get(id(tensor))
                if grad is not None:
                    signal_sq[column] += grad.double().pow(2).sum().item()
                    signal_numel[column] += grad.numel()
        per_call = [_activation_row(modules[name], call) for call in calls[name] if call.values]
        if per_call:
            rows = np.array([row for row, _ in per_call])
            acts[column] = rows.mean(axis=0)
            slack[column] = np.mean([s for _, s in per_call])
    with np.errstate(invalid="ignore", divide="ignore"):
        seen = signal_numel > 0
        ref.values["signal_norm"] = np.where(seen, np.sqrt(signal_sq), np.nan)
        ref.values["signal_rms"] = np.where(seen, np.sqrt(signal_sq / np.maximum(signal_numel, 1)), np.nan)
    for i, metric in enumerate(("act_mean", "act_std", "act_saturated", "act_dead")):
        ref.values[metric] = acts[:, i]
    ref.saturated_slack = slack

    param_sq = np.full(len(named_params), np.nan)
    for i, (_, p) in enumerate(named_params):
        grad = param_grads.get(id(p))
        if grad is not None:
            param_sq[i] = grad.double().pow(2).sum().item()
    ref.values["param_grad_norm"] = np.sqrt(param_sq)
    owner = {id(p): name for name in names for p in modules[name].parameters(recurse=False)}
    layer_sq = np.full(len(names), np.nan)
    for i, (_, p) in enumerate(named_params):
        if not np.isnan(param_sq[i]):
            column = names.index(owner[id(p)])
            layer_sq[column] = np.nansum([layer_sq[column], param_sq[i]])
    ref.values["weight_grad_norm"] = np.sqrt(layer_sq)
    return ref


def _activation_row(module: nn.Module, call: _Call) -> tuple[list[float], float]:
    """Mean, population std, saturated and dead fractions of one call's first output."""
    values = call.values[0].double()
    mean = values.mean().item()
    std = ((values - values.mean()) ** 2).mean().sqrt().item()
    saturated, slack, dead = float("nan"), 0.0, float("nan")
    if isinstance(module, SATURATING) and call.pre is not None:
        saturated, slack = saturation_reference(module, call.pre)
    if isinstance(module, DYING):
        dead = dead_reference(call.values[0])
    return [mean, std, saturated, dead], slack


#: Tolerances of the comparison with the reference: (rtol, atol).
TOLERANCE: dict[str, tuple[float, float]] = {
    "signal_norm": (1e-4, 0.0),
    "signal_rms": (1e-4, 0.0),
    "param_grad_norm": (1e-4, 0.0),
    "weight_grad_norm": (1e-4, 0.0),
    "act_mean": (1e-4, 1e-6),
    "act_std": (1e-4, 1e-7),
    "act_saturated": (0.0, 1e-7),
    "act_dead": (0.0, 1e-7),
}


def assert_matches_reference(history: History, ref: Reference, row: int = -1) -> None:
    """Every metric of ``history`` at ``row`` equals the reference, NaN where it has none."""
    assert [layer.name for layer in history.layers] == ref.layers
    assert history.params == ref.params
    for metric, (rtol, atol) in TOLERANCE.items():
        actual = history.array(metric)[1][row]
        expected = ref.values[metric]
        columns = ref.params if metric == "param_grad_norm" else ref.layers
        if metric == "act_saturated":  # values on the 5 % edge may go either way in float32
            np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{metric} {columns}")
            gap = np.nan_to_num(np.abs(actual - expected))
            assert np.all(gap <= atol + ref.saturated_slack), f"{metric} {columns}: {actual} != {expected}"
            continue
        np.testing.assert_allclose(
            actual, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{metric} {columns}"
        )
    np.testing.assert_allclose(history.array("loss")[1][row, 0], ref.loss, rtol=1e-6)
