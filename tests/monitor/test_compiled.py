"""gradmedic under torch.compile: recorded steps run eagerly through the hooks (their numbers
against plain autograd), unrecorded steps run the one compiled graph, untouched, and training
gives the same losses and weights as the compiled model without gradmedic."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradmedic
from gradmedic.errors import UnsupportedError
from gradmedic.hooks import count_module_hooks
from gradmedic.monitor import compiled
from models import Case, assert_matches_reference, reference

pytestmark = pytest.mark.skipif(
    not compiled.available(), reason="torch.compiler.set_stance needs torch >= 2.6"
)

ORDERS = ("watch+compile", "compile+watch", "model.compile")
STEPS = 6
#: Even steps recorded, with every statistic: the odd ones run the compiled graph.
EVERY_OTHER = {"gradients_every": 2, "activations_every": 2, "updates_every": 2}


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> None:
    import torch._dynamo

    torch._dynamo.reset()


class Net(nn.Module):
    """Three Linear layers with Tanh between them, its forward written here (so that
    ``model.compile()`` compiles it: dynamo does not compile a bare ``nn.Sequential`` at top level)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act1 = nn.Linear(5, 6), nn.Tanh()
        self.fc2, self.act2 = nn.Linear(6, 6), nn.Tanh()
        self.fc3 = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))


def net_case() -> Case:
    torch.manual_seed(0)
    model, x, target = Net(), torch.randn(8, 5), torch.randn(8, 3)
    return Case(model, (x,), lambda out: (out - target).pow(2).mean())


class CountingBackend:
    """``aot_eager`` (or ``backend``), counting the graphs it compiles and each graph run."""

    def __init__(self, backend: str = "aot_eager") -> None:
        import torch._dynamo

        self.inner = torch._dynamo.lookup_backend(backend)
        self.compiled = 0
        self.runs = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable[..., Any]:
        self.compiled += 1
        fn = self.inner(graph, example_inputs)

        def run(*args: Any) -> Any:
            self.runs += 1
            return fn(*args)

        return run


def compile_as(model: nn.Module, order: str, backend: Any) -> Callable[..., Tensor]:
    if order == "model.compile":
        model.compile(backend=backend)
        return model
    return torch.compile(model, backend=backend)  # type: ignore[return-value]


def train(case: Case, order: str | None, watched: bool, backend: Any, **options: Any) -> dict[str, Any]:
    """``STEPS`` SGD steps on ``case`` (compiled the ``order`` way, or eager when None); what each
    step ran and the weights before each step."""
    model = case.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    monitor = None
    if watched and order in (None, "watch+compile"):
        monitor = gradmedic.watch(model, optimizer, **options)
    forward = compile_as(model, order, backend) if order is not None else model
    if watched and monitor is None:
        monitor = gradmedic.watch(forward, optimizer, **options)  # type: ignore[arg-type]
    out: dict[str, Any] = {"losses": [], "runs": [], "hooks": [], "weights": []}
    for _ in range(STEPS):
        out["weights"].append({k: v.clone() for k, v in model.state_dict().items()})
        out["hooks"].append(count_module_hooks(model))
        runs = getattr(backend, "runs", 0)
        optimizer.zero_grad()
        loss = case.loss_fn(forward(*case.inputs))
        loss.backward()
        if monitor is not None:
            monitor.step(loss)
        optimizer.step()
        out["losses"].append(loss.item())
        out["runs"].append(getattr(backend, "runs", 0) - runs)
    if monitor is not None:
        monitor.detach()
        out["history"] = monitor.history
    out["final"] = [p.detach().clone() for p in model.parameters()]
    return out


