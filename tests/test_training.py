"""Unit tests of :mod:`gradmedic.training`: the seeded classifier loop, its optimizers, the rate sweep.

The loop is checked against a plain PyTorch loop written here, step for step.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradmedic.datasets import Split
from gradmedic.training import accuracy, make_optimizer, sweep_lr, train_classifier, validation_split


def blobs(n: int = 120, seed: int = 0) -> Split:
    """Three Gaussian blobs in 4 dimensions, half for training, half for testing."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (2 * n,), generator=g)
    centres = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    x = centres[y] + torch.randn(2 * n, 4, generator=g)
    return Split(x[:n], y[:n], x[n:], y[n:])


def make() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("momentum", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop),
     ("adagrad", torch.optim.Adagrad), ("adam", torch.optim.Adam)],
)  # fmt: skip
def test_make_optimizer_by_name(name: str, cls: type) -> None:
    params = [nn.Parameter(torch.zeros(2))]
    opt = make_optimizer(name, params, lr=0.05)
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.05
    if cls is torch.optim.SGD:
        assert opt.param_groups[0]["momentum"] == (0.9 if name == "momentum" else 0)


def test_make_optimizer_refuses_an_unknown_name_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'lion': choose one of sgd, momentum"):
        make_optimizer("lion", [nn.Parameter(torch.zeros(1))], 0.1)


@pytest.mark.parametrize("mode", [True, False])
def test_accuracy_counts_argmax_hits_in_eval_mode_and_restores_the_mode(mode: bool) -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.9))
    model.train(mode)
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    expected = sum(int(model[0](x[i]).argmax() == y[i]) for i in range(50)) / 50  # dropout off in eval
    assert accuracy(model, x, y) == pytest.approx(expected)
    assert model.training is mode and model[1].training is mode


def plain_loop(model: nn.Module, data: Split, steps: int, lr: float, seed: int) -> list[float]:
    """The same training by hand: Adam, cross-entropy, batches of 64 drawn from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        i = torch.randint(0, len(data.y_train), (64,), generator=g)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data.x_train[i]), data.y_train[i])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_train_classifier_is_the_plain_loop_and_watching_changes_nothing() -> None:
    data = blobs()
    torch.manual_seed(1)
    plain_model = make()
    torch.manual_seed(1)
    model = make()
    torch.manual_seed(1)
    watched_model = make()
    expected = plain_loop(plain_model, data, 15, 0.01, seed=4)
    calls: list[tuple[int, float]] = []
    result = train_classifier(model, data, 15, 0.01, seed=4, on_step=lambda s, v: calls.append((s, v)))
    watched = train_classifier(watched_model, data, 15, 0.01, seed=4, monitor_options={})
    assert result.losses == expected == watched.losses  # bit-identical
    assert calls == list(enumerate(expected))
    assert result.history is None and watched.history is not None and len(watched.history) > 0
    assert result.test_accuracy == accuracy(plain_model, data.x_test, data.y_test)
    assert all(torch.equal(p, q) for p, q in zip(plain_model.parameters(), watched_model.parameters()))


def test_validation_split_holds_out_part_of_train_and_keeps_test() -> None:
    data = blobs(n=100)
    fit, final = validation_split(data, fraction=0.25, seed=0)
    assert len(fit.y_test) == 25 and len(fit.y_train) == 75
    assert torch.equal(fit.x_train, final.x_train) and torch.equal(final.x_test, data.x_test)
    rows = {tuple(r.tolist()) for r in fit.x_train} | {tuple(r.tolist()) for r in fit.x_test}
    assert len(rows) == 100 and rows == {tuple(r.tolist()) for r in data.x_train}


def test_sweep_picks_the_best_validation_rate_and_reports_its_test_accuracy() -> None:
    data = blobs()
    lrs = (1e-5, 3e-2)
    result = sweep_lr(make, data, lrs=lrs, steps=30, seed=0)
    assert set(result.by_lr) == set(lrs)
    assert (
        result.lr == max(lrs, key=lambda lr: result.by_lr[lr])
        and result.val_accuracy == result.by_lr[result.lr]
    )
    assert result.by_lr[3e-2] > result.by_lr[1e-5]  # 1e-5 hardly moves the weights in 30 steps
    fit, final = validation_split(data, seed=0)
    torch.manual_seed(0)
    model = make()
    train_classifier(model, fit, 30, result.lr, 0)
    assert result.test_accuracy == accuracy(model, final.x_test, final.y_test)
