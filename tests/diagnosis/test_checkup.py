"""The checkup end to end: it leaves the model as it found it, reads the backprop signal, raises
no false alarm on healthy models, and names each sick model's problem (the catalogue)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import gradmedic
import sick_models as sm
from gradmedic.diagnosis import rules
from gradmedic.diagnosis.evidence import flush_denormal_enabled
from gradmedic.diagnosis.findings import Finding, Kind, Report, Severity
from gradmedic.errors import ConfigError, ModelError
from gradmedic.running import SURROGATE_NOTE


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These models are tiny: one thread is faster than two and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(patient: sm.Patient) -> Report:
    return gradmedic.checkup(patient.model, patient.inputs, patient.targets, patient.loss_fn)


def alarms(report: Report) -> list[Finding]:
    return [f for f in report.findings if f.severity >= Severity.WARNING]


def finding(report: Report, kind: str) -> Finding:
    found = report.get(kind)
    assert found is not None, f"no {kind} in {report.kinds}\n{report.render()}"
    return found


# -- the model is left exactly as it was found -------------------------------------------------


class Mixed(nn.Module):
    """BatchNorm, Dropout and a head; used in eval mode with some submodules in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 16), nn.Tanh()
        )
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@dataclass
class RestorePoint:
    params: list[Tensor]
    grads: list[Tensor | None]
    grad_values: list[Tensor | None]
    modes: list[bool]
    buffers: dict[str, Tensor]
    rng: Tensor

    @classmethod
    def of(cls, model: nn.Module) -> RestorePoint:
        return cls(
            [p.detach().clone() for p in model.parameters()],
            [p.grad for p in model.parameters()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            [m.training for m in model.modules()],
            {name: b.clone() for name, b in model.named_buffers()},
            torch.get_rng_state(),
        )

    def assert_same(self, model: nn.Module) -> None:
        params = list(model.parameters())
        assert all(torch.equal(p, saved) for p, saved in zip(params, self.params))
        for p, grad, value in zip(params, self.grads, self.grad_values):
            assert p.grad is grad  # None stays None, an existing grad is the very same tensor
            assert value is None or torch.equal(p.grad, value)
        assert [m.training for m in model.modules()] == self.modes
        buffers = dict(model.named_buffers())
        assert buffers.keys() == self.buffers.keys()
        assert all(torch.equal(buffers[name], saved) for name, saved in self.buffers.items())
        assert torch.equal(torch.get_rng_state(), self.rng)
        for module in model.modules():
            assert not module._forward_hooks and not module._forward_pre_hooks
            assert not module._backward_hooks and not module._backward_pre_hooks
        assert torch._C._len_torch_function_stack() == 0  # the activation tracer is gone


def mixed_model() -> Mixed:
    model = Mixed()
    for _ in range(3):  # running statistics that are not the initial ones, num_batches_tracked = 3
        model(torch.randn(32, 8) + 2.0)
    model.eval()
    model.body[3].train()  # a submodule in train mode inside an eval-mode model
    model.head.weight.grad = torch.randn_like(model.head.weight)
    model.body[0].bias.grad = torch.randn_like(model.body[0].bias)
    return model


def test_checkup_leaves_the_model_as_it_found_it() -> None:
    model = mixed_model()
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    model.eval()
    expected = model(x)  # eval mode: deterministic
    model.body[3].train()
    before = RestorePoint.of(model)
    assert before.buffers["body.1.num_batches_tracked"].item() == 3
    report = gradmedic.checkup(model, x, y)
    before.assert_same(model)
    assert report.layers and all(math.isfinite(layer.signal_rms) for layer in report.layers)
    model.eval()
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize(
    "loss_fn",
    [
        pytest.param(lambda out, y: nn.functional.cross_entropy(out, y, reduction="none"), id="non-scalar"),
        pytest.param(lambda out, y: 1 / 0, id="raises"),
    ],
)
def test_checkup_leaves_the_model_as_it_found_it_when_it_fails(loss_fn: Callable) -> None:
    """The forward pass already ran (BatchNorm updated its statistics, Dropout drew numbers)."""
    model = mixed_model()
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    before = RestorePoint.of(model)
    with pytest.raises((ConfigError, ZeroDivisionError)):
        gradmedic.checkup(model, x, y, loss_fn)
    before.assert_same(model)


def test_checkup_takes_no_optimizer_step_and_one_forward() -> None:
    calls = []
    model, x = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)), torch.randn(16, 4)
    model[0].register_forward_hook(lambda *args: calls.append(1))
    before = RestorePoint.of(model)
    gradmedic.checkup(model, x)
    assert len(calls) == 1
    assert all(torch.equal(p, saved) for p, saved in zip(model.parameters(), before.params))
    assert all(p.grad is None for p in model.parameters())
    assert len(model[0]._forward_hooks) == 1


