"""Results on disk: one JSON file per finished cell, written atomically, read back for resuming.

Layout of a lab directory ``DIR``::

    DIR/cells/<key>.json     one CellResult each (key: CellSpec.key(), which includes versions)

A cell's file appears only once the cell has finished (written to a temporary file in the same
directory, then renamed), so a run that is interrupted at any moment leaves every finished cell
readable and no half-written one. A spec whose key has a file is finished; a spec run under other
library versions has another key, so stale results are recomputed, never mixed in.

Example:
    >>> import tempfile
    >>> from gradmedic.lab.schema import CellResult, CellSpec
    >>> spec = CellSpec("depth", "digits", "mlp", "relu", {"depth": 4}, 0, 10, (1e-3,))
    >>> with tempfile.TemporaryDirectory() as out:
    ...     store = ResultStore(out)
    ...     before = store.is_done(spec)
    ...     _ = store.save(CellResult(spec, metric=0.9))
    ...     (before, store.is_done(spec), [r.metric for r in store.load()])
    (False, True, [0.9])
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import ConfigError
from .schema import CellResult, CellSpec, versions


class ResultStore:
    """The finished cells of a lab directory (see the module docstring for the layout)."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.root = Path(out)
        self.cells = self.root / "cells"

    def path(self, spec: CellSpec) -> Path:
        return self.cells / f"{spec.key()}.json"

    def is_done(self, spec: CellSpec) -> bool:
        """Whether ``spec`` has a saved result under the current library versions."""
        return self.path(spec).is_file()

    def save(self, result: CellResult) -> Path:
        """Write ``result`` atomically (temporary file + rename) and return its path."""
        self.cells.mkdir(parents=True, exist_ok=True)
        target = self.path(result.spec)
        handle, temporary = tempfile.mkstemp(dir=self.cells, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump(result.to_dict(), file)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def load(self, current_only: bool = True) -> list[CellResult]:
        """Every saved result, ordered by study and label; with ``current_only`` (the default)
        only those computed under the current library versions (see :func:`versions`).
        """
        results = []
        now = versions()
        for path in sorted(self.cells.glob("*.json")):
            result = _read_result(path)
            if not current_only or result.versions == now:
                results.append(result)
        return sorted(results, key=lambda r: (r.spec.study, r.spec.variant, r.spec.x or 0.0, r.spec.seed))


def _read_result(path: Path) -> CellResult:
    """One saved cell, or a ConfigError naming the file and what is wrong with it."""
    try:
        return CellResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as error:
        what = f"not JSON at line {error.lineno}, column {error.colno} ({error.msg})"
    except KeyError as error:
        what = f"the field {error.args[0]!r} is missing"
    except (TypeError, ValueError, AttributeError, UnicodeDecodeError) as error:
        what = f"{type(error).__name__}: {error}"
    raise ConfigError(
        f"{path}: a damaged lab result ({what}); delete it and run the same lab command again to "
        "recompute that cell"
    )


def load_results(out: str | os.PathLike[str]) -> list[CellResult]:
    """Every current result saved under ``out`` (see :class:`ResultStore`)."""
    return ResultStore(out).load()
