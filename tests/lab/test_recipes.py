"""Unit tests of :mod:`gradmedic.lab.recipes`: the lab's models, built with gradmedic's remedies."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.lab.recipes import LayerNormRNNCell, build_model


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def test_mlp_is_depth_blocks_and_a_head() -> None:
    model = build_model("mlp", {"depth": 3, "width": 5, "activation": "leaky_relu"}, 7, 2)
    assert [(m.in_features, m.out_features) for m in linears(model)] == [(7, 5), (5, 5), (5, 5), (5, 2)]
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 3 and all(a.negative_slope == 0.01 for a in acts)


def test_cnn_keeps_the_8x8_image_size() -> None:
    model = build_model("cnn", {"depth": 2, "channels": 3}, 1, 10)
    assert tuple(model(torch.randn(4, 1, 8, 8)).shape) == (4, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 2


def test_gain_multiplies_every_weight_but_the_heads() -> None:
    torch.manual_seed(3)
    plain = build_model("mlp", {"depth": 2, "width": 4}, 3, 2)
    torch.manual_seed(3)
    scaled = build_model("mlp", {"depth": 2, "width": 4, "gain": 2.5}, 3, 2)
    pairs = list(zip(linears(plain), linears(scaled)))
    for a, b in pairs[:-1]:
        torch.testing.assert_close(b.weight, 2.5 * a.weight)
        torch.testing.assert_close(b.bias, a.bias)
    assert torch.equal(pairs[-1][0].weight, pairs[-1][1].weight)


def test_cut_from_keeps_the_first_blocks_and_the_head_of_the_deeper_net() -> None:
    torch.manual_seed(0)
    deep = build_model("mlp", {"depth": 5, "width": 4}, 3, 2)
    torch.manual_seed(0)
    short = build_model("mlp", {"depth": 2, "width": 4, "cut_from": 5}, 3, 2)
    kept, full = linears(short), linears(deep)
    assert len(kept) == 3
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(kept[:2], full[:2]))
    assert torch.equal(kept[-1].weight, full[-1].weight)


def test_he_init_through_reinit() -> None:
    model = build_model("mlp", {"depth": 2, "width": 512, "init": "he"}, 512, 2)
    assert linears(model)[1].weight.double().var().item() == pytest.approx(2 / 512, rel=0.05)


def test_residual_kinds_start_at_alpha_zero_or_one() -> None:
    x = torch.randn(8, 6)
    for kind, alpha in (("zero", 0.0), ("plain", 1.0)):
        model = build_model("mlp", {"depth": 3, "width": 6, "residual": kind}, 6, 2, example=x)
        alphas = [p for n, p in model.named_parameters() if n.endswith("alpha")]
        assert alphas and all(torch.all(a == alpha) for a in alphas)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "loop"])
def test_sequence_models_read_the_last_step_or_every_step(cell: str) -> None:
    x = torch.randn(3, 5, 2)
    last = build_model("rnn", {"cell": cell, "hidden": 4}, 2, 6)
    every = build_model("rnn", {"cell": cell, "hidden": 4, "every_step": True}, 2, 6)
    assert tuple(last(x).shape) == (3, 6) and tuple(every(x).shape) == (3, 5, 6)


def test_lstm_forget_bias_and_orthogonal_recurrent_weights() -> None:
    model = build_model("rnn", {"cell": "lstm", "hidden": 4, "forget_bias": 1.0, "init": "orthogonal"}, 2, 1)
    rnn = model.rnn
    torch.testing.assert_close((rnn.bias_ih_l0 + rnn.bias_hh_l0)[4:8], torch.ones(4))  # gates i, f, g, o
    for w in rnn.weight_hh_l0.detach().double().chunk(4):
        torch.testing.assert_close(w @ w.T, torch.eye(4, dtype=torch.float64), atol=1e-5, rtol=0)


def test_layer_norm_cell_is_tanh_of_the_normalized_sum() -> None:
    cell = LayerNormRNNCell(3, 5)
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    summed = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    mean, var = summed.mean(-1, keepdim=True), summed.var(-1, unbiased=False, keepdim=True)
    expected = torch.tanh((summed - mean) / torch.sqrt(var + 1e-5))  # LayerNorm starts at weight 1, bias 0
    torch.testing.assert_close(cell(x, h), expected)
    torch.testing.assert_close(cell(x), cell(x, torch.zeros(4, 5)))


@pytest.mark.parametrize(
    ("recipe", "params", "message"),
    [
        ("transformer", {}, "unknown recipe 'transformer': choose one of mlp, cnn, rnn"),
        ("mlp", {"activation": "swish"}, "unknown activation 'swish': choose one of sigmoid"),
        ("rnn", {"cell": "mamba"}, "unknown cell 'mamba': choose one of rnn, lstm, gru, loop"),
        ("mlp", {"residual": "dense"}, "residual='dense': choose 'zero'"),
        ("mlp", {"init": "lsuv"}, "init='lsuv' needs an example batch"),
    ],
)
def test_unknown_options_are_config_errors(recipe: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_model(recipe, params, 4, 2)
