"""The pure statistics of ``gradmedic.stats`` against their definitions, on random shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradmedic import stats
from models import DYING, SATURATING, dead_reference, local_slope, max_slope, saturation_reference

SETTINGS = settings(max_examples=40, deadline=None)

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
seeds = st.integers(0, 2**31 - 1)
scales = st.sampled_from([1e-3, 0.1, 1.0, 3.0, 30.0])


def _randn(shape: tuple[int, ...], seed: int, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


def _exact_sq(tensor: torch.Tensor) -> float:
    return tensor.double().pow(2).sum().item()


# -- norms ---------------------------------------------------------------------------------


@SETTINGS
@given(shapes, seeds, scales, st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
def test_squared_norm_equals_sum_of_squares(shape, seed, scale, dtype):
    tensor = _randn(shape, seed, scale, dtype)
    result = stats.squared_norm(tensor)
    assert result.dim() == 0
    assert result.dtype == torch.float64
    assert result.item() == pytest.approx(_exact_sq(tensor), rel=1e-5)


@pytest.fixture(params=[False, True], ids=["denormals", "flush-denormal"])
def flush_denormal(request):
    """Run with and without ``torch.set_flush_denormal(True)`` (the benchmark turns it on)."""
    torch.set_flush_denormal(request.param)
    yield request.param
    torch.set_flush_denormal(False)  # torch's default


@pytest.mark.parametrize("value", [1e-20, 1e-25, 1e-35])
def test_vanishing_values_do_not_underflow_to_zero(value, flush_denormal):
    """float32 squares of 1e-20 are 1e-40: below the smallest normal float32 (flushed to 0)."""
    tensor = torch.full((64, 32), value, dtype=torch.float32)
    exact = _exact_sq(tensor)
    assert stats.squared_norm(tensor).item() == pytest.approx(exact, rel=1e-6)
    assert stats.norm(tensor).item() == pytest.approx(math.sqrt(exact), rel=1e-6)
    both = stats.squared_norms([tensor, torch.ones(3)])
    assert both[0].item() == pytest.approx(exact, rel=1e-6) and both[1].item() == pytest.approx(3.0)
    norms = stats.norms([torch.ones(4), tensor, tensor.double()])
    assert norms.tolist() == pytest.approx([2.0, math.sqrt(exact), math.sqrt(exact)], rel=1e-6)
    alternating = tensor * torch.tensor([1.0, -1.0]).repeat(16)  # mean 0: the spread is all of it
    assert stats.mean_std(alternating)[1].item() == pytest.approx(value, rel=1e-5)


def test_norms_of_half_precision_tensors_do_not_overflow():
    big = torch.full((100, 100), 1000.0, dtype=torch.float16)  # norm 1e5 > float16's largest 65504
    norms = stats.norms([big, torch.ones(2, dtype=torch.bfloat16)])
    assert norms.tolist() == pytest.approx([1e5, 2**0.5], rel=1e-5)


def test_squared_norm_of_non_contiguous_tensor():
    tensor = _randn((4, 6), 1).t()[::2]
    assert not tensor.is_contiguous()
    assert stats.squared_norm(tensor).item() == pytest.approx(_exact_sq(tensor), rel=1e-6)


@SETTINGS
@given(
    st.lists(st.tuples(shapes, st.sampled_from([torch.float32, torch.float64])), min_size=1, max_size=5),
    seeds,
)
def test_squared_norms_one_value_per_tensor(specs, seed):
    tensors = [_randn(shape, seed + i, 2.0, dtype) for i, (shape, dtype) in enumerate(specs)]
    result = stats.squared_norms(tensors)
    assert result.shape == (len(tensors),)
    assert result.dtype == torch.float64  # squares of vanishing values need float64
    np.testing.assert_allclose(result.double().numpy(), [_exact_sq(t) for t in tensors], rtol=1e-5)


def test_squared_norms_of_nothing_is_empty():
    assert stats.squared_norms([]).shape == (0,)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("numel", [1, 1000, 1 << 20])
def test_cpu_squared_norm_by_blas_equals_the_float64_sum_of_squares(threads, numel):
    """The CPU norms go through BLAS ``dot`` (every thread): as exact as ``vector_norm``, at any
    thread count, contiguous or not."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tensor = _randn((numel,), 7, 3.0)
        assert stats.native_squared_norm(tensor).item() == pytest.approx(_exact_sq(tensor), rel=1e-5)
        strided = tensor[::2]
        assert stats.native_squared_norm(strided).item() == pytest.approx(_exact_sq(strided), rel=1e-5)
        both = stats.squared_norms([tensor, strided])
        np.testing.assert_allclose(both.numpy(), [_exact_sq(tensor), _exact_sq(strided)], rtol=1e-5)
    finally:
        torch.set_num_threads(previous)


