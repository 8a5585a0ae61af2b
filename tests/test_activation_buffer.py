"""Activation statistics on an accelerator, copied and measured together or taken at once: the
same numbers as plain autograd and the host path, whatever happens to an output after the hook
saw it. Run on CPU by routing the monitor's CPU tensors through the accelerator's paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradmedic import _signal_buffer, stats
from gradmedic._activation_buffer import ActivationBuffer
from gradmedic.monitor import collect as monitor
from models import ZOO, Case, assert_matches_reference, monitored_step, reference


@pytest.fixture(params=["copied", "at once"])
def device_path(request, monkeypatch):
    """Every output's statistics take one of the accelerator's paths (copied: through the
    ActivationBuffer, as small outputs on a GPU; at once: in the hook, as large ones)."""
    monkeypatch.setattr(monitor, "activation_path", lambda output: request.param)


def _relu_inplace_case() -> Case:
    """Each Linear's output is overwritten by the in-place ReLU after its hook copied it."""
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(inplace=True), nn.Linear(16, 16), nn.ReLU(inplace=True),
                          nn.Linear(16, 3))  # fmt: skip
    target = torch.randn(16, 3)
    return Case(model, (torch.randn(16, 5) * 3,), lambda out: (out - target).pow(2).mean())


@pytest.mark.parametrize("budget", [1, 1 << 30])
@pytest.mark.parametrize("name", ["mlp_tanh", "mlp_sigmoid", "mlp_relu", "cnn_bn", "shared", "transformer",
                                  "inplace_dropout", "lstm", "relu_inplace"])  # fmt: skip
def test_every_statistic_equals_plain_autograd_through_the_buffer(device_path, monkeypatch, name, budget):
    monkeypatch.setattr(_signal_buffer, "DEVICE_HOLD_BYTES", budget)
    case = _relu_inplace_case() if name == "relu_inplace" else ZOO[name]()
    expected = reference(case)
    assert_matches_reference(monitored_step(case), expected)


def test_only_small_accelerator_outputs_are_copied():
    small, large = torch.empty(256, 256), torch.empty(1024, 1024, 2)
    assert monitor.activation_path(small) == "host"
    assert monitor.activation_path(small.to("meta")) == "copied"
    assert monitor.activation_path(large.to("meta")) == "at once"


def test_a_copy_is_not_changed_by_what_happens_to_the_output_later():
    buffer = ActivationBuffer()
    kind = stats.activation_kind(nn.Tanh())
    output = torch.tanh(torch.randn(8, 4) * 3)
    expected = stats.host_activation_stats(output, kind)
    buffer.add(2, output, kind)
    output.zero_()
    [(layer, row)] = buffer.take()
    assert layer == 2
    np.testing.assert_allclose(row.double().numpy(), expected, rtol=1e-6)


def test_groups_of_several_shapes_and_kinds_keep_each_row_with_its_layer(monkeypatch):
    monkeypatch.setattr(_signal_buffer, "DEVICE_HOLD_BYTES", 200)  # measured in two rounds
    buffer = ActivationBuffer()
    torch.manual_seed(0)
    added = []
    outputs = [(nn.Tanh(), (8, 4)), (nn.ReLU(), (8, 4)), (nn.Tanh(), (8, 4)), (nn.ReLU(), (6, 2, 3)),
               (None, (8, 4)), (nn.Tanh(), (8, 4))]  # fmt: skip
    for layer, (module, shape) in enumerate(outputs):
        output = (module or nn.Identity())(torch.randn(*shape) * 2)
        kind = stats.activation_kind(module)
        buffer.add(layer, output, kind)
        added.append((layer, stats.host_activation_stats(output, kind)))
    rows = dict((layer, row) for layer, row in buffer.take())
    assert sorted(rows) == [layer for layer, _ in added]
    for layer, expected in added:
        np.testing.assert_allclose(rows[layer].double().numpy(), expected, rtol=1e-5, atol=1e-7)
    assert buffer.take() == []
