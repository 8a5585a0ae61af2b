"""Issue 16, the command line: every user mistake, in every subcommand, is one line on stderr and
exit status 2 (never a traceback, never 1, which means "not healthy"); a gradmedic bug is 3.

The matrix failed on the code before (tracebacks with exit 1, or mistakes accepted silently).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import gradmedic.cli
from gradmedic.cli import main
from gradmedic.history import History
from gradmedic.layers import LayerInfo

TARGETS = """
import torch
from torch import nn


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def wrong_batch():
    return _model(), torch.randn(16, 8), torch.randint(0, 3, (12,))


def class_out_of_range():
    return _model(), torch.randn(16, 8), torch.randint(0, 3, (16,)) + 5


def targets_string():
    return _model(), torch.randn(16, 8), "0,1,2"


def loss_string():
    return _model(), torch.randn(16, 8), torch.randint(0, 3, (16,)), "cross_entropy"


def loss_raises():
    def loss_fn(output, targets):
        raise ValueError("my loss is broken")

    return _model(), torch.randn(16, 8), torch.randint(0, 3, (16,)), loss_fn


class Buggy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(8, 3)

    def forward(self, x):
        return self.layer(x) / self.missing_attribute


def forward_raises():
    return Buggy(), torch.randn(16, 8)


def empty_batch():
    return _model(), torch.randn(0, 8), torch.randint(0, 3, (0,))


def healthy():
    return _model(), torch.randn(16, 8), torch.randint(0, 3, (16,))
"""

TARGET_MISTAKES = {
    "wrong_batch": "integer targets of shape (12,) do not fit an output of shape (16, 3)",
    "class_out_of_range": "class ids must be in [0, 3)",
    "targets_string": "targets must be a tensor, got str",
    "loss_string": "loss_fn must be a function",
    "loss_raises": "loss_fn loss_fn raised ValueError: my loss is broken",
    "forward_raises": "Buggy.forward raised AttributeError",
    "empty_batch": "the batch is empty",
}


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "reliability_cli_targets.py"
    path.write_text(TARGETS, encoding="utf-8")
    yield path
    sys.modules.pop(path.stem, None)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _assert_one_line_exit_2(status: int, out: str, err: str, says: str) -> None:
    assert status == 2, (status, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("gradmedic") and "Traceback" not in err, err
    assert says in err, err


@pytest.mark.parametrize("command", ["checkup", "treat"])
@pytest.mark.parametrize("function", list(TARGET_MISTAKES))
def test_a_target_the_user_got_wrong_exits_2_on_one_line(targets, tmp_path, capsys, command, function):
    extra = ["--out", str(tmp_path / "treated")] if command == "treat" else []
    status, out, err = _run(capsys, command, f"{targets}:{function}", *extra)
    _assert_one_line_exit_2(status, out, err, TARGET_MISTAKES[function])


def _locked(tmp_path: Path) -> Path:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    return blocker  # a path below a file can never be created


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["checkup", "{target}", "--json", "{file}/report.json"], "does not exist"),
        (["checkup", "{target}", "--markdown", "{tmp}/no/such/report.md"], "does not exist"),
        (["checkup", "{target}", "--json", "{tmp}"], "is a folder"),
        (["treat", "{target}", "--out", "{file}/treated"], "cannot create the folder"),
        (["treat", "{target}", "--allow", "", "--out", "{tmp}/treated"], "unknown remedy family ''"),
        (
            ["treat", "{target}", "--allow", "init,bogus", "--out", "{tmp}/treated"],
            "unknown remedy family 'bogus'",
        ),
        (["report", "{tmp}/missing.jsonl"], "no such file"),
        (["report", "{tmp}"], "no such file"),
        (["report", "{header_only}"], "holds no recorded step"),
        (["report", "{version_999}"], "format version 999"),
        (["report", "{run}", "-o", "{file}/page.html"], "cannot write the report"),
        (["demo", "--steps", "-5"], "--steps: must be at least 1, got -5"),
        (["demo", "--depth", "0"], "--depth: must be at least 1, got 0"),
        (["demo", "--steps", "many"], "not a whole number: 'many'"),
        (["lab", "report", "{tmp}"], "no lab results"),
        (["lab", "--workers", "0"], "must be at least 1"),
        (["lab", "--preset", "huge"], "invalid choice: 'huge'"),
        (["nosuch"], "invalid choice: 'nosuch'"),
        (["checkup"], "the following arguments are required: TARGET"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_every_subcommand_refuses_a_mistake_on_one_line_with_exit_2(targets, tmp_path, capsys, args, says):
    runs = _runs(tmp_path)
    fill = {"target": f"{targets}:healthy", "file": str(_locked(tmp_path)), "tmp": str(tmp_path), **runs}
    status, out, err = _run(capsys, *[arg.format(**fill) for arg in args])
    _assert_one_line_exit_2(status, out, err, says)
    assert not (tmp_path / "treated").exists()  # nothing written for a refused command


def _runs(tmp_path: Path) -> dict[str, str]:
    history = History([LayerInfo("0", "Linear", "param", ["0.weight"])], ["0.weight"])
    header_only = history.save(tmp_path / "header_only.jsonl")
    history.append("signal_rms", [0, 1], np.array([[1.0], [1.0]]))
    run = history.save(tmp_path / "run.jsonl")
    lines = run.read_text().splitlines(keepends=True)
    version_999 = tmp_path / "version_999.jsonl"
    version_999.write_text(json.dumps(json.loads(lines[0]) | {"version": 999}) + "\n" + "".join(lines[1:]))
    return {"header_only": str(header_only), "run": str(run), "version_999": str(version_999)}


def test_a_bug_in_gradmedic_exits_3_with_the_traceback(targets, capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("an internal invariant broke")

    monkeypatch.setitem(gradmedic.cli.COMMANDS, "checkup", broken)
    status, _, err = _run(capsys, "checkup", f"{targets}:healthy")
    assert status == 3
    assert "Traceback" in err and "an internal invariant broke" in err and "bug in gradmedic" in err


def test_the_exit_status_reaches_the_shell_in_a_subprocess(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gradmedic", "demo", "--depth", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1 and "--depth" in done.stderr