def test_cpu_squared_norm_overflows_and_is_empty_where_vector_norm_does():
    huge = torch.full((4,), 1e20)
    assert stats.native_squared_norm(huge).item() == torch.linalg.vector_norm(huge).item() ** 2 == math.inf
    assert stats.native_squared_norm(torch.zeros(0)).item() == 0.0


def test_squared_norm_keeps_inf_and_nan():
    assert stats.squared_norm(torch.tensor([1.0, math.inf])).item() == math.inf
    assert math.isnan(stats.squared_norm(torch.tensor([1.0, math.nan])).item())


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 6), seeds)
def test_grouped_sums_add_each_value_to_its_group(n_values, n_groups, seed):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(n_values, generator=generator, dtype=torch.float64)
    groups = torch.randint(0, n_groups, (n_values,), generator=generator)
    expected = [sum(v for v, g in zip(values.tolist(), groups.tolist()) if g == k) for k in range(n_groups)]
    np.testing.assert_allclose(stats.grouped_sums(values, groups, n_groups).numpy(), expected, rtol=1e-12)


# -- saturation ------------------------------------------------------------------------------

ACTIVATIONS = [
    nn.Sigmoid(),
    nn.Tanh(),
    nn.Softsign(),
    nn.Hardtanh(),
    nn.Hardtanh(-2.0, 0.5),
    nn.ReLU6(),
    nn.Hardsigmoid(),
]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=repr)
def test_band_edge_is_where_slope_is_five_percent_of_the_maximum(activation):
    """Just inside the band the slope is below 5 % of the maximum, just outside it is not."""
    band = stats.saturation_band(activation)
    assert band is not None
    peak = max_slope(activation)
    grid = torch.arange(-12 * 4096, 12 * 4096 + 1, dtype=torch.float64) / 4096  # corners exact
    slope = local_slope(activation, grid)
    y = activation(grid)
    distance = (y - band.center).abs()
    inside = distance >= band.radius if band.inclusive else distance > band.radius
    flat = slope < stats.SATURATION_SLOPE * peak
    disagree = (inside != flat) & ((slope - stats.SATURATION_SLOPE * peak).abs() > 1e-6 * peak)
    assert not disagree.any(), grid[disagree][:5]
    assert flat.any() and (~flat).any()


@SETTINGS
@given(st.sampled_from(ACTIVATIONS), shapes, seeds, scales)
def test_saturated_fraction_matches_slope_definition(activation, shape, seed, scale):
    x = _randn(shape, seed, scale)
    expected, slack = saturation_reference(activation, x)
    result = stats.saturated_fraction(activation(x), stats.saturation_band(activation))
    assert abs(result.item() - expected) <= slack + 1e-7


@pytest.mark.parametrize(
    ("activation", "x"),
    [
        (nn.Hardtanh(), [-1.0, 1.0, -0.999, 0.999, -5.0, 5.0]),
        (nn.ReLU6(), [0.0, 6.0, 1e-6, 5.999, -1.0, 7.0]),
        (nn.Hardsigmoid(), [-3.0, 3.0, -2.999, 2.999, -4.0, 4.0]),
    ],
    ids=["hardtanh", "relu6", "hardsigmoid"],
)
def test_clipped_activations_are_saturated_exactly_on_their_corners(activation, x):
    """At the corner itself PyTorch's slope is 0: the band is inclusive."""
    x = torch.tensor(x)
    expected, _ = saturation_reference(activation, x)
    assert expected == pytest.approx(4 / 6)
    result = stats.saturated_fraction(activation(x), stats.saturation_band(activation))
    assert result.item() == pytest.approx(expected)


