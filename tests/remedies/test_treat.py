"""``treat``: it heals the classic sick networks (the project brief's), works on a copy unless told
otherwise, keeps what the caller feeds the model and gets back, and undoes a remedy that does not help."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import gradmedic.remedies.treatment as treat_module
import sick_models as sm
from gradmedic import treat
from gradmedic.diagnosis.findings import Report
from gradmedic.errors import ConfigError
from gradmedic.remedies import Change, Treatment
from gradmedic.remedies.treatment import output_shapes


def state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def architecture(model: nn.Module) -> list[tuple[str, str]]:
    modules = [(name, type(m).__name__) for name, m in model.named_modules()]
    params = [(name, str(tuple(p.shape))) for name, p in model.named_parameters()]
    return modules + params


def undone(treatment: Treatment) -> dict[str, str]:
    return {c.family: c.action for c in treatment.changes if c.skipped and c.action.startswith("undone")}


def run(patient: sm.Patient, **options: object) -> Treatment:
    options.setdefault("suggest_lr", False)
    return treat(patient.model, patient.inputs, patient.targets, patient.loss_fn, **options)  # type: ignore[arg-type]


# -- the classic sick networks get healthy -------------------------------------------------------


def test_init_alone_heals_a_60_layer_tanh_mlp_and_keeps_the_architecture() -> None:
    patient = sm.stack_patient(60, nn.Tanh)
    original, shape = state(patient.model), architecture(patient.model)
    treatment = run(patient, allow=["init"])
    assert not treatment.before.healthy and "vanishing_gradient" in treatment.before.kinds
    assert treatment.after.healthy, treatment.after.render()
    assert treatment.after.score > treatment.before.score
    assert architecture(treatment.model) == shape
    assert {c.family for c in treatment.changes} == {"init"}
    assert len(treatment.applied) == 61
    assert treatment.model is not patient.model
    assert same_state(state(patient.model), original)  # the original is untouched
    assert not same_state(state(treatment.model), original)
    assert treatment.rounds == [
        f"init: score {treatment.before.progress_score:.2f} -> {treatment.after.progress_score:.2f}"
    ]


def test_all_families_heal_a_20_layer_sigmoid_mlp() -> None:
    patient = sm.deep_sigmoid(20)
    treatment = run(patient)
    assert not treatment.before.healthy
    assert treatment.after.healthy, treatment.after.render()
    assert treatment.applied
    assert output_shapes(treatment.model, patient.inputs) == [(sm.BATCH, sm.N_OUT)]
    assert isinstance(treatment.before, Report) and isinstance(treatment.after, Report)
    assert all(isinstance(c, Change) for c in treatment.changes)
    name, why = treatment.optimizer
    assert name == "adam" and why
    assert treatment.lr is None and treatment.lr_curve is None  # suggest_lr=False
    summary = treatment.summary()
    assert "before: score 0.00, NOT healthy" in summary and "healthy" in summary.splitlines()[1]


def test_init_alone_heals_a_20_layer_sigmoid_mlp_and_keeps_its_sigmoids() -> None:
    """Orthogonal weights, then each unit centred and scaled on the batch: every sigmoid starts
    around 0, where it is steepest, and the least invasive family is enough."""
    patient = sm.deep_sigmoid(20)
    shape = architecture(patient.model)
    treatment = run(patient)
    assert not treatment.before.healthy and treatment.after.healthy, treatment.after.render()
    assert treatment.rounds == [
        f"init: score {treatment.before.progress_score:.2f} -> {treatment.after.progress_score:.2f}"
    ]
    assert architecture(treatment.model) == shape
    assert sum("each unit centred" in c.action for c in treatment.applied) == 20


def test_suggested_learning_rate_comes_from_the_range_test() -> None:
    patient = sm.stack_patient(8, nn.Sigmoid, width=16)
    treatment = run(patient, suggest_lr=True)
    assert treatment.lr_curve is not None and treatment.lr == treatment.lr_curve.suggestion
    assert treatment.lr_curve.lrs[0] <= treatment.lr <= treatment.lr_curve.lrs[-1]
    assert f"lr {treatment.lr:.2g}" in treatment.summary()


def test_in_place_changes_the_same_object() -> None:
    patient = sm.stack_patient(30, nn.Tanh)
    model = patient.model
    original = state(model)
    treatment = run(patient, allow=["init"], in_place=True)
    assert treatment.model is model
    assert treatment.after.healthy
    assert not same_state(state(model), original)


def test_in_place_keeps_the_parameter_objects_an_optimizer_holds() -> None:
    """An undone structural remedy puts back the very parameter objects (values restored in
    place): an optimizer built before ``treat`` still trains the treated model."""
    model = Indexed()
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    params = list(model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    treatment = treat(model, x, y, allow=["residual"], in_place=True, suggest_lr=False)
    assert "residual" in undone(treatment) and treatment.model is model
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    before = state(model)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert not same_state(state(model), before)


def test_undo_keeps_hook_registries_so_handles_still_remove_their_hooks() -> None:
    patient = sm.stack_patient(20, nn.Sigmoid, bias=False)
    seen: list[int] = []
    handle = patient.model[0].register_forward_hook(lambda m, i, o: seen.append(1))
    treatment = run(patient, allow=["init"], in_place=True)
    assert "init" in undone(treatment), treatment.summary()
    handle.remove()
    seen.clear()
    patient.model(patient.inputs)
    assert seen == []


def test_a_healthy_model_is_left_alone() -> None:
    patient = sm.orthogonal_tanh(20)
    original = state(patient.model)
    treatment = run(patient)
    assert treatment.before.healthy and treatment.after.healthy
    assert treatment.changes == [] and treatment.rounds == []
    assert same_state(state(treatment.model), original)


def test_unknown_family_is_a_config_error() -> None:
    patient = sm.deep_sigmoid(3)
    with pytest.raises(ConfigError, match="unknown remedy family 'dropout'"):
        run(patient, allow=["init", "dropout"])


# -- the treated model takes the same inputs and returns outputs of the same shapes ---------------


class LSTMDeepHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 32, batch_first=True)
        self.head = sm.stack(15, nn.Sigmoid, width=32, n_in=32, n_out=10)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class RNNWithState(nn.Module):
    """Returns a tuple: the logits of every step and the RNN's final state."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(8, 32, batch_first=True)
        self.head = sm.stack(15, nn.Tanh, width=32, n_in=32, n_out=10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out, h = self.rnn(x)
        return self.head(out), h


class PlainCNN(nn.Module):
    def __init__(self, depth: int = 12) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1), nn.Sigmoid()]
        for _ in range(depth):
            layers += [nn.Conv2d(8, 8, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(8, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


class DictInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = sm.stack(20, nn.Sigmoid, width=16, n_in=16, n_out=4)

    def forward(self, features: Tensor, scale: Tensor) -> Tensor:
        return self.body(features) * scale


def classes(n: int) -> Tensor:
    return torch.randint(0, 10, (n,))


PATIENTS = {
    "lstm": lambda: sm.Patient(LSTMDeepHead(), torch.randn(32, 10, 8), classes(32)),
    "rnn_tuple_output": lambda: sm.Patient(RNNWithState(), torch.randn(32, 10, 8)),
    "cnn": lambda: sm.Patient(PlainCNN(), torch.randn(32, 3, 8, 8), classes(32)),
    "functional_sigmoid": lambda: sm.Patient(sm.FunctionalSigmoidNet(), torch.randn(64, 32), classes(64)),
    "dict_inputs": lambda: sm.Patient(
        DictInputs(), {"features": torch.randn(32, 16), "scale": torch.ones(32, 1)}
    ),
}


@pytest.mark.parametrize("name", list(PATIENTS))
def test_treated_model_keeps_inputs_and_output_shapes(name: str) -> None:
    patient = PATIENTS[name]()
    original = state(patient.model)
    shapes = output_shapes(patient.model, patient.inputs)
    treatment = run(patient)
    assert not treatment.before.healthy
    assert treatment.applied, treatment.summary()  # something was changed, and still:
    assert output_shapes(treatment.model, patient.inputs) == shapes
    assert treatment.after.score > treatment.before.score
    assert same_state(state(patient.model), original)


def test_recurrent_family_keeps_the_interface_of_an_rnn_model() -> None:
    model = RNNWithState()
    x = torch.randn(4, 6, 8)
    shapes = output_shapes(model, x)
    report = treat_module.checkup(model, x)
    changes = treat_module.apply_family(model, "recurrent", x, report)
    assert [c.action for c in changes if not c.skipped] == [
        "RNN -> LSTM (same inputs and outputs)",
        "forget-gate bias 1.0",
    ]
    assert output_shapes(model, x) == shapes


# -- a remedy that does not help is undone -------------------------------------------------------


def test_unhelpful_init_is_undone_and_the_model_is_as_it_was() -> None:
    """A deep sigmoid stack without biases: nothing can centre the sigmoid's outputs (mean 0.5),
    so no initialisation restores the signal."""
    patient = sm.stack_patient(20, nn.Sigmoid, bias=False)
    original = state(patient.model)
    treatment = run(patient, allow=["init"])
    assert "init" in undone(treatment) and "is no better" in undone(treatment)["init"]
    assert not treatment.applied
    assert same_state(state(treatment.model), original)
    assert treatment.after is treatment.before


def test_unhelpful_activation_swap_is_undone_structure_included() -> None:
    """A 60-layer tanh stack with default init: SiLU alone does not restore the signal."""
    patient = sm.stack_patient(60, nn.Tanh)
    original, shape = state(patient.model), architecture(patient.model)
    treatment = run(patient, allow=["activation"])
    assert "activation" in undone(treatment)
    assert architecture(treatment.model) == shape  # Tanh modules again, no SiLU
    assert same_state(state(treatment.model), original)


def test_undone_family_leaves_the_kept_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Xavier before ReLU: the init is kept (better, not yet healthy); then a normalization that
    makes things worse (structure and weights) is undone, in place, back to the kept state."""
    real = treat_module.apply_family
    kept: list[dict[str, Tensor]] = []

    def harmful(model: nn.Module, family: str, inputs: object, report: Report) -> list[Change]:
        if family != "normalization":
            return real(model, family, inputs, report)
        kept.append(state(model))
        model[0] = nn.Sequential(model[0], nn.Identity())
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Linear):
                    module.weight.mul_(0.05)  # vanishing again
        return [Change("normalization", "0", "harmful")]

    monkeypatch.setattr(treat_module, "apply_family", harmful)
    patient = sm.xavier_relu(40)
    model = patient.model
    shape = architecture(model)
    treatment = run(patient, allow=["init", "normalization"], in_place=True)
    assert treatment.model is model
    assert [r.split(":")[0] for r in treatment.rounds] == ["init", "normalization"]
    assert "normalization" in undone(treatment) and "init" not in undone(treatment)
    assert {c.family for c in treatment.applied} == {"init"}
    assert architecture(model) == shape
    assert len(kept) == 1 and same_state(state(model), kept[0])
    assert treatment.before.score < treatment.after.score
    again = treat_module.checkup(model, patient.inputs, patient.targets)
    assert again.score == pytest.approx(treatment.after.score)


class Indexed(nn.Module):
    """A forward that indexes its Sequential: wrapping blocks in Residual breaks it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = sm.stack(20, nn.Sigmoid, width=16, n_in=16, n_out=4)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(0, 40, 2):
            x = self.body[i + 1](self.body[i](x))
        return self.body[40](x)


@pytest.mark.parametrize("in_place", [False, True])
def test_a_remedy_that_breaks_the_forward_is_undone(in_place: bool) -> None:
    model = Indexed()
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    original, expected = state(model), model(x)
    treatment = treat(model, x, y, allow=["residual"], in_place=in_place, suggest_lr=False)
    assert "no longer runs" in undone(treatment)["residual"]
    assert same_state(state(treatment.model), original)
    assert torch.equal(treatment.model(x), expected)
    assert (treatment.model is model) == in_place


def test_the_catalog_marks_automatic_exactly_the_families_treat_applies() -> None:
    """The diagnosis declares which remedies are automatic; treat must apply exactly those."""
    from gradmedic.diagnosis.catalog import AUTOMATIC_FAMILIES

    assert set(treat_module.FAMILIES) == AUTOMATIC_FAMILIES
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)), torch.randn(8, 4)
    report = treat_module.checkup(model, x)
    for family in AUTOMATIC_FAMILIES - {"clipping"}:  # clipping is advice for the training loop
        assert isinstance(treat_module.apply_family(copy.deepcopy(model), family, x, report), list)
    with pytest.raises(ConfigError, match="no remedy family"):
        treat_module.apply_family(model, "dropout", x, report)
