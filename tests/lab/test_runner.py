"""The lab's runner: each cell saved as it ends, resumed after any interruption, errors recorded,
crashes survived, the same results on Ray; the ``gradmedic lab`` command line.

The cell function and the grid are stand-ins (``tests/lab_fakes.py``): these tests are about
running cells, not about what a cell measures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import lab_fakes
from gradmedic.cli import main
from gradmedic.errors import ConfigError
from gradmedic.lab import LabInterrupted, ResultStore, executors, run_lab, schema
from gradmedic.lab import runner as lab_runner
from gradmedic.lab.schema import CellResult, CellSpec

TESTS = Path(__file__).resolve().parents[1]  # the helpers (lab_fakes) live there


@pytest.fixture(autouse=True)
def _light_workers(monkeypatch) -> None:
    """Fork servers started here preload only what the fakes need (saves seconds per start)."""
    monkeypatch.setattr(executors, "PRELOAD", lab_fakes.LIGHT_PRELOAD)


def lab(out: Path, cells: list[CellSpec], workers: int = 1, **options) -> list[CellResult]:
    return run_lab(out=out, cells=cells, run=lab_fakes.fake_cell, workers=workers, progress=False,
                   report=False, **options)  # fmt: skip


def saved(out: Path) -> list[CellResult]:
    return ResultStore(out).load()


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_each_result_is_saved_before_the_next_cell_starts(tmp_path: Path) -> None:
    seen = []

    def counting(spec: CellSpec) -> CellResult:
        seen.append(len(list((tmp_path / "cells").glob("*.json"))))
        return lab_fakes.fake_cell(spec)

    cells = lab_fakes.fake_cells(4)
    results = run_lab(out=tmp_path, cells=cells, run=counting, workers=1, progress=False, report=False)
    assert seen == [0, 1, 2, 3]
    assert [r.spec for r in results] == cells and [r.metric for r in results] == [0.0, 0.1, 0.2, 0.3]
    assert sorted(r.spec.variant for r in saved(tmp_path)) == ["v0", "v1", "v2", "v3"]


def test_a_rerun_skips_the_finished_cells(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    lab(tmp_path, lab_fakes.fake_cells(3, log=str(log)), workers=2)
    assert len(lab_fakes.logged(log)) == 3
    results = lab(tmp_path, lab_fakes.fake_cells(5, log=str(log)), workers=2)
    labels = [label for _, label in lab_fakes.logged(log)[3:]]
    assert sorted(labels) == ["fake/v3/seed=0", "fake/v4/seed=0"]
    assert [r.metric for r in results] == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_a_result_of_other_library_versions_is_computed_again(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "calls.log"
    cells = lab_fakes.fake_cells(2, log=str(log))
    old = {**schema.versions(), "torch": "1.0.0"}
    with monkeypatch.context() as patch:
        patch.setattr(schema, "versions", lambda: old)
        for spec in cells:
            ResultStore(tmp_path).save(CellResult(spec, metric=0.9, versions=old))
    results = lab(tmp_path, cells)
    assert len(lab_fakes.logged(log)) == 2 and [r.metric for r in results] == [0.0, 0.1]
    assert len(list((tmp_path / "cells").glob("*.json"))) == 4  # the old results stay, not mixed in
    assert [r.metric for r in saved(tmp_path)] == [0.0, 0.1]


def test_a_failing_cell_is_recorded_and_the_others_finish_in_this_process(tmp_path: Path) -> None:
    results = lab(tmp_path, lab_fakes.fake_cells(3, fail=1))
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert results[1].error.startswith("ValueError: fake failure in fake/v1/seed=0")
    assert "lab_fakes.py" in results[1].error  # the end of the traceback
    assert len(saved(tmp_path)) == 3


def test_failing_and_crashing_cells_are_recorded_and_the_pool_goes_on(tmp_path: Path) -> None:
    results = lab(tmp_path, lab_fakes.fake_cells(6, fail=1, crash=3, sleep=0.05), workers=2)
    assert [r.status for r in results] == ["ok", "error", "ok", "error", "ok", "ok"]
    assert results[1].error.startswith("ValueError: fake failure in fake/v1/seed=0")
    assert "ended by SIGSEGV" in results[3].error
    assert [r.metric for r in results if r.ok] == [0.0, 0.2, 0.4, 0.5]
    assert len(saved(tmp_path)) == 6


def test_ctrl_c_in_this_process_keeps_the_finished_cells(tmp_path: Path) -> None:
    cells = lab_fakes.fake_cells(4)
    calls = []

    def interrupted_at_the_third(spec: CellSpec) -> CellResult:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(spec)
        return lab_fakes.fake_cell(spec)

    with pytest.raises(LabInterrupted, match=r"^2 of 4 cells done; run the same command again to resume$"):
        run_lab(out=tmp_path, cells=cells, run=interrupted_at_the_third, workers=1, progress=False,
                report=False)  # fmt: skip
    assert len(saved(tmp_path)) == 2
    calls.clear()
    counted = lambda spec: calls.append(spec) or lab_fakes.fake_cell(spec)  # noqa: E731
    results = run_lab(out=tmp_path, cells=cells, run=counted, workers=1, progress=False, report=False)
    assert calls == cells[2:] and [r.metric for r in results] == [0.0, 0.1, 0.2, 0.3]


def run_in_subprocess(argv: list[str], count: int, **params) -> subprocess.Popen:
    # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited "ignore":
    # give the child the handler a process started from a terminal has (Ctrl-C raises).
    code = (
        "import signal, sys, lab_fakes; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.exit(lab_fakes.run_cli({argv!r}, {count}, **{params!r}))"
    )
    return subprocess.Popen([sys.executable, "-c", code], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_on_a_pool_saves_stops_the_workers_and_says_how_to_resume(tmp_path: Path, signum: int) -> None:
    log = tmp_path / "calls.log"
    argv = ["lab", "--out", str(tmp_path), "--workers", "2"]
    process = run_in_subprocess(argv, 40, sleep=1.0, log=str(log))  # 20 s: a signal lands in time
    wait_for(lambda: len(list((tmp_path / "cells").glob("*.json"))) >= 2)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    done = len(saved(tmp_path))
    assert process.returncode == 130, stderr
    assert f"interrupted: {done} of 40 cells done; run the same command again to resume" in stderr
    workers = {pid for pid, _ in lab_fakes.logged(log)}
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10)
    assert 2 <= done < 40


def test_a_killed_run_keeps_every_finished_cell_and_a_rerun_does_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    count = 24  # 6 s of cells: the kill lands before the last one, even on busy cores
    argv = ["lab", "--out", str(tmp_path), "--workers", "2"]
    process = run_in_subprocess(argv, count, sleep=0.5, log=str(log))
    wait_for(lambda: len(list((tmp_path / "cells").glob("*.json"))) >= 3)
    process.kill()
    process.communicate(timeout=60)
    finished = {r.spec.label for r in saved(tmp_path)}
    assert 3 <= len(finished) < count
    workers = {pid for pid, _ in lab_fakes.logged(log)}
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10)  # they exit with their parent
    before = len(lab_fakes.logged(log))
    results = lab(tmp_path, lab_fakes.fake_cells(count, sleep=0.5, log=str(log)), workers=2)
    rerun = [label for _, label in lab_fakes.logged(log)[before:]]
    assert sorted(rerun) == sorted({r.spec.label for r in results} - finished)
    assert [r.metric for r in results] == [i / 10 for i in range(count)]


def test_the_ray_executor_gives_the_local_results(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    cells = lab_fakes.fake_cells(5, fail=2)
    local = lab(tmp_path / "local", cells)
    code = (
        "import lab_fakes; from gradmedic.lab import run_lab; "
        f"run_lab(out={str(tmp_path / 'ray')!r}, cells=lab_fakes.fake_cells(5, fail=2), "
        "run=lab_fakes.fake_cell, workers=2, executor='ray', progress=True, report=False)"
    )
    env = {key: value for key, value in subprocess_env().items() if key != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lab: 5/5" in done.stderr  # one line per cell where stderr is not a terminal
    remote = {r.spec.key(): r for r in saved(tmp_path / "ray")}
    assert len(remote) == 5
    for mine in local:
        theirs = remote[mine.spec.key()]
        assert (theirs.status, theirs.metric == mine.metric) == (mine.status, mine.ok)
        assert (theirs.error or "").splitlines()[:1] == (mine.error or "").splitlines()[:1]


def test_run_lab_refuses_bad_options(tmp_path: Path, monkeypatch) -> None:
    cells = lab_fakes.fake_cells(1)
    with pytest.raises(ConfigError, match="unknown executor 'dask'; the executors are: local, ray"):
        lab(tmp_path, cells, executor="dask")
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        lab(tmp_path, cells, workers=0)
    with pytest.raises(ConfigError, match="top-level function of an importable module"):
        run_lab(out=tmp_path, cells=lab_fakes.fake_cells(2), run=lambda spec: None, workers=2, report=False)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'gradmedic\[ray\]'"):
        lab(tmp_path, cells, executor="ray")


def test_unknown_studies_are_named_with_the_valid_ones(monkeypatch) -> None:
    studies = types.ModuleType("gradmedic.lab.studies")
    studies.STUDIES = ("activations", "init")
    studies.build_cells = lambda names, preset: []
    monkeypatch.setitem(sys.modules, "gradmedic.lab.studies", studies)
    with pytest.raises(ConfigError, match="study 'bogus', 'nope'; the studies are: activations, init"):
        lab_runner.build_cells(["init", "bogus", "nope"], "quick")
    assert lab_runner.build_cells(["init"], "quick") == []


@pytest.fixture
def fake_lab(monkeypatch, tmp_path: Path) -> Path:
    """The command line's lab with three fake cells and a fake report writer."""
    monkeypatch.setattr(lab_runner, "build_cells", lambda studies, preset: lab_fakes.fake_cells(3, fail=1))
    monkeypatch.setattr(lab_runner, "default_run", lambda: lab_fakes.fake_cell)
    report = types.ModuleType("gradmedic.lab.report")

    def write_report(out) -> Path:
        (Path(out) / "report.html").write_text("<html></html>")
        return Path(out) / "report.html"

    report.write_report = write_report
    monkeypatch.setitem(sys.modules, "gradmedic.lab.report", report)
    return tmp_path / "lab"