# -- what it backpropagates --------------------------------------------------------------------


def small_tanh() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def test_without_targets_the_surrogate_is_backpropagated_and_noted() -> None:
    model, x = small_tanh(), torch.randn(16, 6)
    report = gradmedic.checkup(model, x)
    assert SURROGATE_NOTE in report.notes
    assert "surrogate" in report.render()
    # 0.5 * mean_b sum y^2 has gradient y / B at the output: the head's signal is rms(y) / B
    output = model(x).detach()
    head = report.layers[-1]
    assert head.name == "2"
    assert head.signal_rms == pytest.approx(output.pow(2).mean().sqrt().item() / len(x), rel=1e-5)


def reference_grads(model: nn.Module, loss: Callable[[Tensor], Tensor], *args: object) -> dict[str, float]:
    """Plain autograd: the RMS of d loss / d output of every Linear (``signal:NAME``) and the norm
    of its weight gradient (``weight:NAME``), for ``loss(model(*args))``."""
    outputs: dict[str, Tensor] = {}
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        value = loss(model(*args))
    finally:
        for handle in handles:
            handle.remove()
    names = list(outputs)
    weights = [dict(model.named_modules())[name].weight for name in names]
    grads = torch.autograd.grad(value, [outputs[n] for n in names] + weights)
    signal = {n: g.double().pow(2).mean().sqrt().item() for n, g in zip(names, grads)}
    weight = {n: g.double().norm().item() for n, g in zip(names, grads[len(names) :])}
    return {**{f"signal:{n}": v for n, v in signal.items()}, **{f"weight:{n}": v for n, v in weight.items()}}


F = nn.functional
LOSSES = {
    "int-targets": (
        True,
        None,
        lambda out, y: F.cross_entropy(out, y),
        ["loss: cross-entropy (integer targets)"],
    ),
    "float-targets": (
        False,
        None,
        lambda out, y: F.mse_loss(out, y),
        ["loss: mean squared error (float targets)"],
    ),
    "loss_fn": (True, F.multi_margin_loss, F.multi_margin_loss, []),
    "loss_fn-without-targets": (None, lambda out: out.abs().mean(), lambda out, y: out.abs().mean(), []),
}


@pytest.mark.parametrize(
    ("integer", "loss_fn", "reference", "notes"), list(LOSSES.values()), ids=list(LOSSES)
)
def test_the_loss_is_the_one_asked_for(
    integer: bool | None, loss_fn: Callable | None, reference: Callable, notes: list[str]
) -> None:
    model, x = small_tanh(), torch.randn(16, 6)
    targets = None if integer is None else torch.randint(0, 3, (16,)) if integer else torch.randn(16, 3)
    report = gradmedic.checkup(model, x, targets, loss_fn)
    expected = reference_grads(model, lambda out: reference(out, targets), x)
    for layer in report.layers:
        assert layer.signal_rms == pytest.approx(expected[f"signal:{layer.name}"], rel=1e-5)
    assert report.notes == notes


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.head = nn.Linear(5, 8), nn.Linear(3, 8), nn.Linear(8, 2)

    def forward(self, x: Tensor, z: Tensor, scale: float = 1.0) -> Tensor:
        return self.head(torch.tanh(self.a(x) + self.b(z)) * scale)


