"""Remedies that change the architecture: activations, normalization, residual connections and a
shallower stack. Each one keeps the model's inputs and output shapes, and says what it skipped."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sick_models as sm
from gradmedic.errors import ConfigError, ModelError
from gradmedic.remedies import (
    Change,
    Residual,
    add_normalization,
    add_residual,
    make_shallower,
    swap_activations,
)


def applied(changes: list[Change], family: str | None = None) -> dict[str, str]:
    return {c.layer: c.action for c in changes if not c.skipped and (family is None or c.family == family)}


def skipped(changes: list[Change]) -> dict[str, str]:
    return {c.layer: c.action for c in changes if c.skipped}


def types_in(model: nn.Module) -> list[type[nn.Module]]:
    return [type(m) for m in model.modules()]


def same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fit(model: nn.Module, x: Tensor, y: Tensor, steps: int = 25, lr: float = 1e-2) -> tuple[float, float]:
    """(first, last) loss of a few Adam steps on one batch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


# -- activations -------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, n_in: int, n_out: int, act: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.fc(x))


def nested() -> nn.Sequential:
    """Saturating activations at three depths of nesting, and a ReLU that must stay."""
    return nn.Sequential(
        Block(8, 16, nn.Sigmoid()),
        nn.Sequential(Block(16, 16, nn.Tanh()), nn.Sequential(nn.Linear(16, 16), nn.Sigmoid())),
        Block(16, 16, nn.ReLU()),
        nn.Linear(16, 3),
    )


EXPECTED: dict[str, Callable[[nn.Module], bool]] = {
    "relu": lambda m: type(m) is nn.ReLU,
    "leaky_relu": lambda m: type(m) is nn.LeakyReLU and m.negative_slope == 0.01,
    "elu": lambda m: type(m) is nn.ELU,
    "selu": lambda m: type(m) is nn.SELU,
    "silu": lambda m: type(m) is nn.SiLU,
    "swish": lambda m: type(m) is nn.SiLU,
    "gelu": lambda m: type(m) is nn.GELU,
}


@pytest.mark.parametrize("new", list(EXPECTED))
def test_swap_every_seed_choice_in_nested_modules(new: str) -> None:
    model = nested()
    x = torch.randn(5, 8)
    changes = swap_activations(model, new=new)
    swapped = applied(changes, "activation")
    assert set(swapped) == {"0.act", "1.0.act", "1.1.1"}
    new_modules = [model[0].act, model[1][0].act, model[1][1][1]]
    assert all(EXPECTED[new](m) for m in new_modules), new_modules
    assert type(model[2].act) is nn.ReLU  # not in old: left alone
    assert not any(isinstance(m, (nn.Sigmoid, nn.Tanh)) for m in model.modules())
    assert swapped["0.act"] == f"Sigmoid -> {type(model[0].act).__name__}"
    assert model(x).shape == (5, 3)


def test_swap_reinitialises_only_the_layers_whose_activation_changed() -> None:
    model = nn.Sequential(
        nn.Linear(64, 64), nn.Sigmoid(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(),
        nn.Linear(64, 2),
    )  # fmt: skip
    before = copy.deepcopy(model.state_dict())
    changes = swap_activations(model, old=(nn.Sigmoid, nn.Tanh), new="selu")
    assert applied(changes, "activation") == {"1": "Sigmoid -> SELU", "5": "Tanh -> SELU"}
    assert applied(changes, "init") == {"0": "lecun (selu)", "4": "lecun (selu)"}
    state = model.state_dict()
    for key in ("2.weight", "2.bias", "6.weight", "6.bias"):
        assert torch.equal(state[key], before[key]), key
    for key in ("0.weight", "4.weight"):
        assert not torch.equal(state[key], before[key]), key
    assert torch.equal(state["0.bias"], torch.zeros(64))


def test_swap_without_reinit_leaves_the_weights() -> None:
    model = sm.stack(3, nn.Tanh, width=8, n_in=4, n_out=2)
    before = copy.deepcopy(model.state_dict())
    changes = swap_activations(model, new="gelu", reinit_changed=False)
    assert {c.family for c in changes} == {"activation"}
    assert same_state(model.state_dict(), before)


def test_functional_activations_are_reported_as_skipped_with_data() -> None:
    model = sm.FunctionalSigmoidNet(depth=4, width=16)
    before = copy.deepcopy(model.state_dict())
    changes = swap_activations(model, new="silu", data=torch.randn(8, sm.N_IN))
    said = skipped(changes)
    assert set(said) == {f"hidden.{i}" for i in range(4)}
    assert all("called inside forward()" in action for action in said.values())
    assert not applied(changes)
    assert same_state(model.state_dict(), before)


class HalfFunctional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.act = nn.Sigmoid()
        self.b = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.sigmoid(self.b(self.act(self.a(x)))))


