"""The monitor package: its public names, its typed options, and its imports (measuring layer:
no module-level import of the diagnosis or the integrations)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import gradmedic
import gradmedic.monitor as monitor_package
from gradmedic.errors import ConfigError
from gradmedic.monitor.options import DEFAULT_OPTIONS, Options
from gradmedic.schedules import Every, Never

PACKAGE = Path(monitor_package.__file__).parent


def test_the_public_names_are_where_they_were():
    from gradmedic.monitor import ALL_STATS, DEFAULT_OPTIONS, Monitor, watch  # noqa: F401

    assert gradmedic.watch is watch and gradmedic.Monitor is Monitor


def test_the_distributed_exchange_is_the_same_object_from_its_old_place():
    from gradmedic.integrations import distributed as old
    from gradmedic.monitor import distributed as new

    assert old.Reducer is new.Reducer and old.REDUCTIONS is new.REDUCTIONS and old.combine is new.combine


def _module_level_imports(path: Path) -> list[str]:
    """Modules imported at module level (not under ``if TYPE_CHECKING:``), resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "gradmedic.monitor" if node.level == 1 else "gradmedic" if node.level == 2 else ""
            module = f"{base}.{node.module}" if base and node.module else base or node.module or ""
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_module_of_the_package_imports_a_higher_layer(path: Path):
    imported = _module_level_imports(path)
    assert imported, path  # the walk found the imports (so the check below can fail)
    higher = [name for name in imported if name.startswith(("gradmedic.integrations", "gradmedic.diagnosis"))]
    assert higher == [], (path.name, higher)


def test_options_are_typed_frozen_and_checked_before_anything():
    options = Options.parse({"gradients_every": 3, "activations_every": None})
    assert options.gradients_every == Every(3) and options.activations_every == Never()
    assert options.flush_every == DEFAULT_OPTIONS["flush_every"] and options.log_path is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.flush_every = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match="did you mean 'flush_every'"):
        Options.parse({"flush_evry": 3})
    with pytest.raises(ConfigError, match="max_rows=0: give a positive integer"):
        Options.parse({"max_rows": 0})