@pytest.mark.parametrize("form", ["tuple", "list", "dict"])
def test_inputs_as_tuple_list_or_dict(form: str) -> None:
    model, x, z = TwoInputs(), torch.randn(16, 5), torch.randn(16, 3)
    inputs = {"tuple": (x, z, 2.0), "list": [x, z, 2.0], "dict": {"x": x, "z": z, "scale": 2.0}}[form]
    report = gradmedic.checkup(model, inputs)
    expected = reference_grads(model, lambda out: 0.5 * out.pow(2).sum(dim=1).mean(), x, z, 2.0)
    assert {layer.name for layer in report.layers} == {"a", "b", "head"}
    for layer in report.layers:
        assert layer.signal_rms == pytest.approx(expected[f"signal:{layer.name}"], rel=1e-5)


# -- clear errors ------------------------------------------------------------------------------


def test_a_model_that_is_not_a_module() -> None:
    with pytest.raises(ModelError, match=r"nn\.Module.*got function"):
        gradmedic.checkup(lambda x: x, torch.randn(4, 4))


def test_inputs_the_model_cannot_take_name_their_shapes() -> None:
    model = nn.Sequential(nn.Linear(32, 10))
    with pytest.raises(ModelError) as info:
        gradmedic.checkup(model, torch.randn(64, 7))
    message = str(info.value)
    assert "(64, 7)" in message and "Sequential" in message and "RuntimeError" in message
    assert "tuple of positional arguments" in message  # the fix
    with pytest.raises(ModelError, match=re.escape("[(64, 7), (64,)]")):
        gradmedic.checkup(model, (torch.randn(64, 7), torch.zeros(64)))
    with pytest.raises(ModelError, match=re.escape("{x: (2, 3)}")):
        gradmedic.checkup(model, {"x": torch.randn(2, 3)})


def test_a_non_scalar_loss() -> None:
    model = small_tanh()
    with pytest.raises(ConfigError, match=r"scalar.*\(16,\).*mean"):
        gradmedic.checkup(
            model, torch.randn(16, 6), torch.randn(16, 3), lambda out, y: (out - y).pow(2).sum(1)
        )


def test_float_targets_of_the_wrong_shape() -> None:
    with pytest.raises(ConfigError) as info:
        gradmedic.checkup(small_tanh(), torch.randn(16, 6), torch.randn(16))
    message = str(info.value)
    assert "(16,)" in message and "(16, 3)" in message and "loss_fn" in message


def test_a_loss_that_does_not_depend_on_the_parameters() -> None:
    with pytest.raises(ModelError, match="requires grad"):
        gradmedic.checkup(small_tanh(), torch.randn(16, 6), loss_fn=lambda out: out.detach().sum())


# -- vanishing is judged from the backprop signal ----------------------------------------------


def test_vanishing_is_judged_from_the_backprop_signal_not_the_weight_gradient() -> None:
    """DESIGN.md: a deep tanh net with PyTorch's default init has even weight gradients while its
    backprop signal has vanished. (Bias-free hidden layers: with the default biases the forward
    signal settles at the bias scale and the weight gradients vanish too, ~1e-11 first/last.)"""
    patient = sm.default_init_tanh_no_bias(50)
    names = sm.linears(patient.model)
    expected = reference_grads(
        patient.model, lambda out: nn.functional.cross_entropy(out, patient.targets), patient.inputs
    )
    first, last = names[0], names[-2]  # the first and the last hidden layer
    weight_ratio = expected[f"weight:{first}"] / expected[f"weight:{last}"]
    signal_ratio = expected[f"signal:{first}"] / expected[f"signal:{last}"]
    assert weight_ratio > 1e-2  # looks harmless
    assert signal_ratio < rules.VANISH_CRITICAL  # has vanished
    report = run(patient)
    vanishing = finding(report, "vanishing_gradient")
    assert vanishing.severity == Severity.CRITICAL
    assert first in vanishing.layers
    by_name = {layer.name: layer for layer in report.layers}  # the report shows both numbers
    for name in (first, last):
        assert by_name[name].signal_rms == pytest.approx(expected[f"signal:{name}"], rel=1e-4)
        assert by_name[name].weight_grad_norm == pytest.approx(expected[f"weight:{name}"], rel=1e-4)


