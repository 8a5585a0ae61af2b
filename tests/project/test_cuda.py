"""The monitor on a CUDA device: its statistics against plain autograd, no host synchronisation
while it trains (recorded steps included), one non-blocking copy per flush, and the values read
back after the flush. Every test is skipped on a machine without CUDA."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradmedic
from gradmedic import stats
from models import Case, RecurrentNet, TinyTransformer, assert_matches_reference, monitored_step, reference

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device: these tests check the monitor's GPU paths"
)

SYNC_WARNING = "called a synchronizing CUDA operation"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def exact_cuda() -> Iterator[None]:
    """No TF32 in matmuls and convolutions (the reference runs the same kernels, but exactly is simpler)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        torch.cuda.set_sync_debug_mode("default")


# -- models on the GPU -----------------------------------------------------------------------------


def _mse_to(target: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda out: (out - target).pow(2).mean()


def _mlp(act: type[nn.Module] = nn.Tanh) -> Case:
    model = nn.Sequential(nn.Linear(5, 16), act(), nn.Linear(16, 16), act(), nn.Linear(16, 3)).cuda()
    with torch.no_grad():
        model[0].weight.mul_(4.0)  # some saturated / dead units, so the fractions are not trivial
    x, y = torch.randn(32, 5, device="cuda"), torch.randn(32, 3, device="cuda")
    return Case(model, (x,), _mse_to(y))


def _relu_inplace() -> Case:
    """Each Linear's output is overwritten by the in-place ReLU after the monitor's hook saw it."""
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(inplace=True), nn.Linear(16, 3)).cuda()
    x, y = torch.randn(32, 5, device="cuda") * 3, torch.randn(32, 3, device="cuda")
    return Case(model, (x,), _mse_to(y))


def _cnn() -> Case:
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2), nn.BatchNorm2d(4), nn.Tanh(),
        nn.Flatten(), nn.Linear(16, 3),
    ).cuda()  # fmt: skip
    target = torch.randint(0, 3, (6,), device="cuda")
    x = torch.randn(6, 2, 6, 6, device="cuda")
    return Case(model, (x,), lambda out: nn.functional.cross_entropy(out, target))


def _recurrent(kind: str) -> Case:
    model = RecurrentNet(kind, batch_first=True, use_state=True).cuda()
    return Case(model, (torch.randn(4, 6, 3, device="cuda"),), _mse_to(torch.randn(4, 2, device="cuda")))


def _transformer() -> Case:
    model = TinyTransformer().cuda()
    return Case(model, (torch.randn(3, 5, 4, device="cuda"),), _mse_to(torch.randn(3, 2, device="cuda")))


CASES: dict[str, Callable[[], Case]] = {
    "mlp_tanh": _mlp,
    "mlp_relu": lambda: _mlp(nn.ReLU),
    "mlp_relu_inplace": _relu_inplace,
    "cnn_bn": _cnn,
    "lstm": lambda: _recurrent("LSTM"),
    "gru": lambda: _recurrent("GRU"),
    "transformer": _transformer,
}


# -- 1. every statistic equals plain autograd ------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_every_statistic_equals_plain_autograd_on_cuda(name):
    case = CASES[name]()
    expected = reference(case)
    history = monitored_step(case)
    assert_matches_reference(history, expected)
    assert history.non_finite == []


def test_vanishing_values_are_accumulated_in_float64_on_cuda():
    """The squares of 1e-20 underflow float32: on the GPU they are summed in float64 in the kernel."""
    tiny = torch.full((64, 32), 1e-20, device="cuda")
    exact = 64 * 32 * 1e-40
    torch.cuda.set_sync_debug_mode("error")
    single, several = stats.squared_norm(tiny), stats.squared_norms([tiny, torch.ones(3, device="cuda")])
    torch.cuda.set_sync_debug_mode("default")
    assert single.is_cuda and single.dtype == torch.float64
    assert single.item() == pytest.approx(exact, rel=1e-6)
    assert several.tolist() == pytest.approx([exact, 3.0], rel=1e-6)


def test_activation_statistics_on_cuda_equal_the_cpu_ones():
    torch.manual_seed(0)
    values = torch.tanh(torch.randn(64, 8, 5, 5) * 3.0) + 0.25
    for module in (nn.Tanh(), nn.ReLU(), nn.Hardtanh(), None):
        kind = stats.activation_kind(module)
        on_gpu = stats.activation_stats(values.cuda(), kind)
        on_cpu = stats.activation_stats(values, kind)
        assert on_gpu.is_cuda
        np.testing.assert_allclose(on_gpu.cpu().numpy(), on_cpu.numpy(), rtol=1e-5)


# -- 2. no host synchronisation while training -----------------------------------------------


