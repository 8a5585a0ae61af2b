"""``reinit``: each scheme against its definition, ``auto`` per layer from the traced forward pass,
LSUV's unit variances, the skips it states, and a traced pass that leaves the model as it was."""

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
from gradmedic.remedies import Change, reinit
from gradmedic.tracing import following_activations

TANH_GAIN = 5 / 3


def applied(changes: list[Change]) -> dict[str, str]:
    return {c.layer: c.action for c in changes if not c.skipped}


def skipped(changes: list[Change]) -> dict[str, str]:
    return {c.layer: c.action for c in changes if c.skipped}


def assert_uniform(weight: Tensor, std: float) -> None:
    """Std as expected, and bounded by the uniform's edge sqrt(3) * std (a normal would pass it)."""
    assert weight.std().item() == pytest.approx(std, rel=0.015)
    bound = math.sqrt(3) * std
    assert weight.abs().max().item() <= bound * 1.0001
    assert weight.abs().max().item() >= bound * 0.99


def assert_normal(weight: Tensor, std: float) -> None:
    """Std as expected, and tails a uniform cannot have (with >=50k draws the max is ~4.4 std)."""
    assert weight.std().item() == pytest.approx(std, rel=0.015)
    assert weight.abs().max().item() > 3.5 * std
    assert weight.mean().abs().item() < 0.02 * std


def assert_in_xavier_bound(weight: Tensor, fan_in: int, fan_out: int) -> None:
    """For small layers, where the std is too noisy: the uniform's edge sqrt(6 / (in + out))."""
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert 0.85 * bound <= weight.abs().max().item() <= bound * 1.0001


def net(act: nn.Module, n_in: int = 500, n_out: int = 300) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), act, nn.Linear(n_out, 4))


# -- each scheme against its definition ----------------------------------------------------------

FAN_IN, FAN_OUT = 500, 300
XAVIER = math.sqrt(2 / (FAN_IN + FAN_OUT))
HE = 1 / math.sqrt(FAN_IN)  # times the gain


def leaky_gain(slope: float) -> float:
    return math.sqrt(2 / (1 + slope**2))


SCHEMES: list[tuple[str, Callable[[], nn.Module], str, float]] = [
    ("xavier", nn.Tanh, "uniform", TANH_GAIN * XAVIER),
    ("xavier_uniform", nn.Sigmoid, "uniform", XAVIER),
    ("xavier_normal", nn.Tanh, "normal", TANH_GAIN * XAVIER),
    ("xavier_normal", nn.ReLU, "normal", math.sqrt(2) * XAVIER),
    ("kaiming", nn.ReLU, "uniform", math.sqrt(2) * HE),
    ("he", nn.ReLU, "uniform", math.sqrt(2) * HE),
    ("kaiming_uniform", nn.Tanh, "uniform", TANH_GAIN * HE),
    ("kaiming_normal", nn.ReLU, "normal", math.sqrt(2) * HE),
    ("kaiming_normal", nn.LeakyReLU, "normal", leaky_gain(0.01) * HE),
    ("kaiming_normal", lambda: nn.LeakyReLU(0.5), "normal", leaky_gain(0.5) * HE),
    ("kaiming_uniform", lambda: nn.LeakyReLU(0.3), "uniform", leaky_gain(0.3) * HE),
    ("kaiming_normal", nn.SELU, "normal", 0.75 * HE),  # calculate_gain('selu') = 3/4
    ("lecun", nn.SELU, "normal", HE),
    ("lecun", nn.ReLU, "normal", HE),  # LeCun ignores the activation: variance 1/fan_in
]


@pytest.mark.parametrize(("scheme", "act", "law", "std"), SCHEMES)
def test_scheme_matches_its_definition(
    scheme: str, act: Callable[[], nn.Module], law: str, std: float
) -> None:
    model = net(act())
    changes = reinit(model, scheme)
    (assert_uniform if law == "uniform" else assert_normal)(model[0].weight.detach(), std)
    assert torch.equal(model[0].bias, torch.zeros(FAN_OUT))
    assert torch.equal(model[2].bias, torch.zeros(4))
    assert set(applied(changes)) == {"0", "2"}
    assert not skipped(changes)