@pytest.mark.parametrize("order", ORDERS)
def test_unrecorded_steps_run_the_one_compiled_graph_and_recorded_steps_run_eagerly(order: str) -> None:
    backend = CountingBackend()
    run = train(net_case(), order, True, backend, **EVERY_OTHER)
    assert backend.compiled == 1  # traced once, without hooks: no graph break, no recompilation
    assert run["runs"] == [0, 1] * (STEPS // 2)  # recorded steps ran the model's own code
    assert run["hooks"] == [5, 0] * (STEPS // 2)  # hooks on the recorded steps only
    assert run["history"].array("signal_norm")[0].tolist() == [0, 2, 4]


@pytest.mark.parametrize("order", ORDERS)
def test_training_under_compile_is_bit_identical_with_and_without_gradmedic(order: str) -> None:
    plain = train(net_case(), order, False, CountingBackend())
    torch._dynamo.reset()
    watched = train(net_case(), order, True, CountingBackend(), **EVERY_OTHER)
    assert watched["losses"] == plain["losses"]
    assert all(torch.equal(a, b) for a, b in zip(watched["final"], plain["final"]))


@pytest.mark.parametrize("order", ORDERS)
def test_every_statistic_under_compile_equals_plain_autograd(order: str) -> None:
    """Each recorded step, against plain autograd on the weights the model had at that step."""
    run = train(net_case(), order, True, CountingBackend(), **EVERY_OTHER)
    history = run["history"]
    for row, step in enumerate(history.array("signal_norm")[0]):
        case = net_case()
        case.model.load_state_dict(run["weights"][step])
        assert_matches_reference(history, reference(case), row=row)


def test_statistics_under_compile_equal_the_eager_runs() -> None:
    compiled_run = train(net_case(), "watch+compile", True, CountingBackend(), **EVERY_OTHER)
    eager_run = train(net_case(), None, True, None, **EVERY_OTHER)
    for metric in eager_run["history"].metrics:
        steps, values = compiled_run["history"].array(metric)
        eager_steps, eager_values = eager_run["history"].array(metric)
        np.testing.assert_array_equal(steps, eager_steps, err_msg=metric)
        np.testing.assert_allclose(values, eager_values, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=metric)


def _compiles_now(fn: Callable[[Tensor], Tensor], backend: CountingBackend) -> bool:
    """Whether calling ``fn`` now runs compiled code (the backend compiles or runs a graph)."""
    before = backend.compiled + backend.runs
    fn(torch.ones(2))
    return backend.compiled + backend.runs > before


def test_the_stance_is_given_back_when_the_step_is_collected_and_on_detach() -> None:
    backend = CountingBackend()
    double = torch.compile(lambda x: 2 * x, backend=backend)
    case = net_case()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.1)
    seen_in_step: list[bool] = []
    with gradmedic.watch(case.model, optimizer, gradients_every=1) as monitor:
        # registered after the monitor's own pre-hook, so it runs after it, as the optimizer's step does
        optimizer.register_step_pre_hook(lambda *_: seen_in_step.append(_compiles_now(double, backend)))
        assert not _compiles_now(double, backend)  # a recorded step is open: eager
        case.loss().backward()
        optimizer.step()  # collected before the optimizer's own step runs
        assert seen_in_step == [True]
        assert monitor.step_index == 1 and not _compiles_now(double, backend)
    assert _compiles_now(double, backend)


def test_two_monitors_share_the_stance_until_the_last_lets_go() -> None:
    backend = CountingBackend()
    double = torch.compile(lambda x: 2 * x, backend=backend)
    first = gradmedic.watch(nn.Linear(2, 2))
    second = gradmedic.watch(nn.Linear(2, 2))
    first.detach()
    assert not _compiles_now(double, backend)
    second.detach()
    assert _compiles_now(double, backend)


def test_a_monitor_dropped_without_detach_gives_the_stance_back() -> None:
    backend = CountingBackend()
    double = torch.compile(lambda x: 2 * x, backend=backend)
    model = nn.Linear(2, 2)
    monitor = gradmedic.watch(model)  # the model's hooks keep it alive: both are dropped
    assert not _compiles_now(double, backend)
    del monitor, model
    gc.collect()
    assert _compiles_now(double, backend)


def test_an_error_in_the_step_leaves_no_hook_and_the_stance_as_found() -> None:
    backend = CountingBackend()
    case = net_case()
    forward = torch.compile(case.model, backend=backend)
    with pytest.raises(ValueError, match="boom"), gradmedic.watch(forward, gradients_every=1):
        forward(*case.inputs)
        raise ValueError("boom")
    assert count_module_hooks(case.model) == 0
    forward(*case.inputs)
    assert backend.runs == 1


def test_watching_a_compiled_module_watches_the_module_it_wraps() -> None:
    case = net_case()
    forward = torch.compile(case.model, backend=CountingBackend())
    with gradmedic.watch(forward) as monitor:
        assert count_module_hooks(case.model) == 5
        assert monitor.history.meta["model"] == "Net"


def test_without_set_stance_compiled_code_is_refused_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch < 2.6: the compiled graph runs without the hooks; refused, never missing numbers."""
    monkeypatch.setattr(compiled, "_set_stance", None)
    case = net_case()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.1)
    forward = torch.compile(case.model, backend=CountingBackend())
    with (
        pytest.raises(UnsupportedError, match=r"torch\.compile|compiled code"),
        gradmedic.watch(case.model, optimizer, gradients_every=1),
    ):
        case.loss_fn(forward(*case.inputs)).backward()
        optimizer.step()
    assert count_module_hooks(case.model) == 0
