"""Smoke test of the overhead benchmark: it runs and prints ratios. It never checks timings."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradmedic.monitor import DEFAULT_OPTIONS
from gradmedic.schedules import as_schedule

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"
RATIO = re.compile(r"\d+\.\d+x \[\d+\.\d+-\d+\.\d+\]")


def test_overhead_quick_run_prints_ratios(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    # one thread: a smoke run on a busy 2-core runner, where 2 OpenMP threads can stall each other
    command = [sys.executable, str(SCRIPT), "--quick", "--workloads", "mlp", "--threads", "1"]
    command += ["--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    mlp_rows = [line for line in done.stdout.splitlines() if line.startswith("mlp ")]
    assert len(mlp_rows) == 1, done.stdout
    assert len(RATIO.findall(mlp_rows[0])) >= 3, mlp_rows[0]
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert set(results) == {"mlp"}
    assert results["mlp"]["steps"] == 2  # --quick
    expected = {"gradmedic default", "gradmedic all", "lightning-style grad_norm"}
    assert expected <= set(results["mlp"]["ratios"])
    assert results["mlp"]["recorded"]["gradmedic default"]["signal_norm"] > 0


def test_a_block_times_one_period_of_every_default_schedule_that_applies(monkeypatch) -> None:
    """Each sampled statistic is paid in a block as often as in a long run: the replay through
    time (the sparsest schedule) on a recurrent workload, the activation schedule on the others."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    overhead = importlib.import_module("overhead")
    window = range(50, 50 + overhead.default_period(overhead.build_lstm()))  # after the warm-up
    replay = as_schedule(DEFAULT_OPTIONS["through_time_every"], "through_time_every")
    activations = as_schedule(DEFAULT_OPTIONS["activations_every"], "activations_every")
    assert DEFAULT_OPTIONS["through_time_every"] == len(window) == 200
    assert sum(map(replay, window)) == 1 and sum(map(activations, window)) == 2
    mlp_window = range(50, 50 + overhead.default_period(overhead.build_mlp()))
    assert sum(map(activations, mlp_window)) == 1


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--steps", "-3"], ["--blocks", "0"]])
def test_overhead_refuses_a_count_below_one_with_exit_2(monkeypatch, argv) -> None:
    """``--steps`` unset means one period per workload; ``--steps 0`` is a mistake, not that."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    overhead = importlib.import_module("overhead")
    with pytest.raises(SystemExit) as refused:
        overhead.parse_args(argv)
    assert refused.value.code == 2
    assert overhead.parse_args([]).steps is None


def test_through_time_benchmark_checks_its_two_methods_agree_and_prints_three_times() -> None:
    script = SCRIPT.parent / "through_time.py"
    command = [sys.executable, str(script), "--repeats", "1"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, cwd=SCRIPT.parent
    )
    assert done.returncode == 0, done.stderr
    assert len(re.findall(r"\d+\.\d+ ms", done.stdout)) == 3, done.stdout


def test_compile_quick_run_counts_graphs_and_checks_losses(tmp_path: Path) -> None:
    out = tmp_path / "compile.json"
    script = SCRIPT.parent / "compile.py"
    command = [sys.executable, str(script), "--quick", "--workloads", "mlp", "--orders", "watch+compile"]
    done = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("| mlp | watch+compile |") for line in done.stdout.splitlines()), done.stdout
    row = json.loads(out.read_text(encoding="utf-8"))["results"]["mlp"]["watch+compile"]
    assert row["graphs compiled"] == row["baseline graphs compiled"] == 1
    assert row["graph breaks"] == 0 and row["recompilations"] == 0
    assert row["same losses"] and row["same weights"] and row["recorded steps"] > 0