def test_conv_weights_use_the_receptive_field_as_fan_in() -> None:
    model = nn.Sequential(nn.Conv2d(32, 64, 5), nn.ReLU(), nn.Conv2d(64, 4, 1))
    reinit(model, "kaiming_normal")
    assert_normal(model[0].weight.detach(), math.sqrt(2 / (32 * 5 * 5)))
    reinit(model, "lecun")
    assert_normal(model[0].weight.detach(), 1 / math.sqrt(32 * 5 * 5))


def test_scheme_aliases_draw_what_their_full_names_draw() -> None:
    for alias, full in (
        ("xavier", "xavier_uniform"),
        ("he", "kaiming_uniform"),
        ("kaiming", "kaiming_uniform"),
    ):
        a, b = net(nn.ReLU(), 40, 30), net(nn.ReLU(), 40, 30)
        torch.manual_seed(1)
        reinit(a, alias)
        torch.manual_seed(1)
        reinit(b, full)
        assert torch.equal(a[0].weight, b[0].weight), alias
        assert applied(reinit(net(nn.ReLU(), 4, 4), alias))["0"].startswith(full)


def test_biases_are_kept_with_zero_bias_false() -> None:
    model = net(nn.ReLU(), 20, 10)
    bias = model[0].bias.detach().clone()
    weight = model[0].weight.detach().clone()
    reinit(model, "kaiming", zero_bias=False)
    assert torch.equal(model[0].bias, bias)
    assert not torch.equal(model[0].weight, weight)
    assert bias.abs().sum() > 0


@pytest.mark.parametrize(
    ("act", "gain"),
    [
        (nn.Tanh, 1.0),
        (nn.Sigmoid, 1.0),
        (nn.ReLU, math.sqrt(2)),
        (lambda: nn.LeakyReLU(0.2), leaky_gain(0.2)),
    ],
)
@pytest.mark.parametrize(("n_in", "n_out"), [(64, 64), (96, 48), (48, 96)])
def test_orthogonal_rows_or_columns_are_orthonormal_times_the_gain(
    act: Callable[[], nn.Module], gain: float, n_in: int, n_out: int
) -> None:
    model = net(act(), n_in, n_out)
    reinit(model, "orthogonal")
    w = model[0].weight.detach().double()  # [out, in]
    gram = w @ w.T if n_out <= n_in else w.T @ w
    assert torch.allclose(gram, gain**2 * torch.eye(min(n_in, n_out), dtype=torch.float64), atol=1e-5)
    assert torch.equal(model[0].bias, torch.zeros(n_out))


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown init scheme 'glorot'"):
        reinit(net(nn.ReLU(), 4, 4), "glorot")


def test_layers_option_reinitialises_only_those_layers() -> None:
    model = sm.stack(3, nn.ReLU, width=16, n_in=8, n_out=2)
    before = copy.deepcopy(model.state_dict())
    changes = reinit(model, "kaiming", layers=["2"])
    assert [c.layer for c in changes] == ["2"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]) == (not key.startswith("2.")), key


# -- LSUV --------------------------------------------------------------------------------------


def output_variances(model: nn.Module, x: Tensor, types: tuple[type[nn.Module], ...]) -> dict[str, float]:
    seen: dict[str, float] = {}

    def record(name: str) -> Callable[[nn.Module, object, Tensor], None]:
        def hook(module: nn.Module, args: object, output: Tensor) -> None:
            seen[name] = output.var().item()

        return hook

    handles = [
        m.register_forward_hook(record(name)) for name, m in model.named_modules() if isinstance(m, types)
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return seen


def lsuv_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.Sigmoid(),
        nn.Linear(64, 48), nn.SELU(), nn.Linear(48, 10),
    )  # fmt: skip


