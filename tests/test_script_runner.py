"""``gradmedic run SCRIPT``: unmodified scripts watched, reports written, the script's status kept."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.optim import optimizer as optimizer_module

from gradmedic import History, Report
from gradmedic.cli import main
from gradmedic.script_runner import owning_module, run_script

PLAIN_LOOP = """
import sys, torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
opt = torch.optim.SGD(model.parameters(), lr=float(sys.argv[2]) if len(sys.argv) > 2 else 0.1)
data = torch.randn(64, 8), torch.randint(0, 3, (64,))
for step in range(int(sys.argv[1])):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(data[0]), data[1])
    loss.backward()
    opt.step()
torch.save({"state": model.state_dict(), "loss": loss.item()}, "final.pt")
"""

NAN_HALFWAY = """
import math, sys, torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(32, 8), torch.randn(32, 1)
for step in range(20):
    opt.zero_grad()
    scale = float("nan") if step >= 10 else 1.0
    loss = nn.functional.mse_loss(model(x * scale), y)
    loss.backward()
    opt.step()
    if not math.isfinite(loss.item()):
        print(f"loss is NaN at step {step}", file=sys.stderr)
        sys.exit(3)
"""

TWO_MODELS = """
import torch
from torch import nn
torch.manual_seed(0)
generator = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
critic = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
g_opt = torch.optim.Adam(generator.parameters(), lr=1e-3)
c_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
for step in range(12):
    c_opt.zero_grad()
    critic(generator(torch.randn(16, 4)).detach()).mean().backward()
    c_opt.step()
    g_opt.zero_grad()
    (-critic(generator(torch.randn(16, 4))).mean()).backward()
    g_opt.step()
"""

RAISES = """
import torch
from torch import nn
model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(6):
    opt.zero_grad()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    opt.step()
    if step == 4:
        raise {error}("stopped by the script")
"""

LIGHTNING = """
import lightning as L, torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)

data = DataLoader(TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,))), batch_size=8)
trainer = L.Trainer(max_steps=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False)
trainer.fit(Net(), data)
"""

HF_TRAINER = """
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    vocab_size=100, max_position_embeddings=32)
model = BertForSequenceClassification(config)
data = [{"input_ids": torch.randint(0, 100, (8,)), "labels": i % 2} for i in range(32)]
args = TrainingArguments("hf-out", max_steps=6, per_device_train_batch_size=8, report_to=[], use_cpu=True,
                         save_strategy="no", logging_strategy="no", disable_tqdm=True)