@pytest.mark.parametrize(
    "activation", [nn.ReLU(), nn.LeakyReLU(), nn.GELU(), nn.SiLU(), nn.ELU(), nn.Softplus(), nn.Mish()]
)
def test_non_saturating_activations_have_no_band(activation):
    assert stats.saturation_band(activation) is None
    assert not isinstance(activation, SATURATING)


@pytest.mark.parametrize(
    "activation",
    [nn.ReLU(), nn.ReLU6(), nn.Threshold(0.1, 0.0), nn.Hardsigmoid(), nn.LeakyReLU(), nn.Tanh(), nn.GELU()],
    ids=repr,
)
def test_can_die_exactly_for_activations_with_a_zero_half_line(activation):
    assert stats.can_die(activation) == isinstance(activation, DYING)


# -- dead units ----------------------------------------------------------------------------


@SETTINGS
@given(
    st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple),
    seeds,
    st.floats(-2.0, 1.0, allow_subnormal=False),
)
def test_dead_fraction_counts_units_zero_for_every_sample(shape, seed, offset):
    output = torch.relu(_randn(shape, seed) + offset)
    expected = dead_reference(output)
    units = output.reshape(shape[0], -1)
    by_loop = sum(all(units[b, j] <= 0 for b in range(shape[0])) for j in range(units.shape[1]))
    assert expected == pytest.approx(by_loop / units.shape[1])
    assert stats.dead_fraction(output).item() == pytest.approx(expected, abs=1e-7)


def test_dead_fraction_unit_alive_in_one_sample_only_is_alive():
    output = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    assert stats.dead_fraction(output).item() == pytest.approx(1 / 3)


def test_dead_fraction_of_cnn_output_counts_channel_times_position():
    output = torch.zeros(2, 3, 2, 2)
    output[0, 1, 0, 0] = 1.0  # one live neuron of 12
    output[1, 2] = 1.0  # a whole live channel, 4 neurons
    assert stats.dead_fraction(output).item() == pytest.approx(7 / 12)


# -- mean, std and the packed row --------------------------------------------------------------


@SETTINGS
@given(shapes, seeds, scales, st.floats(-100.0, 100.0, allow_subnormal=False))
def test_mean_std_is_population_mean_and_std(shape, seed, scale, shift):
    values = _randn(shape, seed, scale) + shift
    mean, std = stats.mean_std(values)
    exact = values.double()
    assert mean.item() == pytest.approx(exact.mean().item(), rel=1e-5, abs=1e-5 * (abs(shift) + scale))
    assert std.item() == pytest.approx(exact.std(unbiased=False).item(), rel=1e-3, abs=1e-6 * abs(shift))


def test_mean_std_of_a_constant_is_zero_std():
    mean, std = stats.mean_std(torch.full((5, 3), 7.0))
    assert (mean.item(), std.item()) == (7.0, 0.0)


@pytest.mark.parametrize("spread", [1e-2, 1e-4, 1e-6])
def test_mean_std_of_a_large_mean_with_a_small_spread(spread):
    """E[x^2] - mean^2 cancels here (a saturated sigmoid: outputs all near 1): two passes are used."""
    values = 1.0 - spread * torch.rand(4096, generator=torch.Generator().manual_seed(0))
    mean, std = stats.mean_std(values)
    exact = values.double()
    assert mean.item() == pytest.approx(exact.mean().item(), rel=1e-6)
    assert std.item() == pytest.approx(exact.std(unbiased=False).item(), rel=1e-3)


def test_mean_std_of_non_finite_values_is_not_finite():
    mean, std = stats.mean_std(torch.tensor([1.0, math.inf]))
    assert mean.item() == math.inf and math.isnan(std.item())
    assert all(math.isnan(v.item()) for v in stats.mean_std(torch.tensor([1.0, math.nan])))


