"""Issue 16, checkup and treat: a bad batch is refused clearly, the user's own errors come out as
they are, and odd outputs are read the way ``loss_fn`` says.

Each test here failed on the code before its fix (see the commit messages).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import gradmedic
from gradmedic.errors import USER_CODE, ConfigError, ModelError, UnsupportedError


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


@pytest.mark.parametrize(
    "targets", [None, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)], ids=["none", "float", "int"]
)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_an_empty_batch_is_refused_not_diagnosed(targets, reduction):
    loss_fn = None if reduction == "mean" else (lambda out, y=None: out.sum())
    with pytest.raises(ConfigError, match=r"batch is empty \(inputs \(0, 4\)\)"):
        gradmedic.checkup(_mlp(), torch.randn(0, 4), targets, loss_fn)


@pytest.mark.parametrize(
    ("targets", "says"),
    [
        (
            torch.randint(0, 3, (5,)),
            r"integer targets of shape \(5,\) do not fit an output of shape \(8, 3\)",
        ),
        (torch.tensor([0, 1, 2, 3, 0, 1, 2, 7]), r"class ids must be in \[0, 3\).*got 0 to 7"),
        (torch.tensor([0, -1, 2, 1, 0, 1, 2, 0]), r"class ids must be in \[0, 3\)"),
        ("0,1,2", "targets must be a tensor, got str"),
        ([0, 1, 2, 0, 1, 2, 0, 1], "targets must be a tensor, got list"),
    ],
    ids=["batch size", "too high", "negative", "a string", "a list"],
)
def test_targets_that_do_not_fit_are_a_config_error_naming_shapes(targets, says):
    model = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match=says):
        gradmedic.checkup(model, torch.randn(8, 4), targets)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_loss_fn_that_is_not_callable_is_a_config_error():
    with pytest.raises(ConfigError, match=r"loss_fn must be a function.*got str"):
        gradmedic.checkup(_mlp(), torch.randn(8, 4), torch.randint(0, 3, (8,)), "cross_entropy")


class _Broken(nn.Module):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layer(x)
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        KeyError("cache"),
        ZeroDivisionError(),
    ],
    ids=["out of memory", "a bug: KeyError", "a bug: ZeroDivisionError"],
)
def test_an_error_inside_forward_comes_out_unchanged_not_as_a_model_error(error):
    model = _Broken(error)
    with pytest.raises(type(error)) as info:
        gradmedic.checkup(model, torch.randn(8, 4))
    assert info.value is error and not isinstance(info.value, ModelError)
    assert getattr(info.value, USER_CODE) == "_Broken.forward"
    assert all(not m._forward_hooks for m in model.modules())


def test_a_raising_loss_fn_comes_out_unchanged_and_marked():
    def loss_fn(output, targets):
        raise ValueError("my loss is broken")

    with pytest.raises(ValueError, match="my loss is broken") as info:
        gradmedic.checkup(_mlp(), torch.randn(8, 4), torch.randint(0, 3, (8,)), loss_fn)
    assert getattr(info.value, USER_CODE) == "loss_fn loss_fn"


def test_inputs_forward_cannot_take_are_still_a_model_error_naming_the_signature():
    with pytest.raises(ModelError, match=r"forward\(input.*cannot take inputs \[\(8, 4\), \(8, 4\)\]"):
        gradmedic.checkup(_mlp(), (torch.randn(8, 4), torch.randn(8, 4)))


@dataclass
class _Output:
    logits: torch.Tensor
    hidden: torch.Tensor


class _DataclassModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> _Output:
        hidden = self.body(x)
        return _Output(self.head(hidden), hidden)


def _read_logits(output: _Output, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(output.logits, targets)


def test_a_dataclass_output_is_read_by_the_loss_fn_in_checkup_and_treat():
    model, x, y = _DataclassModel(), torch.randn(16, 4), torch.randint(0, 3, (16,))
    report = gradmedic.checkup(model, x, y, _read_logits)
    assert {layer.name for layer in report.layers} >= {"body.0", "head"}
    treatment = gradmedic.treat(model, x, y, _read_logits, allow=["init"], suggest_lr=False)
    assert isinstance(treatment.model(x), _Output)


@pytest.mark.parametrize(
    ("allow", "says"),
    [
        (5, "allow=5: give remedy families as a list"),
        ([], "allow=\\[\\]"),
        ("inti", "unknown remedy family 'inti'"),
        ([""], "unknown remedy family ''"),
    ],
    ids=["an int", "empty", "a misspelt name", "an empty name"],
)
def test_treat_refuses_a_bad_allow_before_touching_the_model(allow, says):
    model = _mlp()
    with pytest.raises(ConfigError, match=says):
        gradmedic.treat(model, torch.randn(8, 4), torch.randint(0, 3, (8,)), allow=allow)


def test_treat_takes_one_family_as_a_string():
    model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 3))
    treatment = gradmedic.treat(
        model, torch.randn(32, 8), torch.randint(0, 3, (32,)), allow="init", suggest_lr=False
    )
    assert {change.family for change in treatment.changes} <= {"init"}


@pytest.mark.parametrize(
    "call",
    [
        lambda model, x, y: gradmedic.find_lr(model, x, nn.functional.cross_entropy),
        lambda model, x, y: gradmedic.find_lr(model, (x, y), "cross_entropy"),
        lambda model, x, y: gradmedic.find_lr(model, [x, y], nn.functional.cross_entropy),
    ],
    ids=["a tensor as data", "a string as loss_fn", "a list of tensors as batches"],
)
def test_find_lr_says_how_to_call_it(call):
    with pytest.raises(ConfigError, match=r"find_lr\(model, \(inputs, targets\), loss_fn\)"):
        call(_mlp(), torch.randn(8, 4), torch.randint(0, 3, (8,)))


# -- models left exactly as found (item 8) -------------------------------------------------------


def _full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _qat_model() -> nn.Module:
    quantization = pytest.importorskip("torch.ao.quantization")
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).train()
    model.qconfig = quantization.get_default_qat_qconfig("fbgemm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return quantization.prepare_qat(model)


@pytest.mark.parametrize("call", ["checkup", "treat"])
def test_a_model_just_prepared_for_qat_is_left_exactly_as_found(call):
    model, x, y = _qat_model(), torch.randn(8, 4), torch.randint(0, 3, (8,))
    before = _full_state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if call == "checkup":
            gradmedic.checkup(model, x, y)
        else:
            gradmedic.treat(model, x, y, suggest_lr=False)
    assert _same(before, _full_state(model))  # the observers' buffers keep their shapes (0,) and (1,)


def test_a_lazy_model_is_refused_before_it_is_materialised():
    model = nn.Sequential(nn.LazyLinear(8), nn.Tanh(), nn.Linear(8, 3))
    with pytest.raises(UnsupportedError, match=r"'0.weight' is lazy \(nn.LazyLinear\).*forward pass"):
        gradmedic.checkup(model, torch.randn(8, 4))
    assert type(model[0]) is nn.LazyLinear and nn.parameter.is_lazy(model[0].weight)


@pytest.mark.parametrize(
    "wrap", [nn.utils.weight_norm, nn.utils.spectral_norm], ids=["weight_norm", "spectral_norm"]
)
def test_treat_copies_a_model_with_the_old_weight_and_spectral_norm(wrap):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # weight_norm's deprecation notice
        layers = [m for _ in range(10) for m in (wrap(nn.Linear(8, 8)), nn.Sigmoid())]
    model = nn.Sequential(*layers, nn.Linear(8, 3))
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    weight, before = model[0].weight, _full_state(model)
    treatment = gradmedic.treat(model, x, y, suggest_lr=False)
    assert treatment.model is not model and model[0].weight is weight and _same(before, _full_state(model))
    assert treatment.model(x).shape == (16, 3)


def test_treat_keeps_no_change_that_lowers_the_score_even_when_the_verdict_turns_healthy():
    from gradmedic.diagnosis.findings import Finding, Report, Severity
    from gradmedic.remedies.treatment import _better

    sick = Report([Finding("dead_units", Severity.WARNING, ["0"], "", "")], 0.9, "checkup")
    assert not _better(Report([], 0.43, "checkup"), sick)  # healthy now, but scored lower: undone
    assert _better(Report([], 0.9, "checkup"), sick) and _better(Report([], 0.95, "checkup"), sick)
    assert not _better(Report(sick.findings, 0.9, "checkup"), sick)  # nothing gained


def test_a_gradmedic_error_raised_during_forward_comes_out_as_it_is():
    model = _mlp()

    def hook(module, args, output):
        raise ConfigError("a size the hook refuses")  # shape words, yet not about the inputs

    model[0].register_forward_hook(hook)
    with pytest.raises(ConfigError, match="a size the hook refuses"):
        gradmedic.checkup(model, torch.randn(8, 4))
