"""Remedies for training and for recurrent layers: gradient clipping against PyTorch's and NFNets'
references, gate biases and recurrent weights slice by slice, RNN -> LSTM/GRU behind the same
interface, and the learning-rate range test."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sick_models as sm
from gradmedic.errors import ConfigError
from gradmedic.remedies import (
    Change,
    GradientClipper,
    adaptive_clip_,
    find_lr,
    install_gradient_clipping,
    recurrent_weights,
    set_forget_gate_bias,
    swap_recurrent,
)
from gradmedic.remedies.recurrent import GatedRecurrent

# -- gradient clipping -------------------------------------------------------------------------


class Conv(nn.Module):
    """Conv (4-D weight), Linear (2-D) and biases (1-D): every parameter shape AGC handles."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def twins(scale: float = 50.0, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A model with gradients from one backward pass, and an identical copy (same grads)."""
    torch.manual_seed(seed)
    model = Conv()
    x, y = scale * torch.randn(16, 3, 6, 6), torch.randint(0, 5, (16,))
    F.cross_entropy(model(x), y).backward()
    twin = copy.deepcopy(model)
    for a, b in zip(model.parameters(), twin.parameters()):
        b.grad = a.grad.clone()
    return model, twin


def grads(model: nn.Module) -> list[Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def total_norm(tensors: list[Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def step_with_clipper(model: nn.Module, **options: object) -> GradientClipper:
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    clipper = install_gradient_clipping(opt, **options)  # type: ignore[arg-type]
    opt.step()  # the pre-hook clips the .grad fields in place
    return clipper


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e6])
def test_norm_mode_matches_clip_grad_norm(max_norm: float) -> None:
    model, reference = twins()
    raw = total_norm(grads(model))
    clipper = step_with_clipper(model, mode="norm", max_norm=max_norm)
    returned = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
    for ours, theirs in zip(grads(model), grads(reference)):
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=0)
    assert clipper.last_total_norm() == pytest.approx(raw, rel=1e-5)
    assert clipper.last_total_norm() == pytest.approx(float(returned), rel=1e-6)
    clipped = raw > max_norm
    assert clipper.clipped_steps == int(clipped)
    if clipped:
        assert total_norm(grads(model)) == pytest.approx(max_norm, rel=1e-5)


@pytest.mark.parametrize("clip_value", [1e-3, 0.05, 1e6])
def test_value_mode_matches_clip_grad_value(clip_value: float) -> None:
    model, reference = twins()
    raw = grads(model)
    clipper = step_with_clipper(model, mode="value", clip_value=clip_value)
    torch.nn.utils.clip_grad_value_(reference.parameters(), clip_value)
    for ours, theirs in zip(grads(model), grads(reference)):
        assert torch.equal(ours, theirs)
    assert clipper.last_total_norm() == pytest.approx(total_norm(raw), rel=1e-5)
    assert clipper.clipped_steps == int(any(g.abs().max() > clip_value for g in raw))


def agc_reference(model: nn.Module, clipping: float, eps: float = 1e-3) -> tuple[list[Tensor], int, int]:
    """NFNets' rule, one unit at a time: a unit is a row of a Linear weight, a filter of a conv,
    a whole bias. Returns the clipped gradients and how many units were (and were not) clipped."""
    out, clipped, kept = [], 0, 0
    for param in model.parameters():
        w, g = param.detach().double(), param.grad.double().clone()
        units = [(w, g)] if w.dim() <= 1 else list(zip(w, g))
        for w_i, g_i in units:
            limit = clipping * max(w_i.norm().item(), eps)
            norm = g_i.norm().item()
            if norm > limit:
                g_i.mul_(limit / norm)  # a view of g: clips in place
                clipped += 1
            else:
                kept += 1
        out.append(g.float())
    return out, clipped, kept


@pytest.mark.parametrize(("clipping", "scale"), [(0.01, 50.0), (0.5, 1.0)])
def test_agc_matches_a_per_unit_reference(clipping: float, scale: float) -> None:
    model, reference = twins(scale)
    expected, clipped, kept = agc_reference(reference, clipping)
    assert clipped > 0
    if scale == 1.0:
        assert kept > 0  # a mixture: some units clipped, some not
    clipper = step_with_clipper(model, mode="agc", clipping=clipping)
    for ours, theirs in zip(grads(model), expected):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-9)
    assert clipper.clipped_steps == 1