def test_module_activation_swapped_and_functional_one_skipped_in_one_model() -> None:
    model = HalfFunctional()
    changes = swap_activations(model, new="relu", data=torch.randn(4, 8))
    assert applied(changes, "activation") == {"act": "Sigmoid -> ReLU"}
    assert applied(changes, "init") == {"a": "kaiming_uniform (relu)"}
    assert set(skipped(changes)) == {"b"}


def test_swap_replaces_an_activation_module_used_at_several_places() -> None:
    act = nn.Tanh()
    model = nn.Sequential(nn.Linear(4, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 2))
    changes = swap_activations(model, new="relu")
    assert set(applied(changes, "activation")) == {"1", "3"}
    assert type(model[1]) is nn.ReLU and type(model[3]) is nn.ReLU
    assert set(applied(changes, "init")) == {"0", "2"}


def test_swap_says_when_nothing_applies() -> None:
    model = sm.stack(2, nn.ReLU, width=8, n_in=4, n_out=2)
    before = copy.deepcopy(model.state_dict())
    changes = swap_activations(model, new="silu")  # no Sigmoid/Tanh
    assert changes and all(c.skipped for c in changes)
    changes = swap_activations(model, old=(nn.ReLU,), new="relu")  # already what was asked
    assert set(skipped(changes)) == {"1", "3"}
    assert not applied(changes)
    assert same_state(model.state_dict(), before)
    assert all(c.skipped for c in swap_activations(nn.Tanh(), new="relu"))


def test_swap_accepts_a_class_and_refuses_an_unknown_name() -> None:
    model = sm.stack(2, nn.Tanh, width=8, n_in=4, n_out=2)
    with pytest.raises(ConfigError, match="unknown activation 'swishy'"):
        swap_activations(model, new="swishy")
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2  # nothing half-done
    swap_activations(model, new=nn.Hardswish)
    assert sum(isinstance(m, nn.Hardswish) for m in model.modules()) == 2


# -- normalization -----------------------------------------------------------------------------


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))


