"""Stand-ins for the lab's grid and cell function, for the runner's tests (``test_lab_runner.py``).

``fake_cells(n)`` makes ``n`` specs of a study called ``fake`` (variants ``v0`` ... ``v{n-1}``,
seed 0); what :func:`fake_cell` does with a spec is written in the spec's params, so it behaves
the same in this process, in a pool's worker and on a Ray worker: cell ``i`` scores
``metric = i / 10``, sleeps ``sleep`` seconds, appends ``"<pid> <label>"`` to the ``log`` file,
and the ``fail``-th cell raises a ValueError, the ``crash``-th ends its process with SIGSEGV.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from gradmedic.lab.schema import CellResult, CellSpec


def fake_cells(
    count: int, log: str | None = None, fail: int | None = None, crash: int | None = None, sleep: float = 0.0
) -> list[CellSpec]:
    """``count`` fake specs; the behaviour of each is in its params (see the module doc)."""
    return [
        CellSpec(
            "fake",
            "digits",
            "mlp",
            f"v{i}",
            {"i": i, "log": log, "fail": fail == i, "crash": crash == i, "sleep": sleep},
            seed=0,
            steps=1,
            lrs=(0.1,),
        )
        for i in range(count)
    ]


def fake_cell(spec: CellSpec) -> CellResult:
    """Do what ``spec``'s params say and return ``metric = i / 10`` (see the module doc)."""
    params = spec.params
    if params.get("log"):
        with open(params["log"], "a", encoding="utf-8") as file:
            file.write(f"{os.getpid()} {spec.label}\n")
    if params.get("sleep"):
        time.sleep(float(params["sleep"]))
    if params.get("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if params.get("fail"):
        raise ValueError(f"fake failure in {spec.label}")
    return CellResult(spec, metric=params["i"] / 10, score=1.0, wall_time=float(params.get("sleep") or 0.0))


def logged(log: str | Path) -> list[tuple[int, str]]:
    """The ``(pid, label)`` lines :func:`fake_cell` appended to ``log`` (none when it is missing)."""
    path = Path(log)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(int(pid), label) for pid, label in (line.split(" ", 1) for line in lines if line.strip())]


#: What the fork server imports before forking workers for the fakes (they need neither
#: torch._dynamo nor scikit-learn, which the real cells do: see ``executors.PRELOAD``).
LIGHT_PRELOAD = ["__main__", "torch"]


def run_cli(argv: list[str], count: int, **params: object) -> int:
    """``gradmedic`` on ``argv`` with the lab's grid replaced by ``fake_cells(count, **params)``."""
    from gradmedic.cli import main
    from gradmedic.lab import executors, runner

    executors.PRELOAD = LIGHT_PRELOAD
    runner.build_cells = lambda studies, preset: fake_cells(count, **params)  # type: ignore[assignment,arg-type]
    runner.default_run = lambda: fake_cell  # type: ignore[assignment]
    return main(argv)
