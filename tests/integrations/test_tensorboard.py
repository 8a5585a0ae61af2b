"""The TensorBoard sink: event files read back with tensorboard's EventAccumulator."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("tensorboard")
pytest.importorskip("matplotlib")

import gradmedic
from gradmedic.integrations.tensorboard import TensorBoardSink, read_images, read_scalars
from gradmedic.sinks import ListSink


def _run(sinks: list, steps: int = 5) -> gradmedic.Monitor:
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradmedic.watch(model, opt, sinks=sinks, flush_every=2) as monitor:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(16, 8)).pow(2).mean()
            loss.backward()
            opt.step()
            monitor.step(loss)
        monitor.diagnose()
    return monitor


def test_scalars_and_the_flow_image_are_in_the_event_files(tmp_path):
    memory = ListSink(per_layer=True)
    sink = TensorBoardSink(tmp_path / "tb", per_layer=True)
    _run([memory, sink])
    scalars = read_scalars(tmp_path / "tb")
    expected: dict[str, dict[int, float]] = {}
    for step, values in memory.rows:
        for name, value in values.items():
            expected.setdefault(f"gradmedic/{name}", {})[step] = value
    for tag, by_step in expected.items():
        steps, values = scalars[tag]
        assert steps == sorted(by_step), tag
        np.testing.assert_allclose(values, [by_step[s] for s in steps], rtol=1e-6)  # stored as float32
    assert "gradmedic/signal_rms/0" in scalars and "gradmedic/weight_grad_norm/16" in scalars
    assert scalars["gradmedic/health_score"][0] == [4]  # the diagnosis, at the last step
    assert scalars["gradmedic/warnings"][1][0] >= 1  # a vanishing sigmoid stack
    assert read_images(tmp_path / "tb") == {"gradmedic/flow": [4]}


def test_a_writer_of_your_own_is_flushed_not_closed(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    sink = TensorBoardSink(writer=writer, images=False, prefix="grad/")
    _run([sink], steps=2)  # detach closes the sink: the writer stays usable
    writer.add_scalar("mine", 1.0, 0)
    writer.close()
    scalars = read_scalars(tmp_path)
    assert "mine" in scalars and "grad/signal_first" in scalars
    assert "grad/loss" in scalars and read_images(tmp_path) == {}


def test_a_missing_tensorboard_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install 'gradmedic\[tensorboard\]'"):
        TensorBoardSink(tmp_path)
