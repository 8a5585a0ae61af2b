"""Every script in ``examples/`` runs as a user would run it, and does what its docstring says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradmedic import History, Report

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    """Run ``examples/<name>`` in ``cwd``; fail with its output if it exits non-zero."""
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_every_example_is_tested_here() -> None:
    tested = {
        "watch_training_loop.py", "checkup_and_treat.py", "lightning_callback.py", "recurrent_memory.py",
        "trial_with_dataloader.py",
    }  # fmt: skip
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_watch_training_loop_saves_every_recorded_step(tmp_path: Path) -> None:
    out = run_example("watch_training_loop.py", "--steps", "65", "--out", "run.jsonl", cwd=tmp_path)
    assert "gradmedic" in out
    history = History.load(tmp_path / "run.jsonl")
    steps, _ = history.array("loss")
    assert list(steps) == [*range(50), 60]  # the default: every step for 50 steps, then every 20th


def test_checkup_and_treat_raises_the_health_score(tmp_path: Path) -> None:
    out = run_example("checkup_and_treat.py", "--steps", "30", cwd=tmp_path)
    before = float(re.search(r"before: score ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    after = float(re.search(r"after:  score ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    assert "vanishing_gradient" in out
    assert after > before


def test_lightning_callback_writes_its_report(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    out = run_example("lightning_callback.py", "--steps", "10", "--out", "logs", cwd=tmp_path)
    path = Path(re.search(r"report saved to (\S+)", out).group(1))  # type: ignore[union-attr]
    path = path if path.is_absolute() else tmp_path / path
    report = Report.from_json(path.read_text())
    assert 0.0 <= report.score <= 1.0


def test_recurrent_memory_swaps_the_rnn_for_an_lstm(tmp_path: Path) -> None:
    out = run_example("recurrent_memory.py", "--length", "40", cwd=tmp_path)
    assert "vanishing_through_time" in out
    assert "RNN -> LSTM" in out


def test_trial_with_dataloader_finds_the_rate_that_trains(tmp_path: Path) -> None:
    out = run_example("trial_with_dataloader.py", "--steps", "40", "--train-steps", "100", cwd=tmp_path)
    assert "checkup (one batch, before training): healthy" in out
    assert "[CRITICAL] divergence" in out
    yours = re.search(r"trained at your rate \S+: mean loss of the last 10 steps (\S+)", out)
    theirs = re.search(r"trained at the trial's rate \S+: mean loss of the last 10 steps (\S+)", out)
    assert yours and theirs, out
    assert float(theirs.group(1)) < 0.5 and not float(yours.group(1)) < 0.5  # nan or large at 0.5
