"""The synthetic sequence tasks: structure, seeding, and their baselines measured on generated data."""

from __future__ import annotations

import math

import pytest
import torch

from gradmedic import tasks
from gradmedic.errors import ConfigError


def test_adding_problem_structure():
    x, y = tasks.adding_problem(500, 40, seed=3)
    assert x.shape == (500, 40, 2) and y.shape == (500, 1) and x.dtype == y.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert bool(((values >= 0) & (values < 1)).all())
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert markers[:, :20].sum(dim=1).tolist() == [1.0] * 500  # one marker in each half
    assert markers[:, 20:].sum(dim=1).tolist() == [1.0] * 500
    torch.testing.assert_close(y[:, 0], (values * markers).sum(dim=1))


def test_adding_problem_is_seeded_and_leaves_the_global_generator_alone():
    state = torch.get_rng_state()
    first, again, other = (tasks.adding_problem(8, 10, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_adding_baseline_measured_on_generated_data():
    """Always predicting 1 gives MSE Var(U + U') = 1/6; 1 is also the best constant (the mean)."""
    _, y = tasks.adding_problem(40_000, 20, seed=0)
    # (s - 1)^2 for s ~ U + U' has standard deviation 0.197: 4 standard errors over 40000 samples
    tolerance = 4 * 0.197 / math.sqrt(len(y))
    assert pytest.approx(1 / 6) == tasks.ADDING_BASELINE
    assert (y - 1).pow(2).mean().item() == pytest.approx(tasks.ADDING_BASELINE, abs=tolerance)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    assert tasks.solved_fraction(torch.ones_like(y), y) == pytest.approx(0.36, abs=0.015)  # P(|s-1| < 0.2)


def test_solved_fraction_counts_squared_errors_below_the_tolerance():
    targets = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    predictions = torch.tensor([[1.0], [1.19], [1.21], [0.5]])
    assert tasks.solved_fraction(predictions, targets) == 0.5
    assert tasks.solved_fraction(predictions, targets, tolerance=1.0) == 1.0


def test_copy_memory_structure():
    length = 15
    x, y = tasks.copy_memory(64, length, seed=5)
    total = length + 20
    assert x.shape == (64, total, 10) and y.shape == (64, total) and y.dtype == torch.long
    assert x.sum(dim=-1).eq(1).all()  # one-hot
    tokens = x.argmax(-1)
    symbols = tokens[:, :10]
    assert bool(((symbols >= 1) & (symbols <= 8)).all())
    assert tokens[:, 10 + length - 1].eq(tasks.DELIMITER).all()
    blanks = torch.cat([tokens[:, 10 : 10 + length - 1], tokens[:, -10:]], dim=1)
    assert blanks.eq(tasks.BLANK).all()
    assert y[:, : length + 10].eq(tasks.BLANK).all() and torch.equal(y[:, -10:], symbols)
    again = tasks.copy_memory(64, length, seed=5)
    assert torch.equal(again[0], x) and torch.equal(again[1], y)


@pytest.mark.parametrize("length", [1, 30, 100])
def test_copy_memory_baseline_measured_on_generated_data(length):
    """The best memoryless model knows each position's target distribution, nothing more: its
    cross-entropy, measured with the empirical distribution of generated targets, is the
    baseline 10 log 8 / (T + 20)."""
    _, y = tasks.copy_memory(4000, length, seed=1)
    counts = torch.stack([torch.bincount(y[:, t], minlength=10) for t in range(y.shape[1])]).float()
    log_probs = (counts / len(y)).clamp_min(1e-12).log()  # per position: the memoryless predictor
    logits = log_probs.expand(len(y), -1, -1)
    measured = tasks.copy_memory_loss(logits, y).item()
    # the empirical entropy of 8 categories over 4000 draws falls short of log 8 by ~7/8000
    assert measured == pytest.approx(tasks.copy_memory_baseline(length), rel=0.01)
    assert tasks.copy_memory_baseline(length) == pytest.approx(10 * math.log(8) / (length + 20))


def test_copy_memory_loss_of_exact_and_guessing_predictions():
    _, y = tasks.copy_memory(16, 10, seed=2)
    exact = torch.nn.functional.one_hot(y, 10).float() * 100
    assert tasks.copy_memory_loss(exact, y).item() == pytest.approx(0.0, abs=1e-6)
    guessing = torch.full((16, 30, 10), -100.0)
    guessing[:, :20, tasks.BLANK] = 100.0  # blanks known, symbols guessed among the 8
    guessing[:, 20:, 1:9] = 0.0
    baseline = tasks.copy_memory_baseline(10)
    assert tasks.copy_memory_loss(guessing, y).item() == pytest.approx(baseline, rel=1e-5)


def test_bad_sizes_say_what_to_give():
    with pytest.raises(ConfigError, match="length >= 2"):
        tasks.adding_problem(4, 1)
    with pytest.raises(ConfigError, match="n >= 1"):
        tasks.copy_memory(0, 5)
