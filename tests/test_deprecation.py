"""Names renamed in 0.2 still work for one release, each with a DeprecationWarning naming the new one."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from torch import nn

import gradmedic
import gradmedic.remedies
from gradmedic.remedies import init, lsuv

OLD_FUNCTIONS = {
    "truncate": "make_shallower",
    "forget_gate_bias": "set_forget_gate_bias",
    "clip_gradients": "install_gradient_clipping",
}


@pytest.mark.parametrize("package", [gradmedic, gradmedic.remedies], ids=lambda m: m.__name__)
@pytest.mark.parametrize("old", sorted(OLD_FUNCTIONS))
def test_an_old_function_name_warns_and_is_the_new_function(package, old: str) -> None:
    new = OLD_FUNCTIONS[old]
    with pytest.warns(DeprecationWarning, match=rf"{package.__name__}\.{old} is renamed {new}; .* 0\.3"):
        function = getattr(package, old)
    assert function is getattr(package, new)
    assert old not in package.__all__ and new in package.__all__


def test_old_constants_warn_and_keep_their_values() -> None:
    with pytest.warns(DeprecationWarning, match="DEEP is renamed ORTHOGONAL_FROM_DEPTH"):
        assert init.DEEP == init.ORTHOGONAL_FROM_DEPTH
    with pytest.warns(DeprecationWarning, match="CALIBRATED is renamed LSUV_LAYER_TYPES"):
        assert lsuv.CALIBRATED is lsuv.LSUV_LAYER_TYPES


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'make_shallowr'"):
        gradmedic.remedies.make_shallowr  # noqa: B018


@pytest.mark.parametrize(("old", "new"), [("every", "gradients_every"), ("time_every", "through_time_every")])
def test_an_old_option_name_warns_and_sets_the_new_option(old: str, new: str) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    with pytest.warns(DeprecationWarning, match=rf"gradmedic\.watch\({old}=\.\.\.\) is renamed {new}="):
        monitor = gradmedic.watch(model, **{old: 3})
    with monitor:
        assert monitor.options.given[new] == 3 and old not in monitor.options.given
        for _ in range(4):
            model(torch.randn(4, 3)).sum().backward()
            monitor.step()
    if new == "gradients_every":
        steps, _ = monitor.history.array("signal_norm")
        assert list(steps) == [0, 3]


def test_old_and_new_option_names_together_are_refused_before_any_hook() -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="give gradients_every= only"):
        gradmedic.watch(model, every=2, gradients_every=3)
    assert not model._forward_hooks and not model._forward_pre_hooks


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        (
            "gradmedic.targets",
            "gradmedic.model_spec",
            {"Target": "ModelSpec", "load_target": "load_model_spec"},
        ),
        (
            "gradmedic.profile",
            "gradmedic.layer_profiles",
            {"Profile": "Profile", "layer_profile": "layer_profile"},
        ),
    ],
)
def test_an_old_module_warns_at_import_and_reexports_the_new_names(old: str, new: str, names: dict) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"the module {old} is renamed {new}"):
        module = importlib.import_module(old)
    renamed = importlib.import_module(new)
    for old_name, new_name in names.items():
        assert getattr(module, old_name) is getattr(renamed, new_name)