def _train(
    case: Case, optimizer: torch.optim.Optimizer, steps: int, monitor: gradmedic.Monitor | None
) -> list[Tensor]:
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = case.loss()
        loss.backward()
        if monitor is not None:
            monitor.step(loss)  # a device tensor: recorded without .item()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def _without_sync(run: Callable[[], T]) -> T:
    """``run()`` with every synchronising CUDA call raising an error."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        return run()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("name", ["mlp_tanh", "cnn_bn", "lstm", "transformer"])
def test_default_training_loop_never_synchronises(name):
    """Default options, 12 steps: the signal and weight gradients on every step (the dense start
    of the default schedule), the activation statistics, update ratios and (LSTM) statistics
    through time on step 0, without flush."""
    case = CASES[name]()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.01)
    _train(case, optimizer, 2, None)  # CUDA, cuBLAS and cuDNN set up outside the checked region
    try:
        _without_sync(lambda: _train(case, optimizer, 2, None))
    except RuntimeError as error:  # pragma: no cover - depends on the torch build
        pytest.skip(f"the plain training step of {name} synchronises in this torch build: {error}")
    monitor = gradmedic.watch(case.model, optimizer)
    assert monitor._flush_every > 12
    losses = _without_sync(lambda: _train(case, optimizer, 12, monitor))
    assert len(monitor._pending) == 12  # every value still on the device
    assert all(v.is_cuda for r in monitor._pending for k, v in r.values.items() if k != "time_length")
    monitor.detach()
    history = monitor.history
    assert history.array("signal_norm")[0].tolist() == list(range(12))
    assert history.array("act_mean")[0].tolist() == [0]
    assert history.array("update_ratio")[0].tolist() == [0]
    np.testing.assert_allclose(history.array("loss")[1][:, 0], [loss.item() for loss in losses], rtol=1e-6)
    if name == "lstm":
        assert history.array("time_signal")[0].tolist() == [0]


def test_every_statistic_every_step_never_synchronises():
    case = CASES["lstm"]()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.01)
    _train(case, optimizer, 2, None)
    monitor = gradmedic.watch(case.model, optimizer, **gradmedic.monitor.ALL_STATS)
    _without_sync(lambda: _train(case, optimizer, 4, monitor))
    monitor.detach()
    assert monitor.history.array("time_signal")[0].tolist() == [0, 1, 2, 3]


# -- 3. one non-blocking copy per flush, and the values it brings back -----------------------


def _sync_warnings(run: Callable[[], object]) -> int:
    """How many synchronising CUDA calls ``run`` makes (the debug mode warns at each one)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum(SYNC_WARNING in str(w.message) for w in caught)


def test_flush_copies_to_the_host_without_blocking_and_synchronises_once():
    """Without non-blocking copies, each of the ~10 metrics of each of the 8 steps would block."""
    case = CASES["mlp_tanh"]()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.01)
    monitor = gradmedic.watch(case.model, optimizer, **gradmedic.monitor.ALL_STATS, flush_every=1000)
    _train(case, optimizer, 8, monitor)
    assert len(monitor._pending) == 8
    assert _sync_warnings(monitor.flush) <= 1
    assert monitor._pending == [] and len(monitor._history.array("signal_norm")[0]) == 8
    assert _sync_warnings(lambda: monitor.history) == 0  # nothing left to copy
    monitor.detach()


def test_history_read_after_flush_holds_the_values_of_each_step():
    case = CASES["mlp_tanh"]()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.05)
    monitor = gradmedic.watch(case.model, optimizer, gradients_every=2, flush_every=3)
    names = [name for name, _ in case.model.named_parameters()]
    expected_grads, losses = [], []
    for step in range(7):
        optimizer.zero_grad(set_to_none=True)
        loss = case.loss()
        loss.backward()
        monitor.step(loss)
        if step % 2 == 0:
            expected_grads.append([p.grad.double().norm().item() for p in case.model.parameters()])
            losses.append(loss.item())
        optimizer.step()
    history = monitor.history  # copies step 6; steps 0, 2 and 4 were flushed as the third closed
    steps, grads = history.array("param_grad_norm")
    assert steps.tolist() == [0, 2, 4, 6] and history.params == names
    np.testing.assert_allclose(grads, expected_grads, rtol=1e-5)
    np.testing.assert_allclose(history.array("loss")[1][:, 0], losses, rtol=1e-6)
    layer_sums = history.array("weight_grad_norm")[1][:, [0, 2, 4]] ** 2
    np.testing.assert_allclose(layer_sums, np.array(expected_grads) ** 2 @ _pairs(len(names)), rtol=1e-5)
    assert np.isfinite(history.array("signal_norm")[1][:, [0, 2, 4]]).all()
    monitor.detach()


def _pairs(n_params: int) -> np.ndarray:
    """Sums weight and bias of each Linear: parameters (2k, 2k + 1) go to column k."""
    return np.kron(np.eye(n_params // 2), np.ones((2, 1)))
