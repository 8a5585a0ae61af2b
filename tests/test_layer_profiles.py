"""Unit tests of :mod:`gradmedic.layer_profiles`: one robust number per layer, read from a History."""

from __future__ import annotations

import numpy as np
from torch import nn

from gradmedic.history import History
from gradmedic.layer_profiles import Profile, layer_profile
from gradmedic.layers import LayerInfo
from models import mlp, monitored_step, reference

LAYERS = [
    LayerInfo("head", "Linear", "param", ["head.weight"], forward_index=2),
    LayerInfo("act", "Tanh", "activation", [], forward_index=1),
    LayerInfo("fc", "Linear", "param", ["fc.weight"], forward_index=0),
    LayerInfo("unused", "Linear", "param", ["unused.weight"], forward_index=-1),
]


def history_with(rows: np.ndarray) -> History:
    history = History(LAYERS, [])
    history.append("signal_rms", list(range(len(rows))), rows)
    return history


def test_median_of_the_last_rows_in_forward_order_and_unseen_layers_last() -> None:
    rng = np.random.default_rng(0)
    rows = rng.lognormal(size=(30, 4))
    rows[:, 3] = np.nan  # never observed
    rows[-5, 0] = np.nan  # one missing value is skipped, not propagated
    profile = layer_profile(history_with(rows), "signal_rms", last=10)
    assert profile.names == ["fc", "head", "unused"]  # param layers only, forward order
    expected = [np.median(rows[-10:, 2]), np.median(np.delete(rows[-10:, 0], 5)), np.nan]
    np.testing.assert_allclose(profile.values, expected, rtol=1e-12)


def test_kind_selects_the_layers() -> None:
    rows = np.arange(12.0).reshape(3, 4)
    assert layer_profile(history_with(rows), "signal_rms", kind="activation").names == ["act"]
    everything = layer_profile(history_with(rows), "signal_rms", kind=None)
    assert everything.names == ["fc", "act", "head", "unused"]
    np.testing.assert_allclose(everything.values, [6.0, 5.0, 4.0, 7.0])  # median of each column


def test_a_metric_never_recorded_gives_nan_for_every_layer() -> None:
    profile = layer_profile(history_with(np.ones((2, 4))), "weight_grad_norm")
    assert profile.names == ["fc", "head", "unused"]
    assert np.isnan(profile.values).all()


def test_observed_drops_the_layers_without_a_finite_value() -> None:
    profile = Profile(LAYERS[:3], np.array([1.0, np.nan, np.inf]))
    observed = profile.observed()
    assert observed.names == ["head"]
    np.testing.assert_array_equal(observed.values, [1.0])


def test_profile_of_a_monitored_step_is_the_plain_autograd_signal() -> None:
    case = mlp(depth=4, act=nn.Sigmoid)
    ref = reference(case)
    profile = layer_profile(monitored_step(case), "signal_rms")
    assert profile.names == ["0", "2", "4", "6"]
    expected = [ref.values["signal_rms"][ref.layers.index(name)] for name in profile.names]
    np.testing.assert_allclose(profile.values, expected, rtol=1e-5)
