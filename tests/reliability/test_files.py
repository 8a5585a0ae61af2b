"""Issue 16, loaders: every bad file is a ConfigError naming the file, the line and what is wrong.

Each test here failed on the code before its fix (raw JSONDecodeError, KeyError, ValueError,
OSError).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gradmedic
from gradmedic.diagnosis import Report
from gradmedic.errors import ConfigError
from gradmedic.history import History
from gradmedic.layers import LayerInfo


def _saved_run(tmp_path: Path) -> Path:
    history = History([LayerInfo("0", "Linear", "param", ["0.weight"])], ["0.weight"])
    history.append("signal_norm", [0, 1, 2], np.array([[1.0], [0.5], [0.25]]))
    history.append("loss", [0, 1, 2], np.array([[2.0], [1.5], [1.0]]))
    return history.save(tmp_path / "run.jsonl")


def _damage(path: Path, how: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    if how == "truncated":
        path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    elif how == "garbage line":
        path.write_text("".join(lines[:2]) + "%%% not json %%%\n" + "".join(lines[2:]))
    elif how == "record without values":
        path.write_text("".join(lines[:2]) + '{"step": 9, "metric": "loss"}\n' + "".join(lines[2:]))
    elif how == "too many values":
        path.write_text("".join(lines[:2]) + '{"step": 9, "metric": "loss", "values": [1, 2]}\n')
    elif how == "a list line":
        path.write_text("".join(lines[:2]) + "[1, 2]\n")
    elif how == "header without layers":
        path.write_text('{"format": "gradmedic.history", "version": 1}\n' + "".join(lines[1:]))


@pytest.mark.parametrize(
    ("how", "line", "says"),
    [
        ("truncated", 7, "not a JSON record"),
        ("garbage line", 3, "not a JSON record"),
        ("record without values", 3, "the field 'values' is missing"),
        ("too many values", 3, "2 values for 'loss', which has 1 columns"),
        ("a list line", 3, "not a JSON object"),
        ("header without layers", 1, "the field 'layers' is missing"),
    ],
)
def test_a_damaged_history_names_the_file_the_line_and_what_is_wrong(tmp_path, how, line, says):
    path = _saved_run(tmp_path)
    _damage(path, how)
    with pytest.raises(ConfigError) as info:
        History.load(path)
    message = str(info.value)
    assert f"{path}, line {line}:" in message and says in message


@pytest.mark.parametrize("which", ["missing", "directory"])
def test_a_history_that_cannot_be_read_is_a_config_error(tmp_path, which):
    path = tmp_path / "missing.jsonl" if which == "missing" else tmp_path
    with pytest.raises(ConfigError, match="cannot read"):
        History.load(path)


def test_a_history_of_a_newer_format_version_is_refused(tmp_path):
    path = _saved_run(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    header = json.loads(lines[0]) | {"version": 999}
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    with pytest.raises(ConfigError, match=r"format version 999.*upgrade"):
        History.load(path)


def test_an_intact_history_still_loads(tmp_path):
    loaded = History.load(_saved_run(tmp_path))
    assert loaded.array("loss")[1].ravel().tolist() == [2.0, 1.5, 1.0]


def _report_text() -> str:
    model = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 2))
    report = gradmedic.checkup(model, torch.randn(16, 8), torch.randint(0, 2, (16,)))
    assert report.findings  # so that a finding's fields can be damaged
    return report.to_json()


@pytest.mark.parametrize(
    ("mangle", "says"),
    [
        (lambda text: text[: len(text) // 2], "not JSON at line"),
        (lambda text: "[]", "format='list'"),
        (lambda text: text.replace('"score"', '"scare"'), "the field 'score' is missing"),
        (
            lambda text: text.replace('"severity": "', '"severity": "x'),
            "damaged gradmedic report: ValueError: unknown severity",
        ),
    ],
    ids=["truncated", "a list", "no score", "bad severity"],
)
def test_a_malformed_report_is_a_config_error(mangle, says):
    text = mangle(_report_text())
    with pytest.raises(ConfigError, match=says):
        Report.from_json(text)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("step,series,value\n0,loss,2.0\n1,loss\n", "line 3: not a CSVSink row"),
        ("step,series,value\n0,loss,2.0\nx,loss,1.0\n", "line 3: not a CSVSink row"),
        ("a,b\n1,2\n", "line 2: not a CSVSink row step,series,value (the column 'step' is missing)"),
    ],
    ids=["a short row", "a step that is no number", "another CSV"],
)
def test_read_csv_of_a_damaged_file_names_the_line(tmp_path, content, says):
    from gradmedic.sinks import read_csv

    path = tmp_path / "series.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(f"{path}, {says}")):
        read_csv(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_csv(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    "damage", ["{not json", '{"status": "ok"}', "[]"], ids=["not json", "no spec", "a list"]
)
def test_a_damaged_lab_result_is_named_with_what_to_do(tmp_path, damage):
    from gradmedic.lab.store import load_results

    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "0123456789abcdef.json").write_text(damage)
    with pytest.raises(ConfigError, match=r"0123456789abcdef\.json: a damaged lab result .*delete it"):
        load_results(tmp_path)
