"""The ``gradmedic`` command line: exit 0 healthy, 1 not healthy, 2 for a TARGET it cannot use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import gradmedic
from gradmedic.cli import main
from gradmedic.diagnosis.findings import Report

TARGETS = """
import torch
from torch import nn


def healthy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    return model, torch.randn(64, 16), torch.randint(0, 4, (64,))


def as_dict():
    model, x, y = healthy()
    return {"model": model, "inputs": x, "targets": y, "loss_fn": nn.functional.cross_entropy}


def without_targets():
    return healthy()[:2]


def sick():
    torch.manual_seed(0)
    layers = [m for _ in range(20) for m in (nn.Linear(16, 16), nn.Sigmoid())]
    return nn.Sequential(*layers, nn.Linear(16, 4)), torch.randn(64, 16), torch.randint(0, 4, (64,))


def number():
    return 42


def model_only():
    return healthy()[0]


def not_a_model():
    return "model", torch.randn(2, 2)


def too_many():
    return (*healthy(), None, None)


def bad_keys():
    model, x, _ = healthy()
    return {"net": model, "inputs": x}


def raises():
    raise RuntimeError("the data set is not there")


def wrong_inputs():
    return healthy()[0], torch.randn(64, 7)


not_callable = 3
"""


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Path]:
    """A user's file of TARGET functions; the module it registers is dropped afterwards."""
    path = tmp_path / "cli_targets_file.py"
    path.write_text(TARGETS, encoding="utf-8")
    yield path
    sys.modules.pop(path.stem, None)


def checkup(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["checkup", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_sick_demo_exits_1_and_writes_a_loadable_report(tmp_path: Path, capsys) -> None:
    json_path, md_path = tmp_path / "out.json", tmp_path / "out.md"
    status, out, err = checkup(
        capsys, "gradmedic.demo:sick_example", "--json", str(json_path), "--markdown", str(md_path)
    )
    assert status == 1
    assert err == ""
    report = Report.from_json(json_path.read_text(encoding="utf-8"))
    assert not report.healthy and report.source == "checkup"
    assert "vanishing_gradient" in report.kinds
    assert "NOT healthy" in out and "vanishing_gradient" in out
    assert "`vanishing_gradient`" in md_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("function", ["healthy", "as_dict", "without_targets"])
def test_healthy_target_in_a_file_exits_0(targets: Path, tmp_path: Path, function: str, capsys) -> None:
    json_path = tmp_path / "healthy.json"
    status, out, err = checkup(capsys, f"{targets}:{function}", "--json", str(json_path))
    assert (status, err) == (0, "")
    assert out.startswith("gradmedic checkup: healthy")
    report = Report.from_json(json_path.read_text(encoding="utf-8"))
    assert report.healthy and report.layers
    assert ("surrogate" in " ".join(report.notes)) == (function == "without_targets")


def test_relative_path_and_sick_target(targets: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(targets.parent.parent)
    status, out, _ = checkup(capsys, f"{targets.parent.name}/{targets.name}:sick")
    assert status == 1
    assert "vanishing_gradient" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nope", "must name a function: 'package.module:function' or 'path/to/file.py:function'"),
        ("nope:x", "cannot import 'nope'"),
        ("gradmedic.demo:no_such_function", "gradmedic.demo has no function 'no_such_function'"),
        ("{file}:missing", "has no function 'missing'"),
        ("{file}:not_callable", "has no function 'not_callable'"),
        ("{dir}/no_such_file.py:build", "no such file"),
        ("{file}:number", "returned int: return (model, inputs[, targets[, loss_fn]]) or a dict"),
        ("{file}:model_only", "returned Sequential"),
        ("{file}:too_many", "returned tuple"),
        ("{file}:not_a_model", "returned a str as the model: return an nn.Module first"),
        ("{file}:bad_keys", "returned a dict with keys ['inputs', 'net']: use model, inputs"),
        ("{file}:raises", "raised RuntimeError: the data set is not there"),
        ("{file}:wrong_inputs", "(64, 7)"),
    ],
)
def test_bad_targets_exit_2_with_a_clear_message(targets: Path, target: str, message: str, capsys) -> None:
    status, out, err = checkup(capsys, target.format(file=targets, dir=targets.parent))
    assert status == 2
    assert out == ""
    assert err.startswith("gradmedic: ") and message in err
    assert "Traceback" not in err


def test_a_file_that_fails_to_import(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "cli_broken_target.py"
    broken.write_text("def build(:\n", encoding="utf-8")
    status, _, err = checkup(capsys, f"{broken}:build")
    assert status == 2
    assert "cannot import" in err and "SyntaxError" in err
    assert broken.stem not in sys.modules


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gradmedic {gradmedic.__version__}\n"


def test_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gradmedic")
    assert "checkup" in out and "demo" in out and "--version" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["checkup", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "TARGET" in out and "path/file.py:function" in out and "--json" in out and "--markdown" in out


def test_no_command_prints_the_help(capsys) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("usage: gradmedic")


def test_checkup_needs_a_target(capsys) -> None:
    assert main(["checkup"]) == 2  # argparse's usage error, on one line
    err = capsys.readouterr().err
    assert "TARGET" in err and err.startswith("gradmedic checkup: ") and err.count("\n") == 1


def test_console_script_in_a_subprocess(targets: Path, tmp_path: Path) -> None:
    """The installed ``gradmedic`` command: exit status and the report file it writes."""
    script = Path(sys.executable).parent / "gradmedic"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gradmedic.cli"]
    json_path = tmp_path / "sub.json"
    env = {**os.environ, "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, "checkup", f"{targets}:healthy", "--json", str(json_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gradmedic checkup: healthy")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["healthy"] is True and data["format"] == "gradmedic.report"
    assert textwrap.dedent(done.stderr).strip() == ""


def test_python_dash_m_runs_the_same_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradmedic", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"gradmedic {gradmedic.__version__}"