def lsuv_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.Tanh(),
        nn.Flatten(), nn.Linear(16 * 6 * 6, 10),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("make", "shape"), [(lsuv_mlp, (256, 32)), (lsuv_cnn, (64, 3, 6, 6))], ids=["mlp", "cnn"]
)
def test_lsuv_gives_each_layer_unit_output_variance_on_the_data(make: Callable[[], nn.Module], shape) -> None:
    model = make()
    data = 3.0 * torch.randn(*shape) + 1.0  # far from unit variance: default init alone would not do
    types = (nn.Linear, nn.Conv2d)
    untreated = output_variances(model, data, types)
    assert max(abs(v - 1) for v in untreated.values()) > 0.3
    changes = reinit(model, "lsuv", data=data)
    variances = output_variances(model, data, types)
    assert len(variances) == len(untreated)
    for name, variance in variances.items():
        assert variance == pytest.approx(1.0, abs=0.05), name
    fresh = output_variances(model, 3.0 * torch.randn(*shape) + 1.0, types)
    assert all(v == pytest.approx(1.0, abs=0.2) for v in fresh.values()), fresh
    assert sum("lsuv" in c.action for c in changes) == len(variances)


def test_lsuv_iterates_when_biases_are_kept() -> None:
    """With biases the variance is not quadratic in the weight scale: one rescaling is not enough."""
    model = lsuv_mlp()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.bias.normal_(0.0, 0.6)
    bias = model[0].bias.detach().clone()
    data = 3.0 * torch.randn(256, 32)
    reinit(model, "lsuv", data=data, zero_bias=False)
    assert torch.equal(model[0].bias, bias)
    for name, variance in output_variances(model, data, (nn.Linear,)).items():
        assert variance == pytest.approx(1.0, abs=0.05), name


def test_lsuv_needs_data() -> None:
    with pytest.raises(ConfigError, match="needs data"):
        reinit(lsuv_mlp(), "lsuv")


# -- auto: from the activation that follows each layer in the forward pass ---------------------


class FunctionalMixed(nn.Module):
    """Activations called as functions inside forward; definition order says nothing about them."""

    def __init__(self, width: int = 256) -> None:
        super().__init__()
        self.a = nn.Linear(width, width)
        self.b = nn.Linear(width, width)
        self.c = nn.Linear(width, width)
        self.d = nn.Linear(width, width)
        self.head = nn.Linear(width, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.a(x))
        x = torch.tanh(self.b(x))
        x = F.selu(self.c(x))
        x = self.d(x).sigmoid()
        return self.head(x)


def test_auto_traces_functional_activations() -> None:
    model = FunctionalMixed()
    data = torch.randn(16, 256)
    actions = applied(reinit(model, "auto", data))
    assert actions == {
        "a": "kaiming_uniform (relu)",
        "b": "xavier_uniform (tanh)",
        "c": "lecun (selu)",
        "d": "lsuv: each unit centred, scaled to unit output variance",  # orthogonal, then centred
        "head": "xavier_uniform (no activation)",
    }
    width = 256
    assert_uniform(model.a.weight.detach(), math.sqrt(2 / width))
    assert_uniform(model.b.weight.detach(), TANH_GAIN * math.sqrt(1 / width))
    assert_normal(model.c.weight.detach(), 1 / math.sqrt(width))
    assert_in_xavier_bound(model.head.weight.detach(), width, 3)
    # without the data, the functional activations cannot be seen
    assert set(applied(reinit(FunctionalMixed(8), "auto")).values()) == {"xavier_uniform (no activation)"}


def test_auto_mixed_module_activations_in_one_model() -> None:
    acts = [nn.ReLU(), nn.Tanh(), nn.SELU(), nn.LeakyReLU(0.5), nn.GELU(), nn.Sigmoid(), nn.ELU()]
    layers: list[nn.Module] = []
    for act in acts:
        layers += [nn.Linear(200, 200), act]
    model = nn.Sequential(*layers, nn.Linear(200, 5))
    actions = applied(reinit(model, "auto", torch.randn(8, 200)))
    assert actions == {
        "0": "kaiming_uniform (relu)",
        "2": "xavier_uniform (tanh)",
        "4": "lecun (selu)",
        "6": "kaiming_uniform (leaky_relu)",
        "8": "kaiming_uniform (gelu)",
        "10": "lsuv: each unit centred, scaled to unit output variance",
        "12": "kaiming_uniform (elu)",
        "14": "xavier_uniform (no activation)",
    }
    he = 1 / math.sqrt(200)
    assert_uniform(model[0].weight.detach(), math.sqrt(2) * he)
    assert_normal(model[4].weight.detach(), he)
    assert_uniform(model[6].weight.detach(), leaky_gain(0.5) * he)
    assert_uniform(model[8].weight.detach(), math.sqrt(2) * he)