def test_adaptive_clip_returns_the_smallest_scale_and_leaves_small_gradients() -> None:
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 2.0]]))
    layer.weight.grad = torch.tensor([[0.0, 0.1, 0, 0], [0, 0, 0.05, 0], [0, 0, 0, 0.001]])
    layer.bias.grad = torch.zeros(3)
    smallest = adaptive_clip_([layer.weight, layer.bias], clipping=0.01)
    # limits: 0.05, 0.01, 0.02; norms 0.1, 0.05, 0.001 -> scales 0.5, 0.2, 1
    expected = torch.tensor([[0.0, 0.05, 0, 0], [0, 0, 0.01, 0], [0, 0, 0, 0.001]])
    assert torch.allclose(layer.weight.grad, expected)
    assert smallest.item() == pytest.approx(0.2)


def test_clipper_statistics_over_several_steps() -> None:
    torch.manual_seed(0)
    model = nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    clipper = install_gradient_clipping(opt, mode="norm", max_norm=1.0)
    norms = []
    for scale in (100.0, 1e-3, 100.0, 1e-3, 1e-3):
        opt.zero_grad()
        (scale * model(torch.randn(4, 8)).sum()).backward()
        norms.append(total_norm(grads(model)))
        opt.step()
        assert clipper.last_total_norm() == pytest.approx(norms[-1], rel=1e-5)
    assert [n > 1.0 for n in norms] == [True, False, True, False, False]
    assert clipper.clipped_steps == 2
    assert clipper.steps == 5
    norm, scale = clipper.last_device_stats()
    assert scale.item() == 1.0 and norm.item() == pytest.approx(norms[-1], rel=1e-5)
    assert clipper.describe() == Change("clipping", "(optimizer)", "norm clipping, max_norm=1.0")


def test_clipper_is_removable() -> None:
    model, _ = twins()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    clipper = install_gradient_clipping(opt, mode="norm", max_norm=1e-3)
    assert len(opt._optimizer_step_pre_hooks) == 1
    assert opt._gradmedic_clippers == [clipper]
    clipper.remove()
    assert len(opt._optimizer_step_pre_hooks) == 0
    assert opt._gradmedic_clippers == []
    raw = grads(model)
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(grads(model), raw))
    assert clipper.steps == 0 and clipper.clipped_steps == 0
    clipper.remove()  # twice is harmless


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "l2"},
        {"max_norm": 0.0},
        {"max_norm": -1.0},
        {"max_norm": float("nan")},
        {"mode": "value", "clip_value": 0.0},
        {"mode": "agc", "clipping": -0.01},
    ],
)
def test_bad_clipping_settings_are_config_errors(options: dict[str, object]) -> None:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ConfigError):
        install_gradient_clipping(opt, **options)  # type: ignore[arg-type]
    assert len(opt._optimizer_step_pre_hooks) == 0


def test_clipping_needs_an_optimizer() -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match=r"torch\.optim\.Optimizer"):
        install_gradient_clipping(model.parameters())  # type: ignore[arg-type]


# -- gate biases and recurrent weights ---------------------------------------------------------


def biases(module: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if n.startswith("bias")}


MEMORY_MODULES: list[tuple[str, Callable[[], nn.Module], int]] = [
    ("lstm", lambda: nn.LSTM(4, 8, num_layers=2, bidirectional=True), 4),
    ("lstm_cell", lambda: nn.LSTMCell(4, 8), 4),
    ("gru", lambda: nn.GRU(4, 8, num_layers=2, bidirectional=True), 3),
    ("gru_cell", lambda: nn.GRUCell(4, 8), 3),
]


@pytest.mark.parametrize(("name", "make", "gates"), MEMORY_MODULES, ids=[m[0] for m in MEMORY_MODULES])
@pytest.mark.parametrize("value", [1.0, 2.5])
def test_forget_gate_bias_sets_exactly_the_memory_gate(
    name: str, make: Callable[[], nn.Module], gates: int, value: float
) -> None:
    """LSTM gates (i, f, g, o), GRU gates (r, z, n): chunk 1 is the forget / update gate."""
    model = nn.Sequential()
    model.add_module("rnn", make())
    before = biases(model.rnn)
    changes = set_forget_gate_bias(model, value)
    gate = "forget" if "lstm" in name else "update"
    assert changes == [Change("recurrent", "rnn", f"{gate}-gate bias {value}")]
    after = biases(model.rnn)
    assert len(after) == (8 if name in ("lstm", "gru") else 2)
    for key, bias in after.items():
        chunks, old = bias.chunk(gates), before[key].chunk(gates)
        target = value if key.startswith("bias_ih") else 0.0
        assert torch.equal(chunks[1], torch.full((8,), target)), key
        for i in set(range(gates)) - {1}:
            assert torch.equal(chunks[i], old[i]), (key, i)


