"""The lab's results as tables: one row per cell in ``results.csv`` and ``results.jsonl``.

Columns (:func:`columns`): ``key`` (:meth:`CellSpec.key` under the current library versions: the
cell's file name in ``cells/`` when it was computed under them), ``study``, ``task``,
``recipe``, ``variant``, one ``param_<name>`` per parameter of any cell, then ``seed``,
``axis``, ``axis_value``, ``steps``, ``lrs``, ``score``, ``healthy``, ``findings``, ``lr``,
``metric_name``, ``metric``, ``steps_to_target``, ``wall_time``, ``status``, ``error`` and
``trained`` (the label of the health-score check, see :mod:`gradmedic.lab.scorecheck`; empty for
a failed cell).

In the CSV a missing or non-finite value is empty, ``findings`` and ``lrs`` are joined with ``;``
and a parameter that is neither text nor a number is JSON. The JSON Lines file has the same
columns with JSON types (lists stay lists, NaN is null).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from gradmedic.lab.schema import CellResult, CellSpec
    >>> spec = CellSpec("depth", "digits", "mlp", "relu", {"depth": 4}, 0, 10, (0.1, 0.01), "depth")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     csv_path, _ = write_tables([CellResult(spec, metric=0.9, findings=["a", "b"])], Path(out))
    ...     lines = csv_path.read_text().splitlines()
    >>> lines[0].split(",")[:7], lines[1].split(",")[5:10]
    (['key', 'study', 'task', 'recipe', 'variant', 'param_depth', 'seed'], ['4', '0', 'depth', '4.0', '10'])
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .schema import CellResult, _finite
from .scorecheck import targets, trained
from .summary import axis_value

HEAD = ["key", "study", "task", "recipe", "variant"]
TAIL = [
    "seed",
    "axis",
    "axis_value",
    "steps",
    "lrs",
    "score",
    "healthy",
    "findings",
    "lr",
    "metric_name",
    "metric",
    "steps_to_target",
    "wall_time",
    "status",
    "error",
    "trained",
]


def columns(results: Sequence[CellResult]) -> list[str]:
    """The table's columns: ``HEAD``, one ``param_<name>`` per parameter name, ``TAIL``."""
    params = sorted({name for r in results for name in r.spec.params})
    return [*HEAD, *(f"param_{name}" for name in params), *TAIL]


def flat_row(result: CellResult, best: dict[tuple[str, str], float]) -> dict[str, Any]:
    """One cell as a flat row (JSON types; NaN as None).

    ``key`` is :meth:`CellSpec.key` under the current versions; ``trained`` is the label of the
    health-score check (None for a failed cell).

    Example:
        >>> from gradmedic.lab.schema import CellResult, CellSpec
        >>> spec = CellSpec("depth", "digits", "mlp", "tanh", {"depth": 8}, 1, 50, (0.1, 0.01), "depth")
        >>> row = flat_row(CellResult(spec, metric=0.5, findings=["vanishing_gradient"]), {})
        >>> row["param_depth"], row["axis_value"], row["lrs"], row["score"], row["trained"]
        (8, 8.0, [0.1, 0.01], None, False)
    """
    spec = result.spec
    row: dict[str, Any] = {
        "key": spec.key(),
        "study": spec.study,
        "task": spec.task,
        "recipe": spec.recipe,
        "variant": spec.variant,
    }
    row.update({f"param_{name}": value for name, value in spec.params.items()})
    row.update(
        {
            "seed": spec.seed,
            "axis": spec.axis,
            "axis_value": axis_value(result),
            "steps": spec.steps,
            "lrs": list(spec.lrs),
            "score": result.score,
            "healthy": result.healthy,
            "findings": list(result.findings),
            "lr": result.lr,
            "metric_name": result.metric_name,
            "metric": result.metric,
            "steps_to_target": result.steps_to_target,
            "wall_time": result.wall_time,
            "status": result.status,
            "error": result.error,
            "trained": trained(result, best) if result.ok else None,
        }
    )
    return _finite(row)


def write_tables(results: Sequence[CellResult], out: Path) -> tuple[Path, Path]:
    """``results.csv`` (lists joined with ``;``, missing values empty) and ``results.jsonl``."""
    best = targets(results)
    names = columns(results)
    rows = [flat_row(r, best) for r in results]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv_value(row.get(k)) for k in names} for row in rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.csv").write_text(buffer.getvalue(), encoding="utf-8")
    lines = [json.dumps({k: row.get(k) for k in names}, allow_nan=False) for row in rows]
    (out / "results.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out / "results.csv", out / "results.jsonl"


def _csv_value(value: Any) -> str:
    """``""`` for missing, ``;``-joined lists of findings/lrs, JSON for other non-strings."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ";".join(str(v) for v in value)
    if isinstance(value, (bool, int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True)
