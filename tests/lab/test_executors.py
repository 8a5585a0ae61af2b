"""Unit tests of :mod:`gradmedic.lab.executors` in this process: error results, the inline
executor, and the messages when a backend is missing. (The process pool and Ray, with workers that
crash or are interrupted, are exercised end to end in ``tests/lab/test_runner.py``.)"""

from __future__ import annotations

import multiprocessing
import sys

import pytest
import torch

from gradmedic.lab.executors import call_cell, error_result, import_ray, inline_results, start_method
from gradmedic.lab.schema import CellResult, CellSpec


def spec(seed: int) -> CellSpec:
    return CellSpec("depth", "digits", "mlp", "relu", {}, seed, 10, (0.1,))


def cell(s: CellSpec) -> CellResult:
    if s.seed == 1:
        raise ZeroDivisionError("seed one divides by zero")
    return CellResult(s, metric=s.seed / 10)


def test_error_result_from_an_exception_has_type_message_and_traceback_tail() -> None:
    try:
        cell(spec(1))
    except ZeroDivisionError as error:
        result = error_result(spec(1), error, wall_time=2.5)
    assert result.status == "error" and not result.ok and result.wall_time == 2.5
    first, *rest = result.error.splitlines()
    assert first == "ZeroDivisionError: seed one divides by zero"
    assert any("in cell" in line for line in rest)  # where it was raised
    assert error_result(spec(0), "the worker died").error == "the worker died"


def test_call_cell_turns_an_exception_into_an_error_result() -> None:
    assert call_cell(cell, spec(0)).metric == 0.0
    failed = call_cell(cell, spec(1))
    assert failed.spec == spec(1) and failed.error.startswith("ZeroDivisionError") and failed.wall_time >= 0


def test_call_cell_lets_an_interrupt_through() -> None:
    def interrupted(s: CellSpec) -> CellResult:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_cell(interrupted, spec(0))


def test_inline_results_in_order_on_one_thread_and_the_thread_count_restored() -> None:
    seen: list[int] = []

    def counting(s: CellSpec) -> CellResult:
        seen.append(torch.get_num_threads())
        return cell(s)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = list(inline_results([spec(0), spec(1), spec(2)], counting))
        assert [r.status for r in results] == ["ok", "error", "ok"] and [r.spec.seed for r in results] == [
            0,
            1,
            2,
        ]
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
        early = inline_results([spec(0), spec(2)], counting)
        next(early)
        early.close()  # closed before the end: the thread count comes back too
        assert torch.get_num_threads() == 2 and len(seen) == 4
    finally:
        torch.set_num_threads(before)


def test_start_method_never_forks() -> None:
    method = start_method()
    assert method in ("forkserver", "spawn") and method in multiprocessing.get_all_start_methods()


def test_missing_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'gradmedic\[ray\]' \(or use the local executor\)"):
        import_ray()
