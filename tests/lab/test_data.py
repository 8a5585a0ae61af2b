"""Unit tests of :mod:`gradmedic.lab.data`: the lab's tasks, their metrics and chance levels.

Metrics are recomputed here by hand; the adding problem's chance level is checked against a
Monte Carlo count on the task's own data.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from gradmedic import tasks
from gradmedic.errors import ConfigError
from gradmedic.lab.data import chance_level, load_task, score_outputs


def test_accuracy_counts_argmax_hits_and_non_finite_rows_as_wrong() -> None:
    output = torch.tensor([[0.1, 0.9], [0.8, 0.2], [math.inf, 0.0], [0.0, 1.0]])
    assert score_outputs("digits", output, torch.tensor([1, 0, 0, 0])) == 0.5


def test_adding_counts_sequences_with_squared_error_below_the_threshold() -> None:
    err = math.sqrt(tasks.SOLVED_ERROR)
    output = torch.tensor([[1.0], [1.0 + 0.9 * err], [1.0 + 1.1 * err], [math.nan]])
    assert score_outputs("adding", output, torch.ones(4, 1)) == 0.5


def test_copy_scores_only_the_recall_steps() -> None:
    recall, steps, width = tasks.COPY_SYMBOLS, tasks.COPY_SYMBOLS + 7, tasks.COPY_CATEGORIES + 2
    targets = torch.randint(0, width, (3, steps))
    output = nn.functional.one_hot(targets, width).float()
    output[:, : steps - recall] = 0.0  # wrong everywhere before the recall: does not count
    output[0, -1] = torch.roll(output[0, -1], 1)  # one recalled symbol wrong
    output[2, 0, 0] = math.nan  # a sequence with a non-finite output counts as wrong entirely
    expected = (2 * recall - 1) / (3 * recall)
    assert score_outputs("copy", output, targets) == pytest.approx(expected)


def test_adding_chance_level_matches_always_predicting_one() -> None:
    _, y = tasks.adding_problem(20000, 10, seed=5)
    solved = ((y - 1.0) ** 2 < tasks.SOLVED_ERROR).double().mean().item()
    assert chance_level("adding") == pytest.approx(solved, abs=0.015)  # 4 standard errors
    assert chance_level("copy") == 1 / tasks.COPY_CATEGORIES and chance_level("digits") == 0.1


def test_task_shapes_and_sizes() -> None:
    rows, image = load_task("digits_rows"), load_task("digits_image")
    assert rows.sequence and not image.sequence
    assert tuple(image.fit.x_train.shape[1:]) == (1, 8, 8) and (image.n_inputs, image.n_outputs) == (1, 10)
    assert (len(rows.fit.y_train), len(rows.fit.y_test), len(rows.final.y_test)) == (
        1150,
        288,
        359,
    )  # 80/20 of 1438
    adding = load_task("adding", seed=0, length=6)
    assert (adding.metric_name, adding.n_inputs, adding.n_outputs) == ("solved", 2, 1)
    assert tuple(adding.fit.x_train.shape) == (4096, 6, 2)
    assert not torch.equal(adding.fit.x_test, adding.final.x_test)  # validation and test are different draws


def test_batch_is_a_seeded_sample_of_the_training_data() -> None:
    data = load_task("digits")
    x, _ = data.batch(16, seed=3)
    again, _ = data.batch(16, seed=3)
    assert torch.equal(x, again) and not torch.equal(x, data.batch(16, seed=4)[0])
    rows = {tuple(r.tolist()) for r in data.fit.x_train}
    assert all(tuple(r.tolist()) in rows for r in x)


def test_metric_runs_in_eval_mode_and_restores_training_mode() -> None:
    data = load_task("digits")
    model = nn.Sequential(nn.Linear(64, 10), nn.Dropout(0.99))
    x, y = data.fit.x_test[:100], data.fit.y_test[:100]
    expected = (model[0](x).argmax(1) == y).float().mean().item()
    assert data.metric(model, x, y) == pytest.approx(expected) and model.training


def test_copy_checkup_loss_reads_only_the_recall_steps() -> None:
    data = load_task("copy", length=3)
    _, y = data.batch(4)
    output = torch.randn(*y.shape, data.n_outputs)
    loss = data.checkup_loss()
    assert loss is not None and load_task("digits").checkup_loss() is None
    recall = tasks.COPY_SYMBOLS
    expected = tasks.copy_memory_loss(output[:, -recall:], y[:, -recall:])
    assert torch.equal(loss(output, y), expected)
    output[:, :-recall] = 100.0  # what comes before the recall changes nothing
    assert torch.equal(loss(output, y), expected)


def test_unknown_task_and_missing_length_are_config_errors() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("unknown task 'mnist': choose one of digits, digits_image")
    ):
        load_task("mnist")
    with pytest.raises(ConfigError, match=re.escape("task 'adding' needs a sequence length")):
        load_task("adding")