def test_forget_gate_bias_says_when_there_is_no_gate() -> None:
    model = nn.Sequential(
        nn.RNN(4, 8),
    )
    before = biases(model)
    changes = set_forget_gate_bias(model, 1.0)
    assert len(changes) == 1 and changes[0].skipped
    assert all(torch.equal(before[k], v) for k, v in biases(model).items())


def test_chrono_lstm_forget_bias_is_log_uniform_and_input_gate_its_negative() -> None:
    lstm = nn.LSTM(4, 256, num_layers=2)
    before = biases(lstm)
    max_len = 50
    changes = set_forget_gate_bias(lstm, "chrono", max_len=max_len)
    assert changes == [Change("recurrent", "", f"chrono gate bias for {max_len} steps")]
    for layer in ("l0", "l1"):
        ih = lstm.get_parameter(f"bias_ih_{layer}").detach().chunk(4)
        hh = lstm.get_parameter(f"bias_hh_{layer}").detach().chunk(4)
        forget, input_gate = ih[1] + hh[1], ih[0] + hh[0]  # what the gates see
        assert torch.equal(hh[1], torch.zeros(256))
        assert forget.min() >= 0.0 and forget.max() <= math.log(max_len - 1) + 1e-6
        steps = forget.exp()  # U(1, T - 1): mean T / 2, std (T - 2) / sqrt(12)
        assert steps.mean().item() == pytest.approx(max_len / 2, abs=3.0)
        assert steps.std().item() == pytest.approx((max_len - 2) / math.sqrt(12), rel=0.15)
        assert torch.allclose(input_gate, -forget)
        for gate in (2, 3):  # g and o untouched
            assert torch.equal(ih[gate], before[f"bias_ih_{layer}"].chunk(4)[gate])
            assert torch.equal(hh[gate], before[f"bias_hh_{layer}"].chunk(4)[gate])


def test_chrono_gru_update_gate_and_bad_lengths() -> None:
    gru = nn.GRUCell(3, 64)
    set_forget_gate_bias(gru, "chrono", max_len=20)
    z = gru.bias_ih.detach().chunk(3)[1]
    assert z.min() >= 0 and z.max() <= math.log(19) + 1e-6 and z.std() > 0.1
    assert torch.equal(gru.bias_hh.detach().chunk(3)[1], torch.zeros(64))
    for max_len in (None, 2):
        with pytest.raises(ConfigError, match="max_len"):
            set_forget_gate_bias(nn.LSTM(2, 2), "chrono", max_len=max_len)


RECURRENT: list[tuple[str, Callable[[], nn.Module], int]] = [
    ("lstm", lambda: nn.LSTM(5, 16, num_layers=2, bidirectional=True), 4),
    ("gru", lambda: nn.GRU(5, 16, num_layers=2), 3),
    ("rnn", lambda: nn.RNN(5, 16), 1),
    ("lstm_cell", lambda: nn.LSTMCell(5, 16), 4),
    ("gru_cell", lambda: nn.GRUCell(5, 16), 3),
    ("rnn_cell", lambda: nn.RNNCell(5, 16), 1),
]


@pytest.mark.parametrize(("name", "make", "gates"), RECURRENT, ids=[r[0] for r in RECURRENT])
@pytest.mark.parametrize("scheme", ["orthogonal", "identity"])
def test_recurrent_weights_per_gate(
    name: str, make: Callable[[], nn.Module], gates: int, scheme: str
) -> None:
    module = make()
    changes = recurrent_weights(module, scheme)
    assert len(changes) == 1 and changes[0].action.startswith(f"recurrent weights {scheme}")
    eye = torch.eye(16)
    for pname, param in module.named_parameters():
        chunks = param.detach().chunk(gates)
        if pname.startswith("weight_hh"):
            for chunk in chunks:
                assert chunk.shape == (16, 16)
                if scheme == "identity":
                    assert torch.equal(chunk, eye)
                else:
                    assert torch.allclose(chunk @ chunk.T, eye, atol=1e-5)
                    assert not torch.allclose(chunk, eye)
        elif pname.startswith("weight_ih"):
            for chunk in chunks:  # Xavier uniform per gate
                assert chunk.abs().max() <= math.sqrt(6 / sum(chunk.shape)) + 1e-6
        else:
            for gate, chunk in enumerate(chunks):
                forget = "lstm" in name and gate == 1 and pname.startswith("bias_ih")
                assert torch.equal(chunk, torch.full((16,), 1.0 if forget else 0.0)), (pname, gate)