def test_functional_activations_are_found() -> None:
    """``torch.sigmoid`` called in forward, over Linear layers in a ModuleList."""
    model = sm.FunctionalSigmoidNet(depth=20)
    report = gradmedic.checkup(model, torch.randn(64, sm.N_IN), sm.classes())
    vanishing = finding(report, "vanishing_gradient")
    assert vanishing.remedies[0].family == "activation"
    assert "sigmoid" in vanishing.cause
    activations = {layer.name: layer.activation for layer in report.layers}
    assert activations == {**{f"hidden.{i}": "sigmoid" for i in range(20)}, "head": None}


# -- no false alarm on healthy models ----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(sm.HEALTHY))
def test_no_false_alarm_on_healthy_models(name: str, seed: int) -> None:
    torch.manual_seed(seed)
    report = run(sm.HEALTHY[name]())
    assert report.healthy, report.render()
    assert alarms(report) == [], report.render()
    assert report.score > 0.5
    observed = [layer for layer in report.layers if math.isfinite(layer.signal_rms)]
    assert len(observed) >= 2  # the checkup did look at the layers


# -- the catalogue: one sick model per finding kind --------------------------------------------


def early(model: nn.Module, layers: list[str], report: Report) -> None:
    """``layers`` are the lowest layers that receive a signal: a contiguous run of Linear layers
    from the first observed one, ending below the last hidden layer."""
    order = sm.linears(model)
    observed = [layer.name for layer in report.layers if layer.signal_rms > 0 and layer.name in order]
    assert layers, "no layer named"
    start = order.index(observed[0])
    assert layers == order[start : start + len(layers)]
    assert order[-2] not in layers and order[-1] not in layers


def hidden(model: nn.Module, layers: list[str], report: Report) -> None:
    """Every Linear layer followed by an activation: all but the head."""
    assert layers == sm.linears(model)[:-1]


def every_linear(model: nn.Module, layers: list[str], report: Report) -> None:
    assert layers == sm.linears(model)


def named(*expected: str) -> Callable[[nn.Module, list[str], Report], None]:
    def check(model: nn.Module, layers: list[str], report: Report) -> None:
        assert layers == list(expected)

    return check


def dead_middle(model: nn.Module, layers: list[str], report: Report) -> None:
    assert "net.2" in layers and "net.0" not in layers
    dead = {layer.name: layer.dead for layer in report.layers}
    assert dead["net.2"] == 1.0 and dead["net.0"] < rules.DEAD_WARNING


@dataclass
class Case:
    kind: str
    build: Callable[[], sm.Patient]
    layers: Callable[[nn.Module, list[str], Report], None]
    family: str
    name_has: str = ""


CATALOGUE = {
    "vanishing-sigmoid-20": Case("vanishing_gradient", lambda: sm.deep_sigmoid(20), early, "activation"),
    "vanishing-tanh-100": Case("vanishing_gradient", lambda: sm.deep_tanh(100), early, "init"),
    "exploding-relu-normal": Case("exploding_gradient", sm.exploding_relu, early, "clipping"),
    "saturated-sigmoid": Case("saturated_activations", sm.saturated_sigmoid, named("0"), "activation"),
    "saturated-tanh": Case("saturated_activations", sm.saturated_tanh, named("0", "2", "4"), "activation"),
    "dead-relu": Case("dead_units", sm.dead_relu, dead_middle, "activation", "Leaky"),
    "init-xavier-relu-40": Case("init_mismatch", lambda: sm.xavier_relu(40), hidden, "init", "Kaiming"),
    "missing-normalization": Case("missing_normalization", sm.deep_sigmoid, every_linear, "normalization"),
    "too-deep": Case("too_deep", sm.deep_sigmoid, early, "shallower"),
    "non-finite": Case("non_finite", sm.non_finite_model, named("head"), "optimizer", "learning rate"),
}