@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid])
def test_auto_deep_saturating_stack_gets_orthogonal_and_output_layer_xavier(act: type[nn.Module]) -> None:
    """Without data for sigmoids: with data, see the centred test below."""
    model = sm.stack(12, act, width=48, n_in=48, n_out=6)
    actions = applied(reinit(model, "auto", torch.randn(8, 48) if act is nn.Tanh else None))
    name = act.__name__.lower()
    hidden = [str(2 * i) for i in range(12)]
    assert all(actions[h] == f"orthogonal ({name})" for h in hidden), actions
    assert actions["24"] == "xavier_uniform (no activation)"
    for h in hidden:
        w = model[int(h)].weight.detach().double()
        assert torch.allclose(w @ w.T, torch.eye(48, dtype=torch.float64), atol=1e-5)
    assert_in_xavier_bound(model[24].weight.detach(), 48, 6)


def pre_activations(model: nn.Sequential, x: Tensor) -> list[Tensor]:
    outputs = []
    with torch.no_grad():
        for module in model:
            x = module(x)
            if isinstance(module, nn.Linear):
                outputs.append(x)
    return outputs


@pytest.mark.parametrize("act", [nn.Sigmoid, nn.Hardsigmoid])
def test_auto_with_data_centres_a_deep_sigmoid_stack_at_its_steepest_point(act: type[nn.Module]) -> None:
    """A sigmoid's outputs average 0.5 and its slope is at most 1/4: each layer before one is
    orthogonal, then centred per unit and scaled to unit variance on the data (scale x~4.8 for a
    sigmoid), so the next sigmoid works around 0, where it is steepest."""
    model = sm.stack(12, act, width=48, n_in=48, n_out=6)
    data = 2.0 * torch.randn(512, 48) + 1.0
    changes = reinit(model, "auto", data)
    hidden = [str(2 * i) for i in range(12)]
    centred = [
        c.layer for c in changes if c.action == "lsuv: each unit centred, scaled to unit output variance"
    ]
    assert centred == hidden
    assert {c.action for c in changes if c.layer == "24"} == {"xavier_uniform (no activation)"}
    for h, z in zip(hidden, pre_activations(model, data)):
        assert z.mean(dim=0).abs().max().item() < 1e-4, h
        assert z.var().item() == pytest.approx(1.0, abs=1e-3), h
        w = model[int(h)].weight.detach().double()
        gram = w @ w.T
        assert torch.allclose(
            gram, gram[0, 0] * torch.eye(48, dtype=torch.float64), atol=1e-4
        )  # orthogonal x s
    fresh = pre_activations(model, 2.0 * torch.randn(512, 48) + 1.0)
    assert all(z.mean(dim=0).abs().mean().item() < 0.15 for z in fresh[:12])  # holds beyond the batch
    if act is nn.Sigmoid:
        assert 4.0 < model[2].weight.detach().norm(dim=1).mean().item() < 6.0


def test_centring_needs_a_bias_and_data_and_only_sigmoid_layers_get_it() -> None:
    model = sm.stack(12, nn.Sigmoid, width=16, n_in=16, n_out=2)
    model[4] = nn.Linear(16, 16, bias=False)
    centred = {c.layer for c in reinit(model, "auto", torch.randn(64, 16)) if "centred" in c.action}
    assert "4" not in centred and "2" in centred  # no bias to shift: only rescaled
    shallow = sm.stack(4, nn.Sigmoid, width=16, n_in=16, n_out=2)  # Xavier alone fails from ~8 layers
    centred = {c.layer for c in reinit(shallow, "auto", torch.randn(64, 16)) if "centred" in c.action}
    assert centred == {"0", "2", "4", "6"}
    assert not [c for c in reinit(shallow, "auto") if "lsuv" in c.action]  # no data, no centring
    relu = sm.stack(12, nn.ReLU, width=16, n_in=16, n_out=2)
    assert not [c for c in reinit(relu, "auto", torch.randn(64, 16)) if "lsuv" in c.action]


