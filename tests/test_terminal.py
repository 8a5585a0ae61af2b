"""Unit tests of :mod:`gradmedic.terminal`: log-scale bars and compact numbers."""

from __future__ import annotations

import math

import pytest

from gradmedic.terminal import BAR_WIDTH, fmt, log_bar


@pytest.mark.parametrize(
    ("value", "filled"),
    [(1e-6, 0), (1e-5, 2), (1e-4, 4), (1e-3, 6), (1e-1, 10), (1.0, 12), (10.0, 12), (1e-9, 0)],
)
def test_log_bar_length_is_the_value_on_a_log_scale_clamped(value: float, filled: int) -> None:
    bar = log_bar(value, 1e-6, 1.0, width=12)
    assert bar == "█" * filled + " " * (12 - filled)
    # the same number from the definition: the position of log10(value) between the two ends
    assert filled == round(min(max((math.log10(value) + 6) / 6, 0), 1) * 12)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_log_bar_is_blank_for_values_that_have_no_logarithm(value: float) -> None:
    assert log_bar(value, 1e-6, 1.0) == " " * BAR_WIDTH


def test_log_bar_with_an_empty_range_is_full() -> None:
    assert log_bar(0.5, 1.0, 1.0, width=5) == "█████"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.14159e-7, "3.1e-07"), (0.042, "0.042"), (0.01, "0.01"), (0.00999, "1.0e-02"), (0.0, "0"),
        (1.0, "1"), (123.456, "123"), (12345.0, "1.2e+04"), (-0.5, "-0.5"),
        (-2e-5, "-2.0e-05"), (math.nan, "-"), (math.inf, "inf"), (-math.inf, "-inf"),
    ],
)  # fmt: skip
def test_fmt_is_compact(value: float, text: str) -> None:
    assert fmt(value) == text