@pytest.mark.parametrize("case", list(CATALOGUE.values()), ids=list(CATALOGUE))
def test_catalogue(case: Case) -> None:
    patient = case.build()
    report = run(patient)
    found = finding(report, case.kind)
    assert found.severity >= Severity.WARNING
    assert not report.healthy
    case.layers(patient.model, found.layers, report)
    first = found.remedies[0]
    assert first.family == case.family, [r.family for r in found.remedies]
    assert case.name_has.lower() in first.name.lower()
    assert first.code and first.why


def test_init_mismatch_names_he_initialisation() -> None:
    report = run(sm.xavier_relu(40))
    remedy = finding(report, "init_mismatch").remedies[0]
    assert "He" in remedy.name and "kaiming" in remedy.code and "relu" in remedy.code
    assert finding(report, "init_mismatch").numbers["gain"] == pytest.approx(1.0, abs=0.05)  # Xavier


def test_too_deep_suggests_the_depth_the_signal_reaches() -> None:
    report = run(sm.deep_sigmoid(20))
    too_deep = finding(report, "too_deep")
    reach = int(too_deep.numbers["reach"])
    assert 2 <= reach <= too_deep.numbers["depth"] / 2
    assert f"about {reach} layers" in too_deep.remedies[0].name
    assert too_deep.layers == finding(report, "vanishing_gradient").layers


@pytest.mark.parametrize(
    "build", [lambda: sm.deep_sigmoid(20), lambda: sm.deep_tanh(100)], ids=["sig20", "tanh100"]
)
def test_vanishing_names_the_very_first_layer(build: Callable[[], sm.Patient]) -> None:
    patient = build()
    report = run(patient)
    first = sm.linears(patient.model)[0]
    assert report.layers[0].name == first and report.layers[0].signal_rms > 0
    assert finding(report, "vanishing_gradient").layers[0] == first


def test_the_catalogue_covers_every_kind_the_rules_report() -> None:
    source = Path(rules.__file__).read_text(encoding="utf-8")
    reported = {Kind[name].value for name in re.findall(r"Finding\(\s*Kind\.(\w+)", source)}
    covered = {case.kind for case in CATALOGUE.values()} | {
        "stalled_layers",
        "loss_plateau",
        "denormal_slowdown",
        "precision_underflow",  # needs a mixed-precision run: tests/monitor/test_amp.py
        "vanishing_through_time",  # recurrent layers: tests/diagnosis/test_through_time.py
        "exploding_through_time",
        "memory_horizon",
    }
    assert reported, "no Finding( in rules.py: the pattern needs updating"
    assert reported <= covered


# -- kinds that need a training run: stalled layers, loss plateau --------------------------------


def train(model: nn.Module, steps: int, lr: float = 0.1) -> gradmedic.Monitor:
    """SGD on fresh batches of a task a healthy net learns: the class is argmax of 10 inputs."""
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with gradmedic.watch(model, optimizer) as monitor:
        for _ in range(steps):
            x = torch.randn(sm.BATCH, sm.N_IN, generator=generator)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), x[:, : sm.N_OUT].argmax(dim=1))
            loss.backward()
            monitor.step(loss)
            optimizer.step()
    return monitor


@pytest.fixture(scope="module")
def deep_sigmoid_run() -> tuple[nn.Module, Report]:
    torch.manual_seed(0)
    model = sm.deep_sigmoid(20).model
    monitor = train(model, rules.PLATEAU_STEPS + 10)
    return model, monitor.diagnose()