@pytest.mark.parametrize(("kind", "norm"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_norm_after_each_linear_but_the_output_layer(kind: str, norm: type[nn.Module]) -> None:
    model = mlp()
    x = torch.randn(64, 16)
    changes = add_normalization(model, kind)
    assert set(applied(changes)) == {"0", "2"}
    assert skipped(changes) == {"4": "the output layer keeps its scale"}
    for index, size in ((0, 32), (2, 24)):
        linear, added = model[index]
        assert isinstance(linear, nn.Linear) and isinstance(added, norm)
        features = added.num_features if kind == "batch" else added.normalized_shape[0]
        assert features == size
    assert type(model[4]) is nn.Linear
    assert model(x).shape == (64, 4)
    hidden = model[0](x)  # train mode: normalised over the batch (batch) or the features (layer)
    dim = 0 if kind == "batch" else 1
    assert hidden.mean(dim).abs().max() < 1e-5
    assert hidden.var(dim, unbiased=False).sub(1).abs().max() < 1e-3


def test_norm_is_not_added_twice() -> None:
    model = mlp()
    add_normalization(model, "batch")
    structure = repr(model)
    changes = add_normalization(model, "layer")
    assert not applied(changes)
    assert set(skipped(changes)) == {"0.0", "2.0", "4"}
    assert skipped(changes)["0.0"] == "already followed by a norm layer"
    assert repr(model) == structure
    seed = sm.simple_net().model  # the brief's Linear -> BatchNorm1d -> ReLU -> Linear
    assert not applied(add_normalization(seed))


class SequenceMLP(nn.Module):
    """Linear layers applied to [batch, time, features]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_norm_on_sequences_normalises_each_feature_over_batch_and_time(kind: str) -> None:
    model = SequenceMLP()
    x = 3 * torch.randn(8, 5, 6) + 2
    assert applied(add_normalization(model, kind)).keys() == {"body.0", "body.2"}
    assert model(x).shape == (8, 5, 3)
    hidden = model.body[0](x)
    assert hidden.shape == (8, 5, 16)
    dims = (0, 1) if kind == "batch" else (2,)
    assert hidden.mean(dims).abs().max() < 1e-5
    assert hidden.var(dims, unbiased=False).sub(1).abs().max() < 1e-3


class HeadFirst(nn.Module):
    """The output layer is defined first; a norm layer sits after the body's second Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 3)
        self.norm = nn.LayerNorm(16)
        self.body = nn.Sequential(
            nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.body(x)))


def test_with_data_the_output_layer_is_the_last_one_the_forward_calls() -> None:
    model = HeadFirst()
    x = torch.randn(8, 6)
    changes = add_normalization(model, "batch", x)
    assert applied(changes).keys() == {"body.0", "body.2"}
    assert skipped(changes) == {
        "body.4": "already followed by a norm layer",
        "head": "the output layer keeps its scale",
    }
    assert type(model.head) is nn.Linear and model(x).shape == (8, 3)
    by_definition = add_normalization(HeadFirst(), "batch")  # without data: definition order, misread
    assert skipped(by_definition)["body.4"] == "the output layer keeps its scale"


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(12 * 6 * 6, 5),
    )  # fmt: skip


@pytest.mark.parametrize(("kind", "norm"), [("batch", nn.BatchNorm2d), ("layer", nn.GroupNorm)])
def test_norm_after_convolutions(kind: str, norm: type[nn.Module]) -> None:
    model = cnn()
    x = torch.randn(16, 3, 6, 6)
    assert applied(add_normalization(model, kind)).keys() == {"0", "2"}
    for index, channels in ((0, 8), (2, 12)):
        added = model[index][1]
        assert type(added) is norm
        assert (added.num_features if kind == "batch" else added.num_channels) == channels
        if kind == "layer":
            assert added.num_groups == 1  # LayerNorm over (C, H, W) of each sample
    assert type(model[5]) is nn.Linear
    assert model(x).shape == (16, 5)
    conv1d = nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.ReLU(), nn.Conv1d(6, 2, 1))
    add_normalization(conv1d, "batch")
    assert type(conv1d[0][1]) is nn.BatchNorm1d and conv1d[0][1].num_features == 6
    assert conv1d(torch.randn(5, 4, 7)).shape == (5, 2, 7)


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_normalised_model_still_trains(kind: str) -> None:
    model = sm.stack(6, nn.Tanh, width=32, n_in=16, n_out=4)
    add_normalization(model, kind)
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    first, last = fit(model, x, y)
    assert last < 0.5 * first


def test_norm_keeps_dtype_and_eval_mode() -> None:
    model = mlp().double().eval()
    add_normalization(model, "batch")
    assert not any(m.training for m in model.modules())
    x = torch.randn(16, 16, dtype=torch.float64)
    out = model(x)
    assert out.dtype == torch.float64
    assert torch.allclose(model(x[:3]), out[:3])  # eval mode: running statistics, no batch effect


