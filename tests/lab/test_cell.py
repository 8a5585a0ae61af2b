"""The lab's science: recipes, task data, one cell, and the studies' grids.

Every cell here is shrunk to a few training steps so the file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.lab.cell import run_cell, window_means
from gradmedic.lab.data import TASKS, load_task, score_outputs
from gradmedic.lab.recipes import ACTIVATIONS, build_model
from gradmedic.lab.schema import CellSpec
from gradmedic.lab.studies import PRESETS, STUDIES, build_cells
from gradmedic.remedies import Residual

SEQUENCE_TASKS = {"digits_rows": None, "adding": 7, "copy": 3}


def tiny(spec: CellSpec, steps: int = 4) -> CellSpec:
    """``spec`` with a few steps, one learning rate, and short sequences / shallow stacks."""
    params = dict(spec.params)
    if "length" in params:
        params["length"] = min(params["length"], 6)
    if "depth" in params:
        params["depth"] = min(params["depth"], 3)
        params.pop("cut_from", None)
    return dataclasses.replace(spec, params=params, steps=steps, lrs=spec.lrs[:1])


@pytest.mark.parametrize("task", TASKS)
def test_each_task_has_train_validation_and_test_data_and_a_metric_in_0_1(task):
    data = load_task(task, seed=1, length=5)
    assert len(data.fit.x_test) > 0 and len(data.final.x_test) > 0
    assert torch.equal(data.fit.x_train, data.final.x_train)  # the same training data for sweep and final
    recipe = "rnn" if data.sequence else "cnn" if task == "digits_image" else "mlp"
    model = build_model(recipe, {"every_step": task == "copy", "hidden": 8}, data.n_inputs, data.n_outputs)
    assert 0.0 <= data.metric(model, data.final.x_test, data.final.y_test) <= 1.0


def test_synthetic_tasks_need_a_length_and_unknown_tasks_are_named():
    with pytest.raises(ConfigError, match="length"):
        load_task("adding")
    with pytest.raises(ConfigError, match="digits_rows"):
        load_task("mnist")


def test_non_finite_outputs_score_as_wrong():
    nan = float("nan")
    assert score_outputs("adding", torch.tensor([[1.0], [nan]]), torch.tensor([[1.0], [1.0]])) == 0.5
    copy_out = torch.zeros(1, 12, 10)
    copy_out[0, -10:, 3] = 1.0
    assert score_outputs("copy", copy_out, torch.full((1, 12), 3)) == 1.0


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_mlp_builds_for_every_activation(act):
    model = build_model("mlp", {"depth": 3, "width": 8, "activation": act, "init": "auto"}, 64, 10)
    assert model(torch.randn(4, 64)).shape == (4, 10)


@pytest.mark.parametrize(
    "params",
    [
        {"norm": "batch"},
        {"norm": "layer"},
        {"residual": "zero"},
        {"residual": "plain"},
        {"init": "lsuv"},
        {"gain": 1.5, "init": "he"},
    ],
)
def test_mlp_and_cnn_take_the_remedies_of_their_params(params):
    x = torch.randn(16, 64)
    model = build_model("mlp", {"depth": 3, "width": 64, **params}, 64, 10, example=x)
    assert model(x).shape == (16, 10)
    cnn = build_model("cnn", {"depth": 3, "channels": 4, **params}, 1, 10, example=x.reshape(16, 1, 8, 8))
    assert cnn(x.reshape(16, 1, 8, 8)).shape == (16, 10)


def test_residual_variants_differ_only_in_alpha():
    x = torch.randn(8, 64)
    for kind, alpha in (("zero", 0.0), ("plain", 1.0)):
        model = build_model("mlp", {"depth": 3, "width": 64, "residual": kind}, 64, 10, example=x)
        alphas = [m.alpha.item() for m in model.modules() if isinstance(m, Residual)]
        assert alphas == [alpha] * 3


def test_cut_from_keeps_the_first_blocks_and_the_head_of_the_deep_net():
    torch.manual_seed(0)
    deep = build_model("mlp", {"depth": 6, "width": 8}, 64, 10)
    torch.manual_seed(0)
    short = build_model("mlp", {"depth": 2, "cut_from": 6, "width": 8}, 64, 10)
    assert len(short) == 5 and short(torch.randn(3, 64)).shape == (3, 10)
    assert torch.equal(short[0].weight, deep[0].weight) and torch.equal(short[-1].weight, deep[-1].weight)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "loop"])
@pytest.mark.parametrize("task", list(SEQUENCE_TASKS))
def test_recurrent_recipes_take_their_tasks_inputs(cell, task):
    data = load_task(task, seed=0, length=SEQUENCE_TASKS[task])
    params = {"cell": cell, "hidden": 8, "every_step": task == "copy", "layernorm": True}
    model = build_model("rnn", params, data.n_inputs, data.n_outputs)
    x, y = data.batch(4)
    assert data.loss(model(x), y).shape == ()


def test_recurrent_inits_and_gate_bias_are_applied():
    lstm = build_model("rnn", {"cell": "lstm", "hidden": 4, "forget_bias": 1.0}, 2, 1)
    assert torch.equal(lstm.rnn.bias_ih_l0[4:8], torch.ones(4))
    irnn = build_model("rnn", {"cell": "rnn", "hidden": 4, "init": "identity", "nonlinearity": "relu"}, 2, 1)
    assert torch.equal(irnn.rnn.weight_hh_l0, torch.eye(4))


def test_unknown_recipe_activation_and_cell_are_config_errors():
    for recipe, params in (("transformer", {}), ("mlp", {"activation": "swishy"}), ("rnn", {"cell": "lru"})):
        with pytest.raises(ConfigError):
            build_model(recipe, params, 64, 10)


@pytest.mark.parametrize("study", STUDIES)
def test_a_tiny_cell_of_every_study_gives_a_sensible_result(study):
    spec = tiny(build_cells([study], "quick")[-1])
    result = run_cell(spec)
    assert result.ok, result.error
    assert 0.0 <= result.score <= 1.0 and 0.0 <= result.metric <= 1.0
    assert len(result.signal) == len(result.layer_names) > 0
    assert result.curve_steps[0] == 0 and result.curve_steps[-1] <= spec.steps
    assert len(result.curve_steps) == len(result.curve_loss) == len(result.curve_metric)
    assert result.lr in spec.lrs and set(result.by_lr) == {repr(lr) for lr in spec.lrs}
    assert result.metric_name == ("solved" if spec.task == "adding" else "accuracy")
    recurrent = spec.recipe == "rnn"
    assert (result.time_signal is not None) == recurrent
    assert result.wall_time > 0
    assert result.versions["gradmedic"]


def test_the_sweep_keeps_the_rate_with_the_best_validation_score():
    spec = CellSpec("t", "digits", "mlp", "relu", {"depth": 1, "width": 16, "target": 0.5}, 0, 40,
                    (1e-5, 1e-2))  # fmt: skip
    result = run_cell(spec)
    assert result.by_lr["0.01"] > result.by_lr["1e-05"] and result.lr == 1e-2
    assert result.metric > 0.5 and result.steps_to_target in result.curve_steps


def test_a_failing_cell_is_recorded_not_raised():
    spec = CellSpec("t", "digits", "mlp", "bad", {"activation": "nope"}, 0, 3, (1e-3,))
    result = run_cell(spec)
    assert result.status == "error" and "ConfigError" in result.error and "nope" in result.error
    crashed = run_cell(dataclasses.replace(spec, params={"optimizer": "lbfgs-ish"}))
    assert crashed.status == "error" and "optimizer" in crashed.error


def test_a_run_that_blows_up_stops_early_and_is_scored():
    params = {"depth": 8, "width": 32, "init": "he", "gain": 3.0, "optimizer": "sgd"}
    result = run_cell(CellSpec("t", "digits", "mlp", "boom", params, 0, 50, (10.0,)))
    assert result.ok and result.curve_steps[-1] < 50
    assert result.metric <= 0.2 and "exploding_gradient" in result.findings


def test_treat_after_checks_up_the_treated_model():
    spec = CellSpec("treat", "digits", "mlp", "x", {"depth": 12, "width": 32, "activation": "sigmoid"}, 0, 3,
                    (1e-3,))  # fmt: skip
    before = run_cell(spec)
    after = run_cell(dataclasses.replace(spec, params={**spec.params, "treat": True}))
    assert before.ok and after.ok, (before.error, after.error)
    assert after.score > before.score and "vanishing_gradient" in before.findings
    assert after.layer_names != before.layer_names or after.signal != before.signal


def test_the_recorded_signal_is_the_autograd_gradient_at_each_layer_output():
    params = {"depth": 2, "width": 8, "activation": "tanh", "target": 0.9}
    result = run_cell(CellSpec("t", "digits", "mlp", "tanh", params, 3, 1, (1e-3,)))
    data = load_task("digits", seed=3)
    x, y = data.batch(128, seed=3)
    torch.manual_seed(3)
    model = build_model("mlp", params, 64, 10)
    outputs = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: outputs.setdefault(n, o).retain_grad())
             for n, m in model.named_modules() if isinstance(m, nn.Linear)]  # fmt: skip
    nn.functional.cross_entropy(model(x), y).backward()
    for hook in hooks:
        hook.remove()
    expected = [float(outputs[n].grad.pow(2).mean().sqrt()) for n in result.layer_names]
    assert result.layer_names == ["0", "2", "4"]
    assert result.signal == pytest.approx(expected, rel=1e-5)


def test_the_time_signal_of_a_recurrent_cell_falls_with_steps_back():
    spec = CellSpec("t", "adding", "rnn", "rnn", {"cell": "rnn", "hidden": 16, "length": 30}, 0, 2, (1e-3,))
    result = run_cell(spec)
    profile = result.time_signal
    assert profile is not None and len(profile) == 30
    assert profile[0] > profile[-1] > 0 and result.score < 1.0


@pytest.mark.parametrize("preset", PRESETS)
def test_both_presets_cover_every_study_with_unique_keys(preset):
    specs = build_cells(None, preset)
    assert [s.study for s in specs] == sorted((s.study for s in specs), key=STUDIES.index)
    assert {s.study for s in specs} == set(STUDIES)
    assert len({s.key() for s in specs}) == len(specs)
    labels = [(s.label, s.task) for s in specs]
    assert len(set(labels)) == len(labels)
    assert all(math.isfinite(s.params["target"]) for s in specs)


def test_full_has_more_seeds_and_cells_than_quick():
    quick, full = build_cells(None, "quick"), build_cells(None, "full")
    assert len(full) > 3 * len(quick)
    assert {s.seed for s in full} > {s.seed for s in quick}


def test_unknown_study_or_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"activations.*treat"):
        build_cells(["nope"], "quick")
    with pytest.raises(ConfigError, match="quick, full"):
        build_cells(None, "huge")
    assert {s.study for s in build_cells(["depth", "treat"], "quick")} == {"depth", "treat"}


def test_window_means_average_the_losses_between_checkpoints():
    assert window_means([3.0, 1.0, 2.0], [0, 1, 3]) == [3.0, 3.0, 1.5]