@pytest.mark.parametrize(
    ("module", "has_saturated", "has_dead"),
    [(None, False, False), (nn.Tanh(), True, False), (nn.ReLU(), False, True), (nn.ReLU6(), True, True)],
)
def test_activation_stats_row(module, has_saturated, has_dead):
    x = _randn((7, 5), 3, 4.0)
    output = module(x) if module is not None else x
    row = stats.activation_stats(output, module)
    assert row.shape == (len(stats.ACTIVATION_FIELDS),)
    assert stats.ACTIVATION_FIELDS == ("act_mean", "act_std", "act_saturated", "act_dead")
    exact = output.double()
    assert row[0].item() == pytest.approx(exact.mean().item(), rel=1e-5)
    assert row[1].item() == pytest.approx(exact.std(unbiased=False).item(), rel=1e-5)
    if has_saturated:
        expected, slack = saturation_reference(module, x)
        assert abs(row[2].item() - expected) <= slack + 1e-7
    else:
        assert math.isnan(row[2].item())
    if has_dead:
        assert row[3].item() == pytest.approx(dead_reference(output))
    else:
        assert math.isnan(row[3].item())


def test_activation_stats_of_integer_output_and_no_grad():
    row = stats.activation_stats(torch.tensor([[1, 3], [5, 7]]), None)
    assert row[:2].tolist() == pytest.approx([4.0, math.sqrt(5.0)])
    x = torch.randn(4, 3, requires_grad=True)
    assert not stats.activation_stats(torch.tanh(x), nn.Tanh()).requires_grad


def test_host_activation_stats_equal_the_tensor_ones_and_reuse_any_scratch():
    x = _randn((16, 3, 5), 7, 3.0)
    scratch = torch.full((1000,), 7.0)  # larger than the output, and dirty: only a view is written
    for module in (nn.Tanh(), nn.ReLU6(), nn.ReLU(), nn.Sigmoid(), None):
        output = module(x) if module is not None else x
        kind = stats.activation_kind(module)
        expected = stats.activation_stats(output, module)
        for buffer in (None, scratch, torch.empty(output.shape)):
            values = stats.host_activation_stats(output, kind, buffer)
            np.testing.assert_allclose(values, expected.double().numpy(), rtol=1e-6)
    assert stats.activation_kind(nn.Tanh()) == stats.ActivationKind(stats.saturation_band(nn.Tanh()), False)
    assert stats.activation_kind(None) == stats.ActivationKind(None, False)


def test_device_activation_stats_equal_the_host_ones():
    """The accelerator path (means of 0/1 comparisons, std_mean), one output and several stacked,
    run on CPU tensors, every band kind."""
    x = _randn((16, 3, 5), 11, 3.0)
    x[0, 0, :3] = torch.tensor([-1.0, 1.0, 6.0])  # values on the edges of the inclusive bands
    modules = (
        nn.Tanh(),
        nn.Sigmoid(),
        nn.Softsign(),
        nn.Hardtanh(),
        nn.ReLU6(),
        nn.ReLU(),
        nn.Hardsigmoid(),
        None,
    )
    for module in modules:
        output = module(x) if module is not None else x
        kind = stats.activation_kind(module)
        expected = stats.host_activation_stats(output, kind)
        row = stats.device_activation_stats(output, kind, torch.tensor(math.nan))
        np.testing.assert_allclose(row.double().numpy(), expected, rtol=1e-5, atol=1e-7)
        others = [output * 0.5, output.flip(0), output]
        rows = stats.device_activation_rows(torch.stack(others), kind)
        for other, got in zip(others, rows):
            expected = stats.host_activation_stats(other, kind)
            np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-7)
    half = stats.device_activation_stats(torch.tanh(x).half(), stats.activation_kind(nn.Tanh()))
    assert half.dtype == torch.float32
    np.testing.assert_allclose(
        half[:2].numpy(),
        stats.host_activation_stats(torch.tanh(x), stats.activation_kind(nn.Tanh()))[:2],
        rtol=2e-3,
    )


def test_relu6_outputs_near_zero_are_not_saturated():
    """Regression: ``|y - 3| >= 3`` in float32 counted y = 1e-7 as saturated (2.9999999 rounds to 3)."""
    y = torch.tensor([1e-7, 1e-6, 5.9999, 0.0, 6.0, 3.0])
    assert stats.saturated_fraction(y, stats.saturation_band(nn.ReLU6())).item() == pytest.approx(2 / 6)


def test_dead_fraction_of_an_empty_batch_is_zero():
    assert stats.dead_fraction(torch.zeros(0, 4)).item() == 0.0
