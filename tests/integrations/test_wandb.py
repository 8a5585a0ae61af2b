"""The W&B sink in offline mode: the rows in the run's local file, the summary, the image."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
import torch
from torch import nn

wandb = pytest.importorskip("wandb")
pytest.importorskip("matplotlib")

import gradmedic  # noqa: E402
from gradmedic.errors import ConfigError  # noqa: E402
from gradmedic.integrations.wandb import WandbSink  # noqa: E402
from gradmedic.sinks import ListSink  # noqa: E402

BLOCK = 32 * 1024


def read_history(path: Path, timeout: float = 20.0) -> list[dict[str, object]]:
    """History rows of an offline run file, once its exit record is written (after finish())."""
    deadline = time.monotonic() + timeout
    while True:
        records = _records(path.read_bytes())
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append(
                {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in items}
            )
    return rows


def _records(data: bytes) -> list:
    """The Record protos of a ``run-*.wandb`` file: a LevelDB-style log (32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2

    assert data[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # block trailer: padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
        if length == 0 and kind == 0:  # not written yet
            break
    return records


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "300")  # the wandb service starts slowly under load
    return tmp_path


def test_rows_summary_and_flow_image_in_the_offline_run(offline):
    run = wandb.init(project="gradmedic-test")
    memory = ListSink()
    sink = WandbSink(run)
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(8, 8), nn.Tanh())], nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradmedic.watch(model, opt, sinks=[memory, sink], flush_every=2) as monitor:
        for _ in range(4):
            opt.zero_grad()
            loss = model(torch.randn(16, 8)).pow(2).mean()
            loss.backward()
            opt.step()
            monitor.step(loss)
        report = monitor.diagnose()
    summary = dict(run.summary)
    run_dir = Path(run.dir).parent
    run.finish()
    assert summary["gradmedic/health_score"] == pytest.approx(report.score)
    assert summary["gradmedic/signal_first"] == pytest.approx(memory.series("signal_first")[1][-1])
    rows = read_history(next(run_dir.glob("run-*.wandb")))
    ours = [row for row in rows if "gradmedic/signal_first" in row or "gradmedic/loss" in row]
    expected = [
        {"gradmedic/step": step, **{f"gradmedic/{k}": v for k, v in values.items()}}
        for step, values in memory.rows
    ]
    assert [{k: v for k, v in row.items() if not k.startswith("_")} for row in ours] == expected
    images = [row for row in rows if row.get("gradmedic/flow/_type") == "image-file"]
    assert len(images) == 1 and images[0]["gradmedic/step"] == 3
    assert list((run_dir / "files" / "media" / "images" / "gradmedic").glob("flow_*.png"))


def test_no_active_run_is_a_clear_error(offline):
    assert wandb.run is None
    with pytest.raises(ConfigError, match=r"wandb\.init"):
        WandbSink()
