"""``gradmedic._providers``: a lower layer gets a higher one's function without importing it,
and says clearly when nobody provided it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import gradmedic
from gradmedic import _providers
from gradmedic._providers import OWNERS, provide, provided
from gradmedic.diagnosis import Report
from gradmedic.errors import UnsupportedError


def test_each_name_is_provided_by_the_module_named_as_its_owner() -> None:
    for name, owner in OWNERS.items():
        assert provided(name).__module__.startswith(owner), (name, provided(name).__module__)
    assert provided("diagnose") is gradmedic.diagnose


def test_a_name_nobody_asks_for_is_refused() -> None:
    with pytest.raises(KeyError, match="add it to OWNERS"):
        provide("report_pdf", print)


def test_a_monitor_without_the_diagnosis_says_so_and_keeps_working(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    with gradmedic.watch(model) as monitor:
        model(torch.randn(8, 4)).sum().backward()
        monitor.step()
        with monkeypatch.context() as patch:
            patch.delitem(_providers._PROVIDED, "diagnose")
            with pytest.raises(
                UnsupportedError, match=r"diagnose comes from gradmedic\.diagnosis, which is not"
            ):
                monitor.diagnose()
        assert isinstance(monitor.diagnose(), Report)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_a_report_without_the_html_pages_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(_providers._PROVIDED, "report_fragment")
    with pytest.raises(UnsupportedError, match=r"report_fragment comes from gradmedic\.pages\.report"):
        Report([], 1.0, "checkup")._repr_html_()


def test_importing_any_part_first_provides_everything() -> None:
    """Python runs ``gradmedic/__init__`` before any submodule, so the views and the diagnosis are
    there whichever module a user imports first."""
    code = """
import torch
from torch import nn
from gradmedic.monitor import Monitor
model = nn.Linear(3, 1)
with Monitor(model) as monitor:
    model(torch.randn(4, 3)).sum().backward()
    monitor.step()
    print(type(monitor.diagnose()).__name__, "<div" in monitor.history._repr_html_())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["Report", "True"]