def test_norm_skips_layers_it_has_no_norm_for_and_refuses_unknown_kind() -> None:
    model = sm.LSTMNet(hidden=8)
    changes = add_normalization(model)
    assert skipped(changes)["rnn"] == "no norm for LSTM"
    assert not applied(changes)
    with pytest.raises(ConfigError, match="kind='group'"):
        add_normalization(mlp(), "group")


# -- residual connections ----------------------------------------------------------------------


def residual_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(),  # 8 -> 16: changes the shape, stays
        nn.Linear(16, 16), nn.Tanh(),  # wrapped
        nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU(), nn.Dropout(0.0),  # wrapped, four modules
        nn.Linear(16, 4),  # head: changes the shape, stays
    )  # fmt: skip


@pytest.mark.parametrize("with_data", [True, False])
def test_residual_starts_as_the_network_without_its_wrapped_blocks(with_data: bool) -> None:
    model = residual_mlp()
    x = torch.randn(32, 8)
    without = nn.Sequential(copy.deepcopy(model[0]), copy.deepcopy(model[1]), copy.deepcopy(model[8]))
    changes = add_residual(model, x if with_data else None)
    assert applied(changes) == {
        "2": "Linear+Tanh -> x + alpha * (Linear+Tanh), alpha = 0",
        "4": "Linear+LayerNorm+ReLU+Dropout -> x + alpha * (Linear+LayerNorm+ReLU+Dropout), alpha = 0",
    }
    assert [type(m) for m in model] == [nn.Linear, nn.Tanh, Residual, Residual, nn.Linear]
    assert [type(m) for m in model[3].block] == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Dropout]
    assert all(m.alpha.item() == 0.0 for m in model.modules() if isinstance(m, Residual))
    assert torch.equal(model(x), without(x))
    assert not torch.equal(model[2].block(model[1](model[0](x))), torch.zeros(32, 16))  # the block is not 0


def test_residual_alpha_gets_a_gradient_and_then_the_blocks_count() -> None:
    model = residual_mlp()
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    add_residual(model, x)
    reference = nn.Sequential(model[0], model[1], model[4])
    F.cross_entropy(model(x), y).backward()
    alphas = [m.alpha for m in model.modules() if isinstance(m, Residual)]
    assert len(alphas) == 2
    assert all(a.grad is not None and a.grad.abs() > 1e-6 for a in alphas)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all(a.abs() > 0 for a in alphas)
    assert not torch.allclose(model(x), reference(x))


def conv_stack() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),  # 3 -> 8 channels: stays
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),  # same padding: wrapped
        nn.Conv2d(8, 8, 5, padding="same"), nn.BatchNorm2d(8), nn.ReLU(),  # wrapped
        nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),  # dilated, same size: wrapped
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),  # halves H, W: stays
        nn.Conv2d(8, 8, 3), nn.ReLU(),  # no padding: stays
        nn.Flatten(), nn.Linear(8 * 2 * 2, 5),
    )  # fmt: skip


@pytest.mark.parametrize("with_data", [True, False])
def test_residual_wraps_same_padding_convolutions_only(with_data: bool) -> None:
    model = conv_stack()
    x = torch.randn(8, 3, 8, 8)
    expected = model(x)
    changes = add_residual(model, x if with_data else None)
    assert set(applied(changes)) == {"2", "4", "7"}
    kinds = [type(m) for m in model]
    assert kinds.count(Residual) == 3 and kinds.count(nn.Conv2d) == 3
    assert model[3].block[0].padding == "same"
    out = model(x)
    assert out.shape == expected.shape == (8, 5)
    model.eval()
    without = nn.Sequential(*[m for m in model if not isinstance(m, Residual)]).eval()
    assert torch.equal(model(x), without(x))


def test_residual_reads_shapes_from_the_data() -> None:
    """Linear(16, 16) followed by an Unflatten does not keep its input's shape."""
    model = nn.Sequential(
        nn.Linear(16, 16), nn.Unflatten(1, (4, 4)), nn.Linear(4, 4), nn.Flatten(), nn.Linear(16, 2)
    )
    before = repr(model)
    changes = add_residual(model, torch.randn(3, 16))
    assert not applied(changes)
    assert skipped(changes) == {"": "no nn.Sequential of shape-preserving blocks"}
    assert repr(model) == before
    assert model(torch.randn(3, 16)).shape == (3, 2)


