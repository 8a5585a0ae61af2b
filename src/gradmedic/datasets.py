"""Embedded data: scikit-learn's bundled digits, split and standardised, as tensors.

Nothing is downloaded: the digits (1,797 8x8 images, 10 classes) ship inside scikit-learn.

Example:
    >>> from gradmedic.datasets import load_digits_split
    >>> data = load_digits_split(seed=0)
    >>> tuple(data.x_train.shape), int(data.y_train.max())
    ((1438, 64), 9)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Split:
    """Train and test tensors of a classification task."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @property
    def n_classes(self) -> int:
        return int(self.y_train.max().item()) + 1

    @property
    def n_features(self) -> int:
        return int(self.x_train[0].numel())


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """scikit-learn's digits as float32 vectors of 64 features, standardised on the train split.

    Raises:
        ImportError: when scikit-learn is missing, with the command that installs it.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits data set needs scikit-learn: pip install 'gradmedic[lab]'") from None
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    x = ((x - mean) / std).astype(np.float32)
    as_x, as_y = torch.from_numpy, lambda a: torch.from_numpy(a.astype(np.int64))
    return Split(as_x(x[train]), as_y(y[train]), as_x(x[test]), as_y(y[test]))
