"""Unit tests of :mod:`gradmedic.lab.tables`: ``results.csv`` and ``results.jsonl``, read back."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from gradmedic.lab.schema import CellResult, CellSpec
from gradmedic.lab.tables import columns, write_tables


def results() -> list[CellResult]:
    a = CellSpec("depth", "digits", "mlp", "tanh", {"depth": 8, "sizes": [3, 4]}, 0, 50, (0.1, 0.01), "depth")
    b = CellSpec("init", "digits", "mlp", "he", {"init": "he"}, 1, 50, (0.1,))
    return [
        CellResult(
            a, score=0.25, findings=["vanishing", "saturation"], metric=0.9, lr=0.1, steps_to_target=40
        ),
        CellResult(b, score=math.nan, metric=0.5),
        CellResult(b, status="error", error="RuntimeError: boom, with a comma\nand a line"),
        CellResult(a, metric=0.8),  # below 90 % of its study's best (0.9)
    ]


def test_columns_hold_every_parameter_once_between_head_and_tail() -> None:
    names = columns(results())
    assert names[:5] == ["key", "study", "task", "recipe", "variant"]
    assert names[5:8] == ["param_depth", "param_init", "param_sizes"]
    assert names[8] == "seed" and names[-1] == "trained" and len(names) == len(set(names))


def test_csv_and_jsonl_hold_the_same_rows(tmp_path: Path) -> None:
    csv_path, jsonl_path = write_tables(results(), tmp_path / "out")
    with csv_path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    lines = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert len(rows) == len(lines) == 4
    first, second, failed, weaker = rows
    assert first["key"] == results()[0].spec.key() == lines[0]["key"]
    assert first["param_depth"] == "8" and first["param_init"] == "" and first["param_sizes"] == "3;4"
    assert first["lrs"] == "0.1;0.01" and first["findings"] == "vanishing;saturation"
    assert first["axis_value"] == "8.0" and second["axis"] == "" and second["score"] == ""  # NaN: empty
    assert first["trained"] == second["trained"] == "True"  # each is the best of its study
    assert weaker["trained"] == "False"
    assert failed["trained"] == "" and failed["error"] == "RuntimeError: boom, with a comma\nand a line"
    assert lines[0]["findings"] == ["vanishing", "saturation"] and lines[0]["lrs"] == [0.1, 0.01]
    assert lines[1]["score"] is None and lines[2]["trained"] is None and lines[0]["steps_to_target"] == 40
    assert list(lines[0]) == columns(results())


def test_a_parameter_that_is_not_text_or_number_is_written_as_json(tmp_path: Path) -> None:
    spec = CellSpec("s", "digits", "mlp", "v", {"schedule": {"warmup": 5, "kind": "cos"}}, 0, 1, (0.1,))
    csv_path, _ = write_tables([CellResult(spec, metric=1.0)], tmp_path)
    with csv_path.open(newline="") as file:
        (row,) = csv.DictReader(file)
    assert json.loads(row["param_schedule"]) == {"warmup": 5, "kind": "cos"}