class NoSequential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.tanh(self.a(x)))


def test_residual_without_sequential_is_skipped_and_said() -> None:
    model = NoSequential()
    before = copy.deepcopy(model.state_dict())
    changes = add_residual(model, torch.randn(2, 8))
    assert changes == [Change("residual", "", "no nn.Sequential of shape-preserving blocks", skipped=True)]
    assert same_state(model.state_dict(), before)
    assert not any(isinstance(m, Residual) for m in model.modules())


def test_residual_is_not_added_twice() -> None:
    model = residual_mlp()
    x = torch.randn(4, 8)
    add_residual(model, x)
    structure = repr(model)
    assert not applied(add_residual(model, x))
    assert repr(model) == structure


def test_residual_alpha_follows_the_block_dtype() -> None:
    model = residual_mlp().double()
    add_residual(model, torch.randn(4, 8, dtype=torch.float64))
    assert {p.dtype for p in model.parameters()} == {torch.float64}


# -- a shallower model -------------------------------------------------------------------------


def test_truncate_keeps_first_block_repeated_blocks_and_head() -> None:
    model = sm.stack(10, nn.Tanh, width=16, n_in=8, n_out=3)
    original = copy.deepcopy(model.state_dict())
    short, changes = make_shallower(model, 3)
    assert changes == [Change("shallower", "", "kept 3 of 10 blocks and the head")]
    assert [type(m) for m in short] == [nn.Linear, nn.Tanh] * 3 + [nn.Linear]
    for kept, source in ((0, 0), (2, 2), (4, 4), (6, 20)):  # blocks 0, 1, 2 and the head
        assert torch.equal(short[kept].weight, model[source].weight)
        assert short[kept].weight is not model[source].weight
    x = torch.randn(5, 8)
    assert short(x).shape == model(x).shape == (5, 3)
    with torch.no_grad():
        short[0].weight.zero_()
    assert same_state(model.state_dict(), original)  # a copy: the model is untouched


def test_truncate_to_full_depth_computes_the_same_function_and_to_one_block() -> None:
    model = sm.stack(5, nn.ReLU, width=8, n_in=4, n_out=2)
    x = torch.randn(6, 4)
    full, _ = make_shallower(model, 5)
    assert torch.equal(full(x), model(x))
    one, changes = make_shallower(model, 1)
    assert [type(m) for m in one] == [nn.Linear, nn.ReLU, nn.Linear]
    assert one(x).shape == (6, 2)
    assert changes[0].action == "kept 1 of 5 blocks and the head"


def test_truncate_conv_stack() -> None:
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()]
    for _ in range(4):
        layers += [nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Conv2d(8, 2, 1))
    short, _ = make_shallower(model, 2)
    assert sum(isinstance(m, nn.Conv2d) for m in short) == 3
    x = torch.randn(2, 3, 5, 5)
    assert short(x).shape == model(x).shape == (2, 2, 5, 5)


def test_truncate_errors_on_models_that_are_not_plain_stacks() -> None:
    with pytest.raises(ModelError, match=r"nn\.Sequential"):
        make_shallower(sm.LSTMNet(), 1)
    uneven = nn.Sequential(
        nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 16), nn.Tanh(),
        nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2),
    )  # fmt: skip
    with pytest.raises(ModelError, match="differ"):
        make_shallower(uneven, 2)
    with pytest.raises(ModelError, match="at least 3 blocks"):
        make_shallower(nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)), 1)
    model = sm.stack(4, nn.Tanh, width=8, n_in=4, n_out=2)
    for depth in (0, 5):
        with pytest.raises(ConfigError, match=f"depth={depth}"):
            make_shallower(model, depth)