def test_auto_shallow_tanh_stack_stays_xavier() -> None:
    model = sm.stack(4, nn.Tanh, width=16, n_in=16, n_out=2)
    actions = applied(reinit(model, "auto"))
    assert [actions[str(2 * i)] for i in range(4)] == ["xavier_uniform (tanh)"] * 4


def test_auto_deep_relu_stack_stays_kaiming() -> None:
    model = sm.stack(12, nn.ReLU, width=16, n_in=16, n_out=2)
    actions = applied(reinit(model, "auto"))
    assert [actions[str(2 * i)] for i in range(12)] == ["kaiming_uniform (relu)"] * 12


class Odd(nn.Module):
    """A layer type reinit knows no initialiser for."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((8,), 3.0))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.fc = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.ln = nn.LayerNorm(8)
        self.gn = nn.GroupNorm(2, 8)
        self.odd = Odd()
        self.bilinear = nn.Bilinear(8, 8, 8)
        self.prelu = nn.PReLU()
        self.head = nn.Linear(8, 2)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.embed(idx)
        x = self.gn(self.ln(self.bn(self.fc(x))))
        x = self.prelu(self.bilinear(self.odd(x), x))
        return self.head(x)


def test_unknown_norm_and_embedding_layers_are_skipped_and_said() -> None:
    model = Mixed()
    with torch.no_grad():
        model.bn.weight.fill_(2.0)
        model.ln.bias.fill_(0.5)
    keep = ["embed", "bn", "ln", "gn", "odd", "bilinear", "prelu"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    changes = reinit(model, "auto", torch.randint(0, 10, (16,)))
    said = skipped(changes)
    assert set(said) == set(keep) - {"prelu"}  # PReLU is an activation, not a layer to initialise
    assert "no initialiser for Odd" in said["odd"]
    assert "no initialiser for Bilinear" in said["bilinear"]
    for name in ("embed", "bn", "ln", "gn"):
        assert "keeps its own initialisation" in said[name]
    assert set(applied(changes)) == {"fc", "head"}
    for key, value in model.state_dict().items():
        unchanged = key.split(".")[0] in keep
        assert torch.equal(value, before[key]) == unchanged, key


def test_recurrent_layers_get_orthogonal_recurrent_weights() -> None:
    model = sm.LSTMNet(hidden=16)
    changes = applied(reinit(model, "auto"))
    assert changes["rnn"].startswith("recurrent weights orthogonal")
    for chunk in model.rnn.weight_hh_l0.detach().chunk(4):
        assert torch.allclose(chunk @ chunk.T, torch.eye(16), atol=1e-5)


# -- the traced pass leaves the model as it was ------------------------------------------------


class Stateful(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(16, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.drop(torch.tanh(self.bn(self.fc(x)))))


def test_tracing_leaves_buffers_modes_grads_and_rng_as_they_were() -> None:
    model = Stateful()
    model.eval()
    model.drop.train()  # a mixed state, restored exactly
    model(torch.randn(4, 8)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    modes = [m.training for m in model.modules()]
    model.train()
    model.eval()
    model.drop.train()
    data = 5.0 * torch.randn(32, 8)
    rng = torch.get_rng_state()
    after = following_activations(model, data)
    assert after == {"bn": "tanh"}  # the first activation after a layer with parameters
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_reinit_with_data_draws_the_same_weights_as_without() -> None:
    """The traced forward (train-mode dropout, BatchNorm) consumes no random numbers and
    updates no statistics: reinit with data draws exactly what reinit without data draws."""
    traced, plain = Stateful(), Stateful()
    plain.load_state_dict(traced.state_dict())
    traced.train()
    plain.train()
    data = 5.0 * torch.randn(32, 8) + 2.0
    torch.manual_seed(3)
    reinit(traced, "xavier", data)
    traced_rng = torch.get_rng_state()
    torch.manual_seed(3)
    reinit(plain, "xavier")
    assert torch.equal(traced_rng, torch.get_rng_state())
    for (name, a), b in zip(traced.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(traced.bn.running_mean, torch.zeros(16))
    assert int(traced.bn.num_batches_tracked) == 0
    assert all(m.training for m in traced.modules())
