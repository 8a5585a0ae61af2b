"""Dependencies point one way: every import of the package, checked against its layer map.

The map is :data:`gradmedic._code_layers.CODE_LAYERS`. The checker reads the source (``ast``), so
it sees the imports inside functions as well as those at the top of a module; the imports under
``if TYPE_CHECKING:`` are left out (they never run). A module's import of its own parent packages
(Python runs each ``__init__`` on the way down) is not counted: the package's ``__init__`` is the
facade that imports everything.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

import gradmedic
from gradmedic._code_layers import CODE_LAYERS, LAYERS, layer_of

Graph = dict[str, set[str]]
MAP_FILE = "src/gradmedic/_code_layers.py"


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package at ``root``."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, except under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from import_nodes(child)


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports (a name taken from a module counts as it)."""
    found: set[str] = set()
    for node in import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
            continue
        base = _base(module, path.name == "__init__.py", node)
        for alias in node.names:
            if f"{base}.{alias.name}" in modules:
                found.add(f"{base}.{alias.name}")
            elif base in modules:
                found.add(base)
    return found - {module}


def import_graph(root: Path, package: str) -> Graph:
    """Module -> the package's modules it imports."""
    modules = module_files(root, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each group of modules that import each other."""
    found, done = [], set()
    for start in sorted(graph):
        cycle = None if start in done else cycle_through(graph, start)
        if cycle:
            found.append(cycle)
            done.update(cycle)
    return found


def cycle_through(graph: Graph, start: str) -> list[str] | None:
    """A shortest import path from ``start`` back to itself (breadth first), or None."""
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [*reversed(path), start]
                if nxt not in came:
                    came[nxt] = node
                    following.append(nxt)
        frontier = following
    return None


def breaches(graph: Graph, layers: dict[str, str], order: tuple[str, ...] = LAYERS) -> list[str]:
    """Each import from a lower layer to a higher one, and each module the map does not know."""
    problems = [
        f"{module} is in no layer: add it to CODE_LAYERS in {MAP_FILE}"
        for module in sorted(graph)
        if layer_of(module, layers) is None
    ]
    for module, targets in sorted(graph.items()):
        low = layer_of(module, layers)
        for target in sorted(targets):
            high = layer_of(target, layers)
            if low and high and order.index(high) > order.index(low):
                problems.append(f"{module} ({low}) imports {target} ({high}), a higher layer")
    return problems


PACKAGE_ROOT = Path(gradmedic.__file__).parent


def test_no_module_imports_from_a_higher_layer() -> None:
    problems = breaches(import_graph(PACKAGE_ROOT, "gradmedic"), CODE_LAYERS)
    assert not problems, "\n".join(problems)


def test_no_import_cycle() -> None:
    found = cycles(import_graph(PACKAGE_ROOT, "gradmedic"))
    assert not found, "\n".join(" -> ".join(cycle) for cycle in found)


def test_every_key_of_the_map_is_a_module_and_every_layer_a_known_one() -> None:
    modules = module_files(PACKAGE_ROOT, "gradmedic")
    assert set(CODE_LAYERS) <= set(modules), set(CODE_LAYERS) - set(modules)
    assert set(CODE_LAYERS.values()) <= set(LAYERS)


def _all_module_names() -> list[str]:
    names = ["gradmedic"]
    for info in pkgutil.walk_packages(gradmedic.__path__, "gradmedic."):
        if not info.name.endswith("__main__"):  # importing it runs the command line
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _all_module_names())
def test_a_module_path_means_the_module(name: str) -> None:
    """No package rebinds a submodule's name to something else (``mock.patch`` needs the module)."""
    module = importlib.import_module(name)
    parent, _, child = name.rpartition(".")
    if parent:
        assert getattr(sys.modules[parent], child) is module, f"{parent}.{child} is not the module {name}"


# -- the checker itself, on a small fake package --------------------------------------------


def _fake_package(root: Path) -> Path:
    """``fake``: ``low`` imports ``high`` (inside a function), ``a`` and ``b`` import each other,
    ``quiet`` imports ``high`` only for type checking, ``sub/extra`` is in no layer."""
    files = {
        "__init__.py": "",
        "low.py": "def f():\n    from .high import g\n    return g\n",
        "high.py": "from . import low\n\ndef g():\n    return low\n",
        "a.py": "import fake.b\n",
        "b.py": "from .a import thing\n",
        "quiet.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import g\n",
        "sub/__init__.py": "",
        "sub/extra.py": "from ..low import f\n",
    }
    for name, text in files.items():
        (root / "fake" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "fake" / name).write_text(text)
    return root / "fake"


FAKE_LAYERS = {"fake": "apps", "fake.low": "foundations", "fake.quiet": "foundations",
               "fake.high": "measuring", "fake.a": "measuring", "fake.b": "measuring"}  # fmt: skip


def test_the_checker_reads_imports_inside_functions_relative_ones_and_skips_type_checking(
    tmp_path: Path,
) -> None:
    graph = import_graph(_fake_package(tmp_path), "fake")
    assert graph == {
        "fake": set(),
        "fake.low": {"fake.high"},
        "fake.high": {"fake.low"},
        "fake.a": {"fake.b"},
        "fake.b": {"fake.a"},
        "fake.quiet": set(),
        "fake.sub": set(),
        "fake.sub.extra": {"fake.low"},
    }


def test_the_checker_finds_cycles_upward_imports_and_unmapped_modules(tmp_path: Path) -> None:
    graph = import_graph(_fake_package(tmp_path), "fake")
    assert cycles(graph) == [["fake.a", "fake.b", "fake.a"], ["fake.high", "fake.low", "fake.high"]]
    assert breaches(graph, FAKE_LAYERS) == [
        f"fake.sub is in no layer: add it to CODE_LAYERS in {MAP_FILE}",
        f"fake.sub.extra is in no layer: add it to CODE_LAYERS in {MAP_FILE}",
        "fake.low (foundations) imports fake.high (measuring), a higher layer",
    ]


def test_a_longer_cycle_is_reported_once_with_its_path() -> None:
    graph = {"m.a": {"m.b"}, "m.b": {"m.c"}, "m.c": {"m.a", "m.d"}, "m.d": set()}
    assert cycles(graph) == [["m.a", "m.b", "m.c", "m.a"]]


def test_mock_patch_reaches_a_function_through_its_module_path() -> None:
    """The case the rebinding broke: ``gradmedic.remedies.treatment`` was the function ``treat``."""
    import torch
    from torch import nn

    from gradmedic.remedies import treatment

    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with mock.patch("gradmedic.remedies.treatment.checkup", wraps=treatment.checkup) as spy:
        gradmedic.treat(model, torch.randn(8, 4), suggest_lr=False)
    assert spy.call_count >= 1
