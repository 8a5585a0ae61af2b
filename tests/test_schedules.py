"""Schedules: which steps a statistic is recorded at."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradmedic.errors import ConfigError
from gradmedic.schedules import DenseStart, Every, LogSpaced, Never, as_schedule

SETTINGS = settings(max_examples=50, deadline=None)


@SETTINGS
@given(st.integers(1, 50), st.integers(0, 500))
def test_every_selects_the_multiples_of_n(n, upto):
    assert [s for s in range(upto) if Every(n)(s)] == list(range(0, upto, n))


def test_log_spaced_documented_steps():
    assert [s for s in range(200) if LogSpaced(4)(s)] == [0, 1, 2, 3, 4, 5, 6, 10, 18, 32, 56, 100, 178]


@pytest.mark.parametrize("per_decade", [1, 2, 3, 5, 10, 20])
def test_log_spaced_keeps_per_decade_steps_in_each_decade(per_decade):
    schedule = LogSpaced(per_decade)
    assert all(schedule(s) for s in range(7))
    for decade in range(1, 5):
        chosen = [s for s in range(10**decade, 10 ** (decade + 1)) if schedule(s)]
        assert len(chosen) == per_decade, (decade, chosen)
        assert chosen[0] == 10**decade
        if decade >= 2:  # log-spaced: consecutive ratios close to 10 ** (1 / per_decade), up to rounding
            ratios = [b / a for a, b in itertools.pairwise(chosen)]
            assert all(abs(math.log10(r) - 1 / per_decade) < 0.01 for r in ratios), ratios


def test_log_spaced_default_is_ten_per_decade():
    assert LogSpaced().per_decade == 10
    assert sum(LogSpaced()(s) for s in range(1000, 10000)) == 10


@SETTINGS
@given(st.integers(0, 10**6))
def test_never_selects_nothing(step):
    assert not Never()(step)


def test_as_schedule_turns_options_into_schedules():
    assert as_schedule(3, "gradients_every") == Every(3)
    assert as_schedule(1, "gradients_every") == Every(1)
    assert as_schedule("log", "gradients_every") == LogSpaced()
    assert isinstance(as_schedule(None, "gradients_every"), Never)
    assert isinstance(as_schedule(False, "gradients_every"), Never)


def test_as_schedule_passes_functions_through():
    def odd(step: int) -> bool:
        return step % 2 == 1

    assert as_schedule(odd, "gradients_every") is odd
    assert [s for s in range(6) if as_schedule(odd, "gradients_every")(s)] == [1, 3, 5]


@pytest.mark.parametrize("value", [0, -1, -10])
def test_as_schedule_rejects_non_positive_intervals(value):
    with pytest.raises(ConfigError) as info:
        as_schedule(value, "activations_every")
    message = str(info.value)
    assert f"activations_every={value}" in message
    assert "positive step interval" in message
    assert "None to turn" in message


@pytest.mark.parametrize("value", [True, 2.5, "often", [1, 2]])
def test_as_schedule_rejects_what_is_not_a_schedule(value):
    with pytest.raises(ConfigError) as info:
        as_schedule(value, "updates_every")
    message = str(info.value)
    assert f"updates_every={value!r} is not a schedule" in message
    assert "'log'" in message and "None" in message and "step -> bool" in message


@SETTINGS
@given(st.integers(1, 50), st.integers(0, 50), st.integers(0, 500))
def test_dense_start_records_every_early_step_then_the_multiples_of_n(n, dense, upto):
    expected = sorted(set(range(min(dense, upto))) | set(range(0, upto, n)))
    assert [s for s in range(upto) if DenseStart(n, dense)(s)] == expected
    assert as_schedule(DenseStart(n, dense), "gradients_every") == DenseStart(n, dense)
