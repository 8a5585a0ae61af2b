"""Run the lab: build the grid, skip the cells already saved, run the rest, save each as it ends.

Every result is saved (one JSON file, written atomically, see :mod:`gradmedic.lab.store`) in this
process the moment its cell finishes, so a run stopped at any point (Ctrl-C, ``kill``, even
``kill -9``) loses only the cells that were running, and the same call again resumes. A cell
computed under other library versions has another key, so it is computed again.

Example (in this process, with a stand-in for the real cell function):
    >>> import tempfile
    >>> from gradmedic.lab.schema import CellResult, CellSpec
    >>> def fake(spec):
    ...     return CellResult(spec, metric=1.0 / spec.params["depth"])
    >>> cells = [CellSpec("depth", "digits", "mlp", "relu", {"depth": d}, 0, 10, (0.1,), "depth")
    ...          for d in (2, 4)]
    >>> with tempfile.TemporaryDirectory() as out:
    ...     first = run_lab(out=out, cells=cells, run=fake, workers=1, progress=False, report=False)
    ...     again = run_lab(out=out, cells=cells, run=lambda spec: 1 / 0, workers=1, progress=False,
    ...                     report=False)
    >>> [r.metric for r in first], [r.metric for r in again]
    ([0.5, 0.25], [0.5, 0.25])
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from ..errors import ConfigError
from .executors import CellFunction, import_ray, inline_results, pool_results, ray_results
from .schema import CellResult, CellSpec
from .store import ResultStore

EXECUTORS = ("local", "ray")


class LabInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C, SIGTERM); every finished cell is saved.

    Example:
        >>> str(LabInterrupted(3, 10))
        '3 of 10 cells done; run the same command again to resume'
    """

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"{done} of {total} cells done; run the same command again to resume")
        self.done = done
        self.total = total


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it).

    Example:
        >>> default_workers() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def run_lab(
    studies: Sequence[str] | None = None,
    preset: str = "quick",
    out: str | os.PathLike[str] = "lab-out",
    workers: int | None = None,
    executor: str = "local",
    cells: Sequence[CellSpec] | None = None,
    run: CellFunction | None = None,
    progress: bool = True,
    report: bool = True,
) -> list[CellResult]:
    """Run the cells of ``studies`` (default: all) not yet saved under ``out``; return every result.

    Args:
        studies: study names (see ``gradmedic.lab.studies.STUDIES``); None runs them all.
        preset: ``"quick"`` or ``"full"``.
        out: the lab directory: results go to ``out/cells/``, the report to ``out/report.html``.
        workers: processes (local) or CPUs of a local Ray instance; default: this machine's
            cores. ``1`` runs the cells in this process, one after another.
        executor: ``"local"`` (a process pool) or ``"ray"`` (Ray tasks; a cluster when
            ``RAY_ADDRESS`` is set, else a local instance).
        cells: run these cells instead of the studies' grid.
        run: the cell function (default ``gradmedic.lab.cell.run_cell``); for a process pool or
            Ray it must be a top-level function of an importable module.
        progress: show a progress bar on a terminal (one line per cell elsewhere); False: quiet.
        report: write ``out/report.html`` and its companions at the end.

    Returns:
        The results of the grid's cells, in the grid's order (those saved before included).

    Raises:
        LabInterrupted: on Ctrl-C or SIGTERM, after saving every finished cell.
        ConfigError: an unknown study, preset, executor, or ``workers < 1``.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; the executors are: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if executor == "ray":
        import_ray()
    run = run or default_run()
    workers = workers or default_workers()
    if executor == "local" and workers > 1:
        _check_picklable(run)
    specs = _unique(cells if cells is not None else build_cells(studies, preset))
    store = ResultStore(out)
    todo = [spec for spec in specs if not store.is_done(spec)]
    fresh = _run_cells(store, specs, todo, run, workers, executor, progress)
    if report:
        from .report import write_report

        write_report(out)
    return [fresh[spec.key()] if spec.key() in fresh else _saved(store, spec) for spec in specs]


def build_cells(studies: Sequence[str] | None, preset: str) -> list[CellSpec]:
    """The grid of ``studies`` (all when None) for ``preset``; an unknown study names the valid ones."""
    from .studies import STUDIES
    from .studies import build_cells as build

    unknown = [name for name in studies or () if name not in STUDIES]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ConfigError(f"unknown study {names}; the studies are: {', '.join(STUDIES)}")
    return build(studies, preset)


def default_run() -> CellFunction:
    """The lab's cell function, :func:`gradmedic.lab.cell.run_cell`."""
    from .cell import run_cell

    return run_cell


def _check_picklable(run: CellFunction) -> None:
    """Worker processes get the cell function by name: it must be importable from its module."""
    try:
        pickle.dumps(run)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ConfigError(
            f"the cell function {run!r} cannot be sent to worker processes ({error}): make it a "
            "top-level function of an importable module, or run with workers=1"
        ) from None