Trainer(model=model, args=args, train_dataset=data).train()
"""


def write(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def no_hook_left() -> bool:
    return (
        not optimizer_module._global_optimizer_post_hooks
        and not optimizer_module._global_optimizer_pre_hooks
        and torch.autograd.backward.__module__ == "torch.autograd"
        and torch.amp.GradScaler.scale.__module__.startswith("torch.amp")
    )


def test_plain_loop_is_watched_and_reported(in_tmp: Path) -> None:
    script = write(in_tmp, "train.py", PLAIN_LOOP)
    outcome = run_script(script, ["30"], out=in_tmp / "out", options={"gradients_every": 1}, quiet=True)
    assert outcome.status == 0
    assert sorted(p.name for p in outcome.written) == ["report.html", "report.json", "run.jsonl"]
    report = Report.from_json((in_tmp / "out" / "report.json").read_text())
    assert [layer.name for layer in report.layers] == ["0", "2", "4"]
    steps, losses = History.load(in_tmp / "out" / "run.jsonl").array("loss")
    assert list(steps) == list(range(29))  # found when its optimizer first steps: from the second step on
    final = torch.load(in_tmp / "final.pt")
    assert losses[-1, 0] == pytest.approx(final["loss"], rel=1e-6)  # the loss of the script's last step
    assert no_hook_left()


def test_the_script_trains_exactly_as_without_gradmedic(in_tmp: Path) -> None:
    script = write(in_tmp, "train.py", PLAIN_LOOP)
    subprocess.run([sys.executable, str(script), "25"], cwd=in_tmp, check=True)
    plain = torch.load(in_tmp / "final.pt")
    assert run_script(script, ["25"], out=in_tmp / "out", quiet=True).status == 0
    watched = torch.load(in_tmp / "final.pt")
    assert watched["loss"] == plain["loss"]
    for name, value in plain["state"].items():
        assert torch.equal(watched["state"][name], value), name


def test_script_that_dies_of_nan_keeps_its_status_and_its_report(in_tmp: Path) -> None:
    script = write(in_tmp, "nan.py", NAN_HALFWAY)
    outcome = run_script(script, [], out=in_tmp / "out", quiet=True)
    assert outcome.status == 3
    report = Report.from_json((in_tmp / "out" / "report.json").read_text())
    assert "non_finite" in report.kinds
    assert not report.healthy


@pytest.mark.parametrize(("error", "status"), [("RuntimeError", 1), ("KeyboardInterrupt", 130)])
def test_an_exception_or_ctrl_c_still_writes_the_report(in_tmp: Path, error: str, status: int) -> None:
    script = write(in_tmp, "raises.py", RAISES.format(error=error))
    outcome = run_script(script, [], out=in_tmp / "out", quiet=True)
    assert outcome.status == status
    assert (in_tmp / "out" / "report.json").exists()
    assert no_hook_left()


def test_two_models_each_get_their_report(in_tmp: Path) -> None:
    script = write(in_tmp, "gan.py", TWO_MODELS)
    outcome = run_script(script, [], out=in_tmp / "out", quiet=True)
    assert outcome.status == 0
    names = sorted(p.name for p in outcome.written)
    assert names == sorted(
        f"{stem}-{label}.{ext}"
        for label in ("1-Sequential", "2-Sequential")
        for stem, ext in (("report", "json"), ("report", "html"), ("run", "jsonl"))
    )
    first = Report.from_json((in_tmp / "out" / "report-1-Sequential.json").read_text())
    second = Report.from_json((in_tmp / "out" / "report-2-Sequential.json").read_text())
    assert [layer.type for layer in first.layers][-1] == "Linear"
    assert {first.layers[0].name, second.layers[0].name} == {"0"}
    assert History.load(in_tmp / "out" / "run-1-Sequential.jsonl").array("loss")[0].size == 11


def test_lightning_script_is_watched(in_tmp: Path) -> None:
    pytest.importorskip("lightning")
    script = write(in_tmp, "lit.py", LIGHTNING)
    outcome = run_script(script, [], out=in_tmp / "out", quiet=True)
    assert outcome.status == 0
    report = Report.from_json((in_tmp / "out" / "report.json").read_text())
    assert [layer.name for layer in report.layers] == ["net.0", "net.2"]
    assert History.load(in_tmp / "out" / "run.jsonl").array("signal_norm")[0].size == 7


def test_hugging_face_trainer_script_is_watched(in_tmp: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    script = write(in_tmp, "hf.py", HF_TRAINER)
    outcome = run_script(script, [], out=in_tmp / "out", quiet=True)
    assert outcome.status == 0
    data = json.loads((in_tmp / "out" / "report.json").read_text())
    assert any(layer["name"].startswith("bert.encoder.layer.1") for layer in data["layers"])
    assert History.load(in_tmp / "out" / "run.jsonl").array("signal_norm")[0].size == 5


def test_owning_module_prefers_the_smallest_then_the_outermost() -> None:
    body = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    wrapper = torch.nn.Sequential(body)
    head_only = torch.optim.SGD(body[1].parameters(), lr=0.1)
    everything = torch.optim.SGD(body.parameters(), lr=0.1)
    assert owning_module(head_only) is body[1]
    assert owning_module(everything) is wrapper
    loose = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    assert owning_module(loose) is None


def test_cli_runs_the_script_with_its_arguments_and_status(
    in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    script = write(in_tmp, "nan.py", NAN_HALFWAY)
    assert main(["run", "--out", "o", str(script)]) == 3
    err = capsys.readouterr().err
    assert "non_finite" in err and "o/report.json" in err
    write(in_tmp, "train.py", PLAIN_LOOP)
    assert main(["run", "--out", "o2", "--every", "2", "train.py", "9", "0.05"]) == 0
    assert list(History.load(in_tmp / "o2" / "run.jsonl").array("signal_norm")[0]) == [0, 2, 4, 6]


def test_cli_missing_script_is_one_line_and_exit_2(in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "no_such_script.py"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no_such_script.py" in err


def test_live_view_shows_the_signal_and_the_verdict(in_tmp: Path) -> None:
    pytest.importorskip("rich")
    write(in_tmp, "train.py", PLAIN_LOOP)
    command = [sys.executable, "-m", "gradmedic", "run", "--live", "--out", "o", "train.py", "6"]
    result = subprocess.run(command, cwd=in_tmp, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Sequential: step 5" in result.stderr
    assert "signal rms" in result.stderr and "healthy" in result.stderr


SCALED = """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
x, y = torch.randn(32, 8), torch.randn(32, 1)
losses = []
for step in range(6):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    losses.append(loss.item())
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
torch.save(losses, "losses.pt")
"""


def test_grad_scaler_losses_are_recorded_unscaled(in_tmp: Path) -> None:
    script = write(in_tmp, "scaled.py", SCALED)
    assert run_script(script, [], out=in_tmp / "out", quiet=True).status == 0
    history = History.load(in_tmp / "out" / "run.jsonl")
    assert "GradScaler" in history.meta["options"]["scaler"]  # gradient norms are unscaled by it
    steps, losses = history.array("loss")
    expected = torch.load(in_tmp / "losses.pt")[1:]
    assert list(steps) == list(range(5))
    assert losses[:, 0].tolist() == pytest.approx(expected, rel=1e-6)
