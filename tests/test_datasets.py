"""Unit tests of :mod:`gradmedic.datasets`: the digits split, standardised on its train part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradmedic.datasets import Split, load_digits_split

sklearn = pytest.importorskip("sklearn.datasets")


def test_sizes_types_and_classes() -> None:
    data = load_digits_split(seed=0)
    assert tuple(data.x_train.shape) == (1438, 64) and tuple(data.x_test.shape) == (359, 64)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert (data.n_classes, data.n_features) == (10, 64)
    half = load_digits_split(seed=0, test_fraction=0.5)
    assert len(half.y_test) == round(1797 * 0.5)


def test_every_sample_lands_in_exactly_one_part() -> None:
    _, y = sklearn.load_digits(return_X_y=True)
    data = load_digits_split(seed=3)
    counts = np.bincount(data.y_train.numpy(), minlength=10) + np.bincount(data.y_test.numpy(), minlength=10)
    np.testing.assert_array_equal(counts, np.bincount(y, minlength=10))


def test_standardised_on_the_train_part_only() -> None:
    data = load_digits_split(seed=0)
    x = data.x_train.double().numpy()
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    std = x.std(axis=0)
    constant = std < 1e-3  # pixels always blank in the train part stay 0, not NaN
    assert constant.any() and np.isfinite(data.x_test.numpy()).all()
    np.testing.assert_allclose(std[~constant], 1.0, rtol=1e-4)
    # the test part was scaled with the train statistics: its means are not exactly zero
    assert np.abs(data.x_test.double().numpy().mean(axis=0)).max() > 1e-3


def test_the_seed_decides_the_split() -> None:
    a, b, c = load_digits_split(seed=1), load_digits_split(seed=1), load_digits_split(seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)


def test_split_properties_of_image_shaped_inputs() -> None:
    split = Split(
        torch.zeros(5, 3, 4, 4), torch.tensor([0, 2, 1, 2, 0]), torch.zeros(1, 3, 4, 4), torch.tensor([1])
    )
    assert (split.n_classes, split.n_features) == (3, 48)
