"""Models with sparse gradients (``nn.Embedding(sparse=True)``): the monitor and the checkup
measure them, the learning-rate test says what it cannot do, treat leaves the test out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradmedic
from gradmedic.errors import ConfigError
from gradmedic.monitor import ALL_STATS


def _bag_of_words() -> nn.Sequential:
    return nn.Sequential(nn.Embedding(20, 4, sparse=True), nn.Flatten(), nn.Linear(12, 3))


def _batch() -> tuple[Tensor, Tensor]:
    return torch.randint(0, 20, (16, 3)), torch.randint(0, 3, (16,))


def test_weight_gradient_norms_of_a_sparse_embedding_equal_its_dense_gradient():
    model = _bag_of_words()
    x, y = _batch()
    x[:, 0] = 7  # index 7 in every sample: the sparse gradient holds it 16 times, uncoalesced
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = []
    with gradmedic.watch(model, optimizer, **ALL_STATS) as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            assert model[0].weight.grad.is_sparse
            expected.append([p.grad.to_dense().norm().item() for p in model.parameters()])
            optimizer.step()
    np.testing.assert_allclose(monitor.history.array("param_grad_norm")[1], expected, rtol=1e-5)
    assert np.isfinite(monitor.history.array("update_ratio")[1]).all()


def test_checkup_of_a_model_with_a_sparse_embedding():
    model = _bag_of_words()
    report = gradmedic.checkup(model, *_batch())
    assert 0.0 <= report.score <= 1.0
    assert model[0].weight.grad is None  # left as found


def test_find_lr_names_the_sparse_embedding_adam_cannot_step_and_works_with_sgd():
    model, batch = _bag_of_words(), _batch()
    with pytest.raises(ConfigError, match=r"sparse gradients of 0 .*optimizer="):
        gradmedic.find_lr(model, batch, nn.functional.cross_entropy)
    result = gradmedic.find_lr(model, batch, nn.functional.cross_entropy, optimizer="sgd", steps=20)
    assert len(result.lrs) > 0


def test_treat_leaves_the_rate_test_out_for_sparse_gradients():
    treatment = gradmedic.treat(_bag_of_words(), *_batch())
    assert treatment.lr is None and treatment.lr_curve is None
