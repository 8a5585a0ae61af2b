"""Unit tests of :mod:`gradmedic.model_spec`: what ``package.module:function`` and ``file.py:function``
load, and the one-line errors the command line shows for each user mistake."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from gradmedic.errors import ConfigError
from gradmedic.model_spec import ModelSpec, load_model_spec

HEADER = "import torch\nfrom torch import nn\n"


def write(tmp_path: Path, body: str, name: str = "target_file") -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(HEADER + body)
    return str(path)


TUPLES = """
def two():
    return nn.Linear(2, 1), torch.ones(3, 2)
def four():
    return nn.Linear(2, 1), torch.ones(3, 2), torch.zeros(3, 1), torch.nn.functional.l1_loss
def five():
    m = nn.Linear(2, 1)
    return [m, torch.ones(3, 2), None, None, torch.optim.SGD(m.parameters(), 0.1)]
"""


def test_tuple_forms_fill_the_target_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, TUPLES)
    two = load_model_spec(f"{path}:two")
    assert isinstance(two.model, nn.Linear) and torch.equal(two.inputs, torch.ones(3, 2))
    assert two.targets is None and two.loss_fn is None and two.optimizer is None
    four = load_model_spec(f"{path}:four")
    assert torch.equal(four.targets, torch.zeros(3, 1)) and four.loss_fn is torch.nn.functional.l1_loss
    five = load_model_spec(f"{path}:five")
    assert isinstance(five.optimizer, torch.optim.SGD)
    assert five.optimizer.param_groups[0]["params"][0] is five.model.weight


def test_dict_form_and_module_form() -> None:
    target = load_model_spec("gradmedic.demo:sick_example")
    assert isinstance(target, ModelSpec) and isinstance(target.model, nn.Module)
    assert target.model(target.inputs).shape[0] == len(target.inputs)


def test_dict_form_from_a_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, "def make():\n    return {'model': nn.Tanh(), 'inputs': {'input': torch.ones(1)}}\n"
    )
    target = load_model_spec(f"{path}:make")
    assert isinstance(target.model, nn.Tanh) and set(target.inputs) == {"input"}


#: A function body (``f``) that returns or does something wrong, and what the error says.
WRONG = {
    "no-tuple": (
        "return nn.Linear(1, 1)",
        "returned Linear: return (model, inputs[, targets[, loss_fn]]) or a dict",
    ),
    "one-item": ("return (nn.Linear(1, 1),)", "returned tuple: return (model, inputs"),
    "no-inputs": (
        "return {'model': nn.Linear(1, 1)}",
        "returned a dict with keys ['model']: use model, inputs",
    ),
    "unknown-key": ("return {'model': nn.Tanh(), 'inputs': 1, 'lr': 0.1}", "keys ['inputs', 'lr', 'model']"),
    "not-a-module": (
        "return 'a model', torch.ones(1)",
        "returned a str as the model: return an nn.Module first",
    ),
    "bad-optimizer": (
        "return nn.Tanh(), 1, None, None, 'adam'",
        "fifth item is a str: the fifth item is the optimizer",
    ),
    "raises": ("raise KeyError('weights.pt')", ":f raised KeyError: 'weights.pt'"),
}


@pytest.mark.parametrize(("body", "message"), WRONG.values(), ids=WRONG.keys())
def test_what_the_function_returns_is_checked(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, f"def f():\n    {body}\n")
    with pytest.raises(ConfigError) as error:
        load_model_spec(f"{path}:f")
    assert message in str(error.value)


def test_a_name_that_is_not_a_function_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "f = 3\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path} has no function 'f'")):
        load_model_spec(f"{path}:f")


def test_spec_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=re.escape("must name a function: 'package.module:function'")):
        load_model_spec("gradmedic.demo")
    with pytest.raises(ConfigError, match=re.escape("no such file: missing_dir/model.py")):
        load_model_spec("missing_dir/model.py:make")
    with pytest.raises(ConfigError, match=re.escape("cannot import 'no_such_package_xyz'")):
        load_model_spec("no_such_package_xyz:make")
    with pytest.raises(ConfigError, match=re.escape("gradmedic.demo has no function 'nothing'")):
        load_model_spec("gradmedic.demo:nothing")


def test_a_file_that_fails_to_import_is_a_config_error_and_leaves_no_module(tmp_path: Path) -> None:
    path = write(tmp_path, "raise RuntimeError('no GPU here')\n", name="broken_target_xyz")
    with pytest.raises(ConfigError, match=r"cannot import .*broken_target_xyz.py: RuntimeError: no GPU here"):
        load_model_spec(f"{path}:make")
    assert "broken_target_xyz" not in sys.modules
    bad_syntax = write(tmp_path, "def f(:\n", name="bad_syntax_xyz")
    with pytest.raises(ConfigError, match="SyntaxError"):
        load_model_spec(f"{bad_syntax}:f")


def test_a_module_that_raises_at_import_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "explodes_xyz.py").write_text("raise ValueError('bad config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="cannot import 'explodes_xyz': ValueError: bad config"):
        load_model_spec("explodes_xyz:make")
