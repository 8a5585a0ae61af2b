"""Where the lab's cells run: in this process, in a local process pool, or as Ray tasks.

Each executor is a generator that takes the cells still to do and a cell function (``CellSpec ->
CellResult``, top-level so that it pickles) and yields each :class:`CellResult` the moment its
cell finishes, in finishing order; the caller saves it before asking for the next. A cell
function that raises, or a worker process that dies under a cell (a segmentation fault, the
out-of-memory killer), gives an error result for that cell and never stops the others. Closing
the generator early (Ctrl-C, an error while saving) cancels the cells not started and stops the
workers.

The local pool uses the ``forkserver`` start method where the platform has it (``spawn``
elsewhere). Forking the lab's process itself is unsafe once torch has started its thread pools;
a spawned worker imports torch, the first optimizer's torch._dynamo and scikit-learn all over
again, and so would a worker of a bare fork server. A fork server that has imported them once
(:data:`PRELOAD`) forks ready workers. Measured on 2 busy cores (load 6), a pool of 2 running 2
tiny real cells took 16-20 s with ``spawn`` (every pool), 15-18 s with a bare fork server, and
8.7 s with the preloading one for its first pool, 0.9 s for the next (a pool restarted after a
worker died). Every worker runs torch on one thread: the cells are small models, and as many
MKL thread pools as cores on the same cores thrash.

Example (in this process):
    >>> from gradmedic.lab.schema import CellResult, CellSpec
    >>> def fake(spec):
    ...     if spec.seed == 1:
    ...         raise ValueError("no such seed")
    ...     return CellResult(spec, metric=0.5)
    >>> cells = [CellSpec("depth", "digits", "mlp", "relu", {}, seed, 10, (0.1,)) for seed in (0, 1)]
    >>> [(r.status, r.error.splitlines()[0]) if r.error else r.status for r in inline_results(cells, fake)]
    ['ok', ('error', 'ValueError: no such seed')]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any

import torch

from .schema import CellResult, CellSpec

CellFunction = Callable[[CellSpec], CellResult]

#: The modules the fork server imports once, so that the workers forked from it start at once
#: (each takes 2-4 s to import on a busy machine; one that is missing is skipped): torch, what the
#: first optimizer imports (torch._dynamo), and scikit-learn for the lab's data.
PRELOAD = ["__main__", "torch", "torch._dynamo", "sklearn.datasets"]


def error_result(spec: CellSpec, error: BaseException | str, wall_time: float = 0.0) -> CellResult:
    """An error result for ``spec``: the error's type and message, then the end of its traceback.

    Example:
        >>> from gradmedic.lab.schema import CellSpec
        >>> spec = CellSpec("depth", "digits", "mlp", "relu", {}, 0, 10, (0.1,))
        >>> error_result(spec, "the worker died").error
        'the worker died'
    """
    if isinstance(error, str):
        return CellResult(spec, status="error", error=error, wall_time=wall_time)
    lines = "".join(traceback.format_exception(type(error), error, error.__traceback__)).splitlines()
    text = f"{type(error).__name__}: {error}\n" + "\n".join(lines[-30:])
    return CellResult(spec, status="error", error=text, wall_time=wall_time)


def call_cell(run: CellFunction, spec: CellSpec) -> CellResult:
    """``run(spec)``, with an exception turned into an error result."""
    start = time.perf_counter()
    try:
        return run(spec)
    except Exception as error:
        return error_result(spec, error, time.perf_counter() - start)


def inline_results(specs: Iterable[CellSpec], run: CellFunction) -> Iterator[CellResult]:
    """Run the cells one after another in this process, torch on one thread meanwhile."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for spec in specs:
            yield call_cell(run, spec)
    finally:
        torch.set_num_threads(threads)


def start_method() -> str:
    """``forkserver`` where the platform has it, else ``spawn`` (never ``fork``: see the module)."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


_LIFELINE: tuple[Connection, Connection] | None = None


def _lifeline() -> Connection:
    """The read end of a pipe whose write end only this process holds, for as long as it lives:
    the read end sees end-of-file once this process has died, however it died."""
    global _LIFELINE
    if _LIFELINE is None:
        _LIFELINE = multiprocessing.Pipe(duplex=False)
    return _LIFELINE[0]


def _init_worker(lifeline: Connection) -> None:
    """Worker set-up: one torch thread; Ctrl-C is the parent's to handle; die with the parent.

    A worker forked by the fork server is the server's child, and the server lives as long as
    any of its children does, so a worker cannot learn that the lab's process is gone (``kill
    -9``) from its own parent: it watches the lifeline instead, and its cell is lost anyway.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    threading.Thread(target=_exit_at_end_of, args=(lifeline,), daemon=True).start()


