"""Unit tests of :mod:`gradmedic.lab.studies`: the grids each preset builds are valid cells.

Each cell is checked against the other modules' vocabularies (tasks, recipes, activations,
optimizers), its model is built from its params, and each study's baseline is found by name.
"""

from __future__ import annotations

import re

import pytest
import torch

from gradmedic.errors import ConfigError
from gradmedic.lab.data import TASKS, load_task
from gradmedic.lab.recipes import ACTIVATIONS, RECIPES, build_model
from gradmedic.lab.schema import CellResult
from gradmedic.lab.studies import LADDERS, PRESETS_BY_NAME, STUDIES, TARGETS, build_cells
from gradmedic.lab.summary import layout
from gradmedic.training import OPTIMIZERS


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_every_cell_names_known_things_and_keys_are_unique(preset: str) -> None:
    cells = build_cells(None, preset)
    p = PRESETS_BY_NAME[preset]
    assert len({c.key() for c in cells}) == len(cells)
    assert [c.study for c in cells] == sorted((c.study for c in cells), key=STUDIES.index)
    assert {c.study for c in cells} == set(STUDIES)
    for c in cells:
        assert c.task in TASKS and c.recipe in RECIPES and c.seed in p.seeds
        assert c.params["target"] == TARGETS[c.task]
        assert c.params.get("activation", "relu") in ACTIVATIONS
        optimizer = c.params.get("optimizer", "adam")
        assert optimizer in OPTIMIZERS and set(c.lrs) <= set(LADDERS[optimizer]) and len(c.lrs) == p.n_lrs
        assert c.axis is None or c.x is not None


def test_the_full_preset_has_the_486_cells_the_readme_names() -> None:
    assert len(build_cells(None, "full")) == 486


def test_each_study_finds_its_baseline_by_name_or_axis() -> None:
    cells = build_cells(None, "full")
    for study in STUDIES:
        found = layout([CellResult(c) for c in cells if c.study == study])
        assert "alphabetically" not in found.why, (study, found.why)


def test_every_quick_model_builds_and_runs_on_its_tasks_batch() -> None:
    built = set()
    for c in build_cells(None, "quick"):
        if c.params.get("treat") or repr((c.recipe, c.task, sorted(c.params.items()))) in built:
            continue
        built.add(repr((c.recipe, c.task, sorted(c.params.items()))))
        data = load_task(c.task, 0, c.params.get("length"))
        x, _ = data.batch(8)
        torch.manual_seed(0)
        model = build_model(c.recipe, c.params, data.n_inputs, data.n_outputs, example=x)
        exploding = c.params.get("gain", 1.0) != 1.0  # built to overflow
        assert exploding or torch.isfinite(model(x)).all(), c.label


def test_only_the_chosen_studies_in_the_seeds_order() -> None:
    studies = [c.study for c in build_cells(["depth", "activations"], "quick")]
    assert studies[0] == "activations" and set(studies) == {"activations", "depth"}


def test_unknown_study_or_preset_names_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("unknown study 'dropout': choose from activations, init")
    ):
        build_cells(["activations", "dropout"])
    with pytest.raises(ConfigError, match=re.escape("unknown preset 'huge': choose one of quick, full")):
        build_cells(None, "huge")