def test_monitored_run_finds_stalled_layers(deep_sigmoid_run: tuple[nn.Module, Report]) -> None:
    model, report = deep_sigmoid_run
    assert report.source == "monitor"
    stalled = finding(report, "stalled_layers")
    order = sm.linears(model)
    assert stalled.layers == order[: len(stalled.layers)]  # the lowest layers, from the first
    assert order[-1] not in stalled.layers
    assert stalled.numbers["top"] > rules.STALLED_ABSOLUTE / rules.STALLED_RELATIVE
    assert stalled.remedies[0].family == "activation"  # sigmoid: swap it


def test_monitored_run_finds_a_loss_plateau(deep_sigmoid_run: tuple[nn.Module, Report]) -> None:
    _, report = deep_sigmoid_run
    plateau = finding(report, "loss_plateau")
    assert plateau.numbers["late"] > plateau.numbers["early"] * (1 - rules.PLATEAU_GAIN)
    assert plateau.remedies[0].family == "optimizer"
    assert "vanishing_gradient" in report.kinds


def test_the_same_task_trains_a_healthy_net_without_alarm() -> None:
    """The plateau is the model's fault, not the task's: a shallow ReLU net learns it."""
    torch.manual_seed(0)
    model = sm.stack(2, nn.ReLU, width=64)
    report = train(model, rules.PLATEAU_STEPS + 10).diagnose()
    assert alarms(report) == [], report.render()
    assert report.healthy


@pytest.mark.parametrize("with_norm", [False, True], ids=["plain", "batchnorm"])
def test_diagnose_a_history_without_the_model(with_norm: bool, tmp_path: Path) -> None:
    """A History alone (saved, loaded): the signal rules work, the layer types tell whether the
    stack is normalised, and what needs the weights (init_mismatch) stays quiet."""
    torch.manual_seed(0)
    layers = list(sm.stack(20, nn.Sigmoid))
    if with_norm:  # a BatchNorm under the head: the lower stack still vanishes
        layers.insert(-1, nn.BatchNorm1d(32))
    model = nn.Sequential(*layers)
    monitor = train(model, 12)
    loaded = gradmedic.History.load(monitor.history.save(tmp_path / "run.jsonl"))
    alone, full = gradmedic.diagnose(loaded), gradmedic.diagnose(monitor.history, model)
    assert "vanishing_gradient" in alone.kinds
    assert ("missing_normalization" in alone.kinds) == (not with_norm)
    assert ("missing_normalization" in full.kinds) == (not with_norm)
    assert "init_mismatch" in full.kinds and "init_mismatch" not in alone.kinds
    assert [k for k in full.kinds if k != "init_mismatch"] == alone.kinds


# -- denormal slowdown --------------------------------------------------------------------------


@pytest.fixture
def denormals_kept() -> Iterator[None]:
    """Subnormal floats kept (the CPU default); the session's flush setting comes back after."""
    previous = flush_denormal_enabled()
    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(previous)


def test_denormal_slowdown_on_cpu(denormals_kept: None) -> None:
    report = run(sm.deep_sigmoid(60))
    slow = finding(report, "denormal_slowdown")
    assert slow.severity == Severity.WARNING
    assert slow.numbers["subnormal_fraction"] >= rules.SUBNORMAL_WARNING
    assert "set_flush_denormal(True)" in slow.cause
    assert slow.remedies[0].family == "activation"  # and treat the vanishing sigmoid stack
    assert "vanishing_gradient" in report.kinds


def test_no_denormal_finding_when_they_are_flushed() -> None:
    previous = flush_denormal_enabled()
    torch.set_flush_denormal(True)
    try:
        report = run(sm.deep_sigmoid(60))
    finally:
        torch.set_flush_denormal(previous)
    assert "denormal_slowdown" not in report.kinds
    assert "vanishing_gradient" in report.kinds
