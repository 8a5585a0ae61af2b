"""Unit tests of :mod:`gradmedic.diagnosis.evidence`: the plain numbers the rules read.

Each number is checked against a plain autograd / numpy computation of the same quantity
(``tests/models.py``'s reference), not against gradmedic's own code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic.diagnosis.evidence import (
    Evidence,
    LayerEvidence,
    TimeEvidence,
    evidence_from_history,
    flush_denormal_enabled,
    weight_gain,
)
from models import Case, mlp, monitored_step, recurrent, reference


def numpy_gain(weight: torch.Tensor) -> float:
    """std(weight) (unbiased, as torch.std) times sqrt(fan in), in numpy."""
    w = weight.detach().double().numpy()
    return float(np.std(w, ddof=1) * math.sqrt(w[0].size))


@pytest.mark.parametrize("module", [nn.Linear(7, 5), nn.Conv2d(3, 4, 3), nn.Conv1d(2, 6, 5)], ids=repr)
def test_weight_gain_is_std_times_sqrt_fan_in(module: nn.Module) -> None:
    assert weight_gain(module) == pytest.approx(numpy_gain(module.weight), rel=1e-5)


def test_weight_gain_of_pytorch_default_linear_is_about_one_over_sqrt3() -> None:
    # kaiming_uniform_(a=sqrt(5)) draws U(-1/sqrt(fan_in), 1/sqrt(fan_in)): std * sqrt(fan_in) = 1/sqrt(3)
    assert weight_gain(nn.Linear(400, 400)) == pytest.approx(1 / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize("module", [nn.LayerNorm(4), nn.Linear(1, 1), nn.Tanh(), nn.LSTM(2, 2)], ids=repr)
def test_weight_gain_is_nan_where_it_does_not_apply(module: nn.Module) -> None:
    assert math.isnan(weight_gain(module))


def test_flush_denormal_enabled_follows_torch_setting() -> None:
    try:
        torch.set_flush_denormal(False)
        assert flush_denormal_enabled() is False
        torch.set_flush_denormal(True)
        assert flush_denormal_enabled() is True
    finally:
        torch.set_flush_denormal(True)  # the suite's setting (conftest.py)


def test_observed_keeps_finite_positive_signals_in_order_and_depth_counts_weight_layers() -> None:
    layers = [
        LayerEvidence("a", "Linear", signal=1e-3),
        LayerEvidence("b", "LayerNorm", signal=0.0, weight=False),
        LayerEvidence("c", "Linear", signal=math.nan),
        LayerEvidence("d", "Linear", signal=math.inf),
        LayerEvidence("e", "Linear", signal=2.0),
    ]
    evidence = Evidence(layers)
    assert [layer.name for layer in evidence.observed()] == ["a", "e"]
    assert evidence.depth == 4


def test_time_evidence_reads_a_geometric_profile() -> None:
    profile = 0.8 ** np.arange(60)
    layer = TimeEvidence("rnn", "GRU", profile, 60)
    assert layer.decay == pytest.approx(0.8, rel=1e-6)
    # steps back with signal >= 1e-3 of the last step's: 0.8**k >= 1e-3
    assert layer.horizon == int(np.sum(profile >= 1e-3 * profile[0]))
    assert layer.reach == pytest.approx(profile[-1] / profile[0])
    assert layer.steps == 60
    assert layer.gated  # a GRU
    assert not TimeEvidence("rnn", "RNN", profile, 60).gated
    assert TimeEvidence("cell", "MyCell", profile, 60, gate_mean=0.3).gated  # gates measured


@pytest.mark.parametrize("act", [nn.Tanh, nn.LeakyReLU, nn.ReLU])
def test_evidence_from_a_monitored_step_matches_plain_autograd(act: type[nn.Module]) -> None:
    case = mlp(depth=3, act=act)
    ref = reference(case)
    history = monitored_step(case)
    evidence = evidence_from_history(history, case.model)
    columns = {name: i for i, name in enumerate(ref.layers)}
    assert [layer.name for layer in evidence.layers] == ["0", "2", "4"]
    for layer, following in zip(evidence.layers, ["1", "3", None]):
        i = columns[layer.name]
        assert layer.signal == pytest.approx(ref.values["signal_rms"][i], rel=1e-5)
        assert layer.weight_grad == pytest.approx(ref.values["weight_grad_norm"][i], rel=1e-5)
        assert layer.gain == pytest.approx(numpy_gain(case.model.get_submodule(layer.name).weight), rel=1e-5)
        assert layer.weight
        if following is None:
            assert layer.activation is None
            continue
        j = columns[following]
        name = {nn.Tanh: "tanh", nn.LeakyReLU: "leaky_relu", nn.ReLU: "relu"}[act]
        assert layer.activation == name
        np.testing.assert_allclose(layer.saturated, ref.values["act_saturated"][j], atol=1e-6)
        np.testing.assert_allclose(layer.dead, ref.values["act_dead"][j], atol=1e-6)
    assert evidence.source == "monitor"
    assert evidence.depth == 3
    assert not evidence.normalized and evidence.recurrent == []
    np.testing.assert_allclose(evidence.loss, [ref.loss], rtol=1e-6)


def test_structure_from_the_model_or_from_the_history_alone() -> None:
    case = recurrent("LSTM")
    history = monitored_step(case)
    with_model = evidence_from_history(history, case.model)
    alone = evidence_from_history(history, None)
    lstms = [name for name, m in case.model.named_modules() if isinstance(m, nn.LSTM)]
    assert lstms and with_model.recurrent == alone.recurrent == lstms
    normed = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1))
    history = monitored_step(mlp_case(normed))
    assert evidence_from_history(history, normed).normalized
    assert evidence_from_history(history, None).normalized


def mlp_case(model: nn.Module) -> Case:
    """``model`` on 8 rows of 4 features, with a mean squared error to a random target."""
    target = torch.randn(8, 1)
    return Case(model, (torch.randn(8, 4),), lambda out: (out - target).pow(2).mean())
