"""Unit tests of :mod:`gradmedic.lab.schema`: cell specs, their keys, results and their JSON form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gradmedic.lab import schema
from gradmedic.lab.schema import CellResult, CellSpec, source_fingerprint, versions


def spec(**changes: object) -> CellSpec:
    fields: dict[str, object] = dict(
        study="depth", task="digits", recipe="mlp", variant="tanh",
        params={"depth": 8, "activation": "tanh"}, seed=1, steps=50, lrs=(1e-3, 3e-3), axis="depth",
    )  # fmt: skip
    fields.update(changes)
    return CellSpec(**fields)  # type: ignore[arg-type]


def test_axis_value_and_label() -> None:
    assert spec().x == 8.0 and spec().label == "depth/tanh/depth=8/seed=1"
    flat = spec(axis=None)
    assert flat.x is None and flat.label == "depth/tanh/seed=1"


def test_key_is_stable_16_hex_and_changes_with_any_field() -> None:
    key = spec().key()
    assert len(key) == 16 and int(key, 16) >= 0
    assert spec().key() == key == CellSpec.from_dict(json.loads(json.dumps(spec().to_dict()))).key()
    changed = [
        spec(seed=2),
        spec(lrs=(1e-3,)),
        spec(params={"depth": 8, "activation": "relu"}),
        spec(steps=51),
    ]
    assert len({key, *(s.key() for s in changed)}) == 5


def test_key_changes_with_the_library_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    key = spec().key()
    monkeypatch.setattr(schema, "LAB_FORMAT", schema.LAB_FORMAT + 1)
    assert spec().key() != key


def test_versions_name_every_library_a_result_depends_on() -> None:
    now = versions()
    assert set(now) == {"lab_format", "gradmedic", "gradmedic_source", "torch", "python"}
    assert all(isinstance(v, str) and v for v in now.values())


def test_source_fingerprint_follows_names_and_contents_of_python_files_only(tmp_path: Path) -> None:
    fingerprint = source_fingerprint.__wrapped__  # uncached
    (tmp_path / "a.py").write_text("x = 1")
    first = fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("not code")
    assert fingerprint(tmp_path) == first
    (tmp_path / "a.py").rename(tmp_path / "b.py")
    assert fingerprint(tmp_path) != first  # a rename counts
    (tmp_path / "b.py").rename(tmp_path / "a.py")
    assert fingerprint(tmp_path) == first
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.py").write_text("")
    assert fingerprint(tmp_path) != first  # files in sub-folders count


def test_spec_round_trips_through_json_with_lrs_as_a_tuple() -> None:
    data = json.loads(json.dumps(spec().to_dict()))
    assert data["lrs"] == [1e-3, 3e-3]
    back = CellSpec.from_dict(data)
    assert back == spec() and isinstance(back.lrs, tuple)


def test_result_round_trips_through_json_with_nan_as_null() -> None:
    result = CellResult(
        spec(), score=math.nan, healthy=True, findings=["vanishing"], layer_names=["0", "2"],
        signal=[1e-3, math.nan], time_signal=[1.0, math.inf], lr=3e-3,
        by_lr={"0.001": math.nan, "0.003": 0.9},
        curve_steps=[10, 20], curve_loss=[2.0, math.nan], curve_metric=[0.5, 0.8], metric=0.8,
        steps_to_target=20, early_score=math.nan, early_findings=["dead_units"], wall_time=1.5,
    )  # fmt: skip
    text = json.dumps(result.to_dict(), allow_nan=False)  # valid JSON: no NaN literal
    back = CellResult.from_dict(json.loads(text))
    assert back.to_dict() == result.to_dict()
    assert math.isnan(back.score) and math.isnan(back.early_score) and math.isnan(back.signal[1])
    assert math.isnan(back.by_lr["0.001"]) and back.by_lr["0.003"] == 0.9  # a diverged rate stays a number
    assert back.time_signal == [1.0, math.nan]  # infinity has no JSON form either: read back as missing
    assert back.ok and back.versions == versions()


def test_an_error_result_is_not_ok() -> None:
    failed = CellResult(spec(), status="error", error="RuntimeError: boom")
    assert not failed.ok
    assert CellResult.from_dict(failed.to_dict()).error == "RuntimeError: boom"
