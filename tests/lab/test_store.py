"""Unit tests of :mod:`gradmedic.lab.store`: one JSON file per finished cell, atomic, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradmedic.errors import ConfigError
from gradmedic.lab import store as store_module
from gradmedic.lab.schema import CellResult, CellSpec
from gradmedic.lab.store import ResultStore, load_results


def spec(study: str = "depth", variant: str = "tanh", depth: int = 4, seed: int = 0) -> CellSpec:
    return CellSpec(study, "digits", "mlp", variant, {"depth": depth}, seed, 10, (1e-3,), axis="depth")


def test_save_marks_done_and_load_reads_back_equal_results(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "lab")
    result = CellResult(spec(), metric=0.75, signal=[1e-4, 1.0])
    assert not store.is_done(result.spec) and store.load() == []  # an empty directory: nothing done
    path = store.save(result)
    assert path == tmp_path / "lab" / "cells" / f"{result.spec.key()}.json"
    assert store.is_done(result.spec) and not store.is_done(spec(seed=1))
    (loaded,) = load_results(tmp_path / "lab")
    assert loaded.to_dict() == result.to_dict()
    assert [p.name for p in store.cells.iterdir()] == [path.name]  # no temporary file left


def test_load_orders_by_study_variant_axis_and_seed(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    specs = [spec("init", "he"), spec(depth=16), spec(depth=4, seed=1), spec("depth", "relu"), spec(depth=4)]
    for s in specs:
        store.save(CellResult(s))
    labels = [r.spec.label for r in store.load()]
    assert labels == [
        "depth/relu/depth=4/seed=0", "depth/tanh/depth=4/seed=0", "depth/tanh/depth=4/seed=1",
        "depth/tanh/depth=16/seed=0", "init/he/depth=4/seed=0",
    ]  # fmt: skip


def test_results_of_other_versions_are_kept_out_unless_asked(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.save(CellResult(spec()))
    stale = CellResult(spec(seed=5), versions={"torch": "1.0"})
    store.save(stale)
    assert [r.spec.seed for r in store.load()] == [0]
    assert [r.spec.seed for r in store.load(current_only=False)] == [0, 5]


def test_a_failed_write_leaves_neither_the_cell_nor_a_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ResultStore(tmp_path)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module.json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.save(CellResult(spec()))
    assert not store.is_done(spec()) and list(store.cells.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("{not json", "not JSON at line 1, column 2"),
        (json.dumps({"status": "ok"}), "the field 'spec' is missing"),
        (json.dumps({"spec": {"study": "x"}}), "the field 'lrs' is missing"),
        (json.dumps({"spec": [1, 2]}), "TypeError"),
    ],
)
def test_a_damaged_file_is_named_with_what_is_wrong_and_what_to_do(
    tmp_path: Path, content: str, what: str
) -> None:
    store = ResultStore(tmp_path)
    store.cells.mkdir()
    damaged = store.cells / "0123456789abcdef.json"
    damaged.write_text(content)
    with pytest.raises(ConfigError) as error:
        store.load()
    message = str(error.value)
    assert message.startswith(f"{damaged}: a damaged lab result") and what in message
    assert "delete it and run the same lab command again" in message