def test_the_lab_command_runs_summarizes_and_points_to_the_report(fake_lab: Path, capsys) -> None:
    assert main(["lab", "--out", str(fake_lab), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "lab: 3 cells, 2 ok, 1 error;" in out
    assert "error in fake/v1/seed=0: ValueError: fake failure in fake/v1/seed=0" in out
    assert f"report: {fake_lab / 'report.html'}" in out
    (fake_lab / "report.html").unlink()
    assert main(["lab", "report", str(fake_lab)]) == 0
    assert (fake_lab / "report.html").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lab", "--workers", "0"], "must be at least 1, got 0"),
        (["lab", "--workers", "two"], "not a whole number: 'two'"),
        (["lab", "--preset", "huge"], "invalid choice: 'huge'"),
        (["lab", "--executor", "dask"], "invalid choice: 'dask'"),
    ],
)
def test_the_lab_command_refuses_bad_arguments(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2  # one line on stderr (see tests/reliability/test_cli.py)
    assert message in capsys.readouterr().err


def test_lab_report_needs_one_directory_with_results(tmp_path: Path, capsys) -> None:
    assert main(["lab", "report", str(tmp_path)]) == 2
    assert "no lab results in" in capsys.readouterr().err
    assert main(["lab", "report"]) == 2
    assert "usage: gradmedic lab report DIR" in capsys.readouterr().err


def test_the_lab_command_names_the_valid_studies(tmp_path: Path, monkeypatch, capsys) -> None:
    studies = types.ModuleType("gradmedic.lab.studies")
    studies.STUDIES = ("activations", "init")
    studies.build_cells = lambda names, preset: []
    monkeypatch.setitem(sys.modules, "gradmedic.lab.studies", studies)
    assert main(["lab", "bogus", "--out", str(tmp_path)]) == 2
    assert "gradmedic: unknown study 'bogus'; the studies are: activations, init" in capsys.readouterr().err


def test_the_help_names_the_studies_of_the_lab() -> None:
    studies = pytest.importorskip("gradmedic.lab.studies")
    from gradmedic.cli import LAB_STUDIES

    assert tuple(studies.STUDIES) == LAB_STUDIES
