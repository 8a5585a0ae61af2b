"""Finding kinds and remedy families are enums that stay the strings they name (JSON, reprs,
comparisons), no module matches them as bare strings, and treat's table of families."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import gradmedic
from gradmedic.diagnosis import Family, Finding, Kind, Remedy, Report, Severity, catalog
from gradmedic.errors import ConfigError
from gradmedic.remedies.changes import Change

treat_module = importlib.import_module("gradmedic.remedies.treatment")
SOURCE = Path(gradmedic.__file__).parent
#: Calls whose first argument is a finding kind or a remedy family.
NAMED_BY = {"Finding": Kind, "Remedy": Family, "_remedy": Family, "Change": Family}


def _string_first_arguments() -> list[str]:
    """``file:line call("...")`` for each call of NAMED_BY with a string literal first (docstrings,
    where examples may build them by hand, are not code and are not parsed as calls)."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            first = node.args[0]
            if name in NAMED_BY and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(f"{path.relative_to(SOURCE)}:{node.lineno} {name}({first.value!r})")
    return found


def test_no_module_names_a_kind_or_family_with_a_bare_string():
    assert _string_first_arguments() == []


def test_the_scan_finds_a_bare_string_where_there_is_one(tmp_path, monkeypatch):
    (tmp_path / "bad.py").write_text('Finding("dead_units", 1, [], "", "")\nChange(Family.INIT, "0", "x")\n')
    monkeypatch.setattr(f"{__name__}.SOURCE", tmp_path)
    assert _string_first_arguments() == ["bad.py:1 Finding('dead_units')"]


def test_a_kind_is_the_string_it_names():
    kind = Kind.DEAD_UNITS
    assert kind == "dead_units" and kind == "dead_units"
    assert f"{kind}" == str(kind) == "dead_units" and type(str(kind)) is str
    assert f"{kind:<12}|" == "dead_units  |"
    assert ", ".join([kind, Kind.TOO_DEEP]) == "dead_units, too_deep"
    assert repr(kind) == repr("dead_units") and repr([kind]) == "['dead_units']"
    assert kind in {"dead_units"} and "dead_units" in {kind}
    assert json.dumps({kind: kind}) == '{"dead_units": "dead_units"}'
    assert pickle.loads(pickle.dumps(kind)) is kind


def _report(kind: str, family: str) -> Report:
    remedy = Remedy(family, "name", "why", "code")
    return Report([Finding(kind, Severity.WARNING, ["0"], "evidence", "cause", [remedy])], 0.3, "checkup")


def test_report_json_is_byte_identical_with_enums_or_strings_and_loads_back_enums():
    with_enums = _report(Kind.VANISHING_GRADIENT, Family.INIT).to_json()
    assert with_enums == _report("vanishing_gradient", "init").to_json()
    loaded = Report.from_json(with_enums)
    assert loaded.findings[0].kind is Kind.VANISHING_GRADIENT
    assert loaded.findings[0].remedies[0].family is Family.INIT
    assert loaded.to_json() == with_enums


def test_a_saved_kind_this_version_does_not_know_still_loads():
    text = _report("kind_from_the_future", "family_from_the_future").to_json()
    loaded = Report.from_json(text)
    assert loaded.kinds == ["kind_from_the_future"] and loaded.to_json() == text


def test_every_catalog_remedy_has_a_family_member():
    arguments = {"xavier_or_orthogonal_init": (True,), "shallower": (3,)}
    makers = [f for name, f in vars(catalog).items() if inspect.isfunction(f) and not name.startswith("_")]
    remedies = [make(*arguments.get(make.__name__, ())) for make in makers]
    assert len(remedies) >= 15 and all(type(r.family) is Family for r in remedies)


# -- treat's table -------------------------------------------------------------------------------


def test_treat_tries_the_families_least_invasive_first():
    assert treat_module.FAMILIES == (
        "init",
        "activation",
        "normalization",
        "residual",
        "recurrent",
        "clipping",
    )
    assert all(type(f) is Family for f in treat_module.FAMILIES)
    assert set(catalog.AUTOMATIC_FAMILIES) == set(treat_module.FAMILIES)


def _sick(*kinds_and_families: tuple[str, str]) -> Report:
    findings = [
        Finding(kind, Severity.WARNING, [], "", "", [Remedy(family, "", "", "")])
        for kind, family in kinds_and_families
    ]
    return Report(findings, 0.2, "checkup")


def test_next_family_is_the_least_invasive_one_recommended():
    report = _sick((Kind.SATURATED_ACTIVATIONS, Family.NORMALIZATION), (Kind.VANISHING_GRADIENT, Family.INIT))
    everything = treat_module.FAMILIES
    assert treat_module.next_family(report, everything, set()) == "init"
    assert treat_module.next_family(report, everything, {"init"}) == "normalization"
    assert treat_module.next_family(report, everything, {"init", "normalization"}) is None
    assert treat_module.next_family(Report([], 1.0, "checkup"), everything, set()) is None


def test_vanishing_through_time_puts_the_recurrent_family_first():
    report = _sick((Kind.VANISHING_THROUGH_TIME, Family.INIT))
    everything = treat_module.FAMILIES
    assert treat_module.next_family(report, everything, set()) == "recurrent"
    assert treat_module.next_family(report, everything, {"recurrent"}) == "init"
    assert treat_module.next_family(report, ("init",), set()) == "init"  # recurrent not allowed


def test_apply_family_runs_the_tables_function_and_refuses_a_training_setting():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    dead = _sick((Kind.DEAD_UNITS, Family.ACTIVATION))
    changes = treat_module.apply_family(model, "activation", torch.randn(8, 4), dead)
    assert [c.action for c in changes if c.family == Family.ACTIVATION] == ["ReLU -> LeakyReLU"]
    for family in ("clipping", "optimizer", "nonsense"):
        with pytest.raises(ConfigError, match=f"no remedy family '{family}'"):
            treat_module.apply_family(model, family, None, dead)


def test_a_change_with_a_family_member_prints_and_saves_as_before():
    assert str(Change(Family.INIT, "0", "orthogonal")) == str(Change("init", "0", "orthogonal"))
    assert Change(Family.INIT, "0", "x").to_dict() == Change("init", "0", "x").to_dict()