def _exit_at_end_of(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        while True:
            lifeline.recv()  # nothing is ever sent: returns only by EOFError, once the parent died
    os._exit(1)


def _start_pool(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(start_method())
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(_lifeline(),))


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the cells not started and end the workers now (their cells are lost anyway)."""
    processes = list(getattr(pool, "_processes", None) or {})  # pids; no public API before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for pid in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class _Pool:
    """A process pool that is shut down on leaving, its workers killed if leaving by an error."""

    def __init__(self, workers: int) -> None:
        self.executor = _start_pool(workers)

    def __enter__(self) -> ProcessPoolExecutor:
        return self.executor

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        if kind is None:
            self.executor.shutdown(wait=True)
        else:
            _kill_workers(self.executor)


def pool_results(specs: Iterable[CellSpec], run: CellFunction, workers: int) -> Iterator[CellResult]:
    """Run the cells on a pool of ``workers`` processes; yield each result as it arrives.

    At most ``workers`` cells are given to the pool at a time, so that when a worker dies, the
    cells that may have killed it are the few that were running. Those are then run again, each
    alone in a fresh pool: one that kills its worker there too is recorded as an error, the
    others give their results; then the rest continue on a fresh pool.
    """
    todo = deque(specs)
    while todo:
        with _Pool(workers) as pool:
            suspects = yield from _window(pool, run, todo, workers)
        for spec in suspects:
            with _Pool(1) as alone:
                yield _run_alone(alone, run, spec)


def _window(
    pool: ProcessPoolExecutor, run: CellFunction, todo: deque[CellSpec], width: int
) -> Generator[CellResult, None, list[CellSpec]]:
    """Feed ``todo`` to the pool, ``width`` cells at a time, until done or the pool breaks.

    Returns (as the generator's value) the cells that were running when the pool broke.
    """
    running: dict[Future[CellResult], CellSpec] = {}
    while todo or running:
        while todo and len(running) < width:
            spec = todo.popleft()
            running[pool.submit(run, spec)] = spec
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        if any(isinstance(future.exception(), BrokenProcessPool) for future in done):
            wait(running)  # a broken pool fails every future at once
            done = set(running)
        suspects = []
        for future in done:
            spec = running.pop(future)
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                suspects.append(spec)
            else:
                yield future.result() if error is None else error_result(spec, error)
        if suspects:
            return suspects
    return []


def _run_alone(pool: ProcessPoolExecutor, run: CellFunction, spec: CellSpec) -> CellResult:
    """Run one cell alone on a one-worker pool; a dead worker makes it an error result."""
    future = pool.submit(run, spec)
    processes = dict(getattr(pool, "_processes", None) or {})  # to read the exit code afterwards
    error = future.exception()
    if error is None:
        return future.result()
    if not isinstance(error, BrokenProcessPool):
        return error_result(spec, error)
    return error_result(spec, _death_notice(processes.values()))


def _death_notice(processes: Iterable[Any]) -> str:
    codes = [process.exitcode for process in processes if process.exitcode is not None]
    how = ""
    if codes and codes[0] < 0:
        try:
            how = f" by {signal.Signals(-codes[0]).name}"
        except ValueError:
            how = f" by signal {-codes[0]}"
    elif codes:
        how = f" with exit code {codes[0]}"
    return (
        f"WorkerDied: the worker process running this cell ended{how}, twice (the second time "
        "running it alone): a crash in native code or the out-of-memory killer"
    )


def ray_results(specs: Sequence[CellSpec], run: CellFunction, workers: int) -> Iterator[CellResult]:
    """Run the cells as Ray tasks (one CPU each); yield each result as it arrives.

    Connects to the cluster named by ``RAY_ADDRESS`` when it is set, else starts a local Ray
    instance with ``workers`` CPUs; uses Ray as found when it is already initialized. Only an
    instance (or connection) started here is shut down at the end.
    """
    ray = import_ray()
    owned = not ray.is_initialized()
    if owned:
        _init_ray(ray, workers)
    try:
        yield from _ray_loop(ray, specs, run)
    finally:
        if owned:
            ray.shutdown()


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "the Ray executor needs Ray: pip install 'gradmedic[ray]' (or use the local executor)"
        ) from error
    return ray


def _init_ray(ray: Any, workers: int) -> None:
    import logging

    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, **quiet)


def _ray_cell(run: CellFunction, spec: CellSpec) -> CellResult:
    """The Ray task: one cell on one torch thread."""
    torch.set_num_threads(1)
    return run(spec)


def _ray_loop(ray: Any, specs: Sequence[CellSpec], run: CellFunction) -> Iterator[CellResult]:
    task = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
    pending = {task.remote(run, spec): spec for spec in specs}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as error:  # the cell raised, or its worker died
                    result = error_result(spec, _ray_error_text(error))
                yield result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def _ray_error_text(error: Exception) -> str:
    """The cell's own exception first (Ray keeps it as ``cause``), then the end of Ray's text,
    which holds the remote traceback."""
    cause = getattr(error, "cause", None)
    first = cause if isinstance(cause, BaseException) else error
    lines = str(error).splitlines()
    return f"{type(first).__name__}: {first}\n" + "\n".join(lines[-30:])