def _unique(specs: Sequence[CellSpec]) -> list[CellSpec]:
    """The cells with duplicates (same key) dropped, in order."""
    first: dict[str, CellSpec] = {}
    for spec in specs:
        first.setdefault(spec.key(), spec)
    return list(first.values())


def _saved(store: ResultStore, spec: CellSpec) -> CellResult:
    return CellResult.from_dict(json.loads(store.path(spec).read_text()))


def _run_cells(
    store: ResultStore,
    specs: list[CellSpec],
    todo: list[CellSpec],
    run: CellFunction,
    workers: int,
    executor: str,
    progress: bool,
) -> dict[str, CellResult]:
    """Run ``todo``, saving each result as it arrives; on Ctrl-C or SIGTERM raise LabInterrupted."""
    fresh: dict[str, CellResult] = {}
    workers = min(workers, max(1, len(todo)))
    where = _ray_where(workers) if executor == "ray" else _local_where(workers)
    with _sigterm_interrupts(), make_progress(progress, len(specs), len(specs) - len(todo)) as bar:
        if todo:
            bar.note(f"{len(todo)} of {len(specs)} cells to run ({where}), results in {store.cells}")
        results = _executor(executor, todo, run, workers) if todo else iter(())
        try:
            for result in results:
                store.save(result)
                fresh[result.spec.key()] = result
                bar.advance(result)
        except KeyboardInterrupt:
            raise LabInterrupted(sum(store.is_done(spec) for spec in specs), len(specs)) from None
        finally:
            getattr(results, "close", lambda: None)()
    return fresh


def _local_where(workers: int) -> str:
    return "in this process" if workers == 1 else f"{workers} worker processes"


def _ray_where(workers: int) -> str:
    address = os.environ.get("RAY_ADDRESS")
    return f"Ray cluster {address}" if address else f"local Ray instance, {workers} CPUs"


def _executor(name: str, todo: list[CellSpec], run: CellFunction, workers: int) -> Iterator[CellResult]:
    if name == "ray":
        return ray_results(todo, run, workers)
    if workers == 1:
        return inline_results(todo, run)
    return pool_results(todo, run, workers)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Within: SIGTERM interrupts like Ctrl-C (where signals can be handled: the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


class _Quiet:
    """No progress output."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self.errors = total, done, 0

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *_: Any) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def advance(self, result: CellResult) -> None:
        self.done += 1
        self.errors += not result.ok


class _Lines(_Quiet):
    """One line per finished cell, for logs (stderr is not a terminal)."""

    def __init__(self, total: int, done: int, stream: TextIO) -> None:
        super().__init__(total, done)
        self.stream = stream

    def note(self, text: str) -> None:
        print(f"lab: {text}", file=self.stream, flush=True)

    def advance(self, result: CellResult) -> None:
        super().advance(result)
        status = "ok" if result.ok else "ERROR"
        self.note(f"{self.done}/{self.total} {status} {result.spec.label} ({result.wall_time:.1f} s)")


class _Bar(_Quiet):
    """A rich progress bar: cells done of all, elapsed, ETA, errors, the last cell finished."""

    def __init__(self, total: int, done: int, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__(total, done)
        self.bar = Progress(
            TextColumn("lab"), BarColumn(), MofNCompleteColumn(), TextColumn("cells"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[errors]}"), TextColumn("{task.fields[last]}"),
            console=Console(file=stream), transient=False,
        )  # fmt: skip
        self.task = self.bar.add_task("lab", total=total, completed=done, errors="", last="")

    def __enter__(self) -> _Bar:
        self.bar.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.bar.stop()

    def note(self, text: str) -> None:
        self.bar.console.print(f"lab: {text}", markup=False, highlight=False)

    def advance(self, result: CellResult) -> None:
        super().advance(result)
        errors = f"[red]{self.errors} error{'s' * (self.errors != 1)}[/]" if self.errors else "0 errors"
        self.bar.update(self.task, advance=1, errors=errors, last=f"last: {result.spec.label}")


def make_progress(enabled: bool, total: int, done: int, stream: TextIO | None = None) -> _Quiet:
    """The progress display: a bar on a terminal (with rich), lines elsewhere, nothing if disabled.

    Example:
        >>> import io
        >>> from gradmedic.lab.schema import CellResult, CellSpec
        >>> stream = io.StringIO()
        >>> with make_progress(True, total=2, done=1, stream=stream) as progress:
        ...     progress.advance(CellResult(CellSpec("init", "digits", "mlp", "he", {}, 0, 5, (0.1,))))
        >>> stream.getvalue()
        'lab: 2/2 ok init/he/seed=0 (0.0 s)\\n'
    """
    stream = stream or sys.stderr
    if not enabled:
        return _Quiet(total, done)
    if stream.isatty() and _has_rich():
        return _Bar(total, done, stream)
    return _Lines(total, done, stream)


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