def test_recurrent_weights_bad_scheme_and_no_recurrent_layer() -> None:
    with pytest.raises(ConfigError, match="scheme='xavier'"):
        recurrent_weights(nn.LSTM(2, 2), "xavier")
    changes = recurrent_weights(nn.Sequential(nn.Linear(2, 2)))
    assert len(changes) == 1 and changes[0].skipped


# -- RNN -> LSTM / GRU behind the caller's interface ---------------------------------------------


class RNNUser(nn.Module):
    """Written for nn.RNN: ``out, h = self.rnn(x)`` and ``self.rnn(x, h0)``."""

    def __init__(self, batch_first: bool, layers: int, bidirectional: bool) -> None:
        super().__init__()
        self.rnn = nn.RNN(3, 8, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
        self.head = nn.Linear(8 * (2 if bidirectional else 1), 2)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        out, h = self.rnn(x) if h0 is None else self.rnn(x, h0)
        return self.head(out), h


@pytest.mark.parametrize("to", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_swap_recurrent_keeps_the_interface(
    to: str, batch_first: bool, layers: int, bidirectional: bool
) -> None:
    model = RNNUser(batch_first, layers, bidirectional)
    x = torch.randn(4, 7, 3) if batch_first else torch.randn(7, 4, 3)
    h0 = torch.randn(layers * (2 if bidirectional else 1), 4, 8)
    shapes = [tuple(t.shape) for t in (*model(x), *model(x, h0))]
    changes = swap_recurrent(model, to=to)
    assert changes == [Change("recurrent", "rnn", f"RNN -> {to.upper()} (same inputs and outputs)")]
    assert not any(type(m) is nn.RNN for m in model.modules())
    inner = model.rnn.inner if to == "lstm" else model.rnn
    assert type(inner) is (nn.LSTM if to == "lstm" else nn.GRU)
    assert (inner.num_layers, inner.batch_first, inner.bidirectional) == (layers, batch_first, bidirectional)
    out, h = model(x)
    out0, h_0 = model(x, h0)
    assert [tuple(t.shape) for t in (out, h, out0, h_0)] == shapes
    assert not torch.allclose(out0, out)  # h0 is used
    if to == "lstm":  # h0 starts the hidden state, the cell state starts at zero
        expected, (h_ref, _) = inner(x, (h0, torch.zeros_like(h0)))
        assert torch.equal(out0, model.head(expected)) and torch.equal(h_0, h_ref)
    (out0.sum() + h_0.sum()).backward()
    assert all(p.grad is not None for p in inner.parameters())


class CellLoop(nn.Module):
    """A hand-written loop over time with an RNNCell."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(3, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.zeros(x.shape[0], 8)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return self.head(h)


@pytest.mark.parametrize("to", ["lstm", "gru"])
def test_rnn_cell_loops_keep_working_with_a_gru_cell(to: str) -> None:
    model = CellLoop()
    x = torch.randn(5, 6, 3)
    changes = swap_recurrent(model, to=to)
    assert type(model.cell) is nn.GRUCell
    assert (model.cell.input_size, model.cell.hidden_size) == (3, 8)
    assert changes[0].action.startswith("RNNCell -> GRUCell")
    assert model(x).shape == (5, 2)


def test_swap_recurrent_says_what_it_cannot_do() -> None:
    model = sm.LSTMNet(hidden=8)
    changes = swap_recurrent(model)
    assert len(changes) == 1 and changes[0].skipped and type(model.rnn) is nn.LSTM
    root = nn.RNN(3, 4)
    changes = swap_recurrent(root)
    assert len(changes) == 1 and changes[0].skipped
    assert list(root.named_children()) == []  # nothing grafted onto the RNN itself
    with pytest.raises(ConfigError, match="to='transformer'"):
        swap_recurrent(RNNUser(True, 1, False), to="transformer")


def test_swap_recurrent_keeps_dtype_and_mode() -> None:
    model = RNNUser(True, 2, False).double().eval()
    swap_recurrent(model, "lstm")
    assert isinstance(model.rnn, GatedRecurrent)
    assert not any(m.training for m in model.modules())
    out, _ = model(torch.randn(2, 3, 3, dtype=torch.float64))
    assert out.dtype == torch.float64


# -- learning rate range test ------------------------------------------------------------------


def regression(n: int = 256) -> tuple[Tensor, Tensor]:
    x = torch.randn(n, 8)
    return x, x @ torch.randn(8, 1) + 0.5


def test_find_lr_curve_and_suggestion_inside_the_range() -> None:
    x, y = regression()
    result = find_lr(nn.Linear(8, 1), (x, y), F.mse_loss, start=1e-5, end=1.0, steps=50)
    assert len(result.lrs) == len(result.losses) == 50  # Adam does not diverge on this problem
    assert result.lrs[0] == pytest.approx(1e-5) and result.lrs[-1] == pytest.approx(1.0)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # geometric
    assert result.lrs[0] <= result.suggestion <= result.lrs[-1]
    assert min(result.losses) < 0.5 * result.losses[0]
    assert result.to_dict()["suggestion"] == result.suggestion


class BNDrop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(16, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.drop(torch.relu(self.bn(self.fc(x)))))


def test_find_lr_does_not_change_the_model() -> None:
    model = BNDrop().eval()
    state = copy.deepcopy(model.state_dict())
    x, y = regression(64)
    rng = torch.get_rng_state()
    find_lr(model, (x, y), F.mse_loss, steps=20)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_find_lr_stops_on_divergence() -> None:
    """SGD with a rate growing to 100 diverges: the test stops at the first smoothed loss above
    4x the best so far (a finite loss, well before the end of the range)."""
    x, y = regression()
    result = find_lr(nn.Linear(8, 1), (x, y), F.mse_loss, optimizer="sgd", start=1e-4, end=100.0, steps=80)
    losses = result.losses
    assert len(result.lrs) < 80 and result.lrs[-1] < 100.0
    assert math.isfinite(losses[-1]) and losses[-1] > 4 * min(losses[:-1])
    assert all(loss <= 4 * min(losses[: i + 1]) for i, loss in enumerate(losses[:-1]))
    assert result.lrs[0] <= result.suggestion < result.lrs[-1]


def test_suggestion_follows_its_rule() -> None:
    """Half the rate of steepest descent per log step, at most a tenth of the minimum's rate."""
    x, y = regression()
    result = find_lr(nn.Linear(8, 1), (x, y), F.mse_loss, optimizer="sgd", start=1e-4, end=100.0, steps=80)
    lrs, losses = result.lrs, result.losses
    slopes = [(losses[i + 1] - losses[i]) / math.log(lrs[i + 1] / lrs[i]) for i in range(len(lrs) - 1)]
    steepest = lrs[slopes.index(min(slopes))]
    at_minimum = lrs[losses.index(min(losses))]
    assert result.suggestion == pytest.approx(min(steepest / 2, at_minimum / 10))
    assert steepest / 2 != pytest.approx(at_minimum / 10)  # the two bounds differ here


def train(model: nn.Module, x: Tensor, y: Tensor, lr: float, steps: int = 150) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    return F.mse_loss(model(x), y).item()


def test_suggested_rate_trains_a_convex_problem_well() -> None:
    x, y = regression()
    model = nn.Linear(8, 1)
    start_loss = F.mse_loss(model(x), y).item()
    result = find_lr(model, (x, y), F.mse_loss)
    trained = train(copy.deepcopy(model), x, y, result.suggestion)
    too_small = train(copy.deepcopy(model), x, y, result.lrs[0])
    assert trained < 0.01 * start_loss
    assert too_small > 0.5 * start_loss  # the test can tell a good rate from a bad one


def test_find_lr_takes_an_iterable_of_batches_and_refuses_bad_ranges() -> None:
    x, y = regression()
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
    result = find_lr(nn.Linear(8, 1), batches, F.mse_loss, steps=30)
    assert len(result.lrs) == 30
    for options in ({"start": 1.0, "end": 0.1}, {"start": 0.0}, {"steps": 4}):
        with pytest.raises(ConfigError):
            find_lr(nn.Linear(8, 1), (x, y), F.mse_loss, **options)  # type: ignore[arg-type]
