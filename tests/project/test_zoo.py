"""The failure zoo (benchmarks/zoo): its records, its scoring, its command line, and the checkup's
verdicts on a handful of its cases, so that a regression on real users' failures shows in CI."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import gradmedic

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import zoo  # noqa: E402
from zoo import core, training  # noqa: E402
from zoo.relabelled import RELABELLED  # noqa: E402

SCRIPT = BENCHMARKS / "zoo.py"


def checkup_of(case_id: str) -> gradmedic.Report:
    setup = zoo.BY_ID[case_id].build(0)
    rows = torch.arange(64)
    return gradmedic.checkup(setup.model, core.take(setup.x, rows), setup.y[rows], setup.loss_fn)


def test_the_zoo_has_30_reported_failures_and_10_healthy_models_with_their_sources() -> None:
    assert len(zoo.SICK) >= 30 and len(zoo.HEALTHY) >= 10
    assert len(zoo.BY_ID) == len(zoo.ALL), "case ids must be unique"
    for case in zoo.ALL:
        assert case.source.startswith("http"), case.id
        assert case.healthy or (case.build_fix is not None and case.symptom and case.fix), case.id
    families = {case.family for case in zoo.SICK}
    assert {"mlp", "cnn", "rnn", "transformer", "functional", "amp"} <= families
    assert {case.kind for case in zoo.SICK} == set(zoo.KINDS_ORDER)


def test_every_case_has_a_committed_label_from_training() -> None:
    labels = json.loads((BENCHMARKS / "zoo" / "labels.json").read_text(encoding="utf-8"))
    assert set(labels) == set(zoo.BY_ID)
    for case_id, entry in labels.items():
        assert "error" not in entry, (case_id, entry)
        assert 0.0 <= entry["reported"]["best"] <= 1.0, case_id
    relabelled = {i for i, entry in labels.items() if not entry["confirmed"] and not zoo.BY_ID[i].healthy}
    assert relabelled == set(RELABELLED), "each relabelled report says why, and only those"
    assert all(entry["confirmed"] for i, entry in labels.items() if zoo.BY_ID[i].healthy)


def test_constant_baseline_is_the_loss_of_the_best_constant_prediction() -> None:
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    log_p = torch.log(torch.bincount(y).float() / len(y))
    plain = nn.functional.cross_entropy(log_p.expand(len(y), 3), y)
    assert core.constant_baseline(y, core.cross_entropy) == pytest.approx(float(plain), rel=1e-6)
    t = torch.tensor([[1.0], [2.0], [4.0]])
    assert core.constant_baseline(t, core.mse) == pytest.approx(float(core.mse(t.mean().expand_as(t), t)))


def test_a_run_that_diverges_scores_zero_and_one_that_trains_scores_high() -> None:
    setup = core.digits_mlp_setup(0)
    setup.steps = 60
    assert training.learned(setup, seed=0) > training.TRAINS
    setup = core.digits_mlp_setup(0)
    setup.optimizer, setup.lr, setup.steps = core.sgd, 1e6, 20
    assert training.learned(setup, seed=0) == 0.0


@pytest.mark.parametrize(
    ("case_id", "kind"),
    [
        ("deep_sigmoid_20x100", "vanishing_gradient"),
        ("vgg38_no_batchnorm", "vanishing_gradient"),
        ("linear100_normal_init", "non_finite"),
        ("relu_constant_kernels", "dead_units"),
    ],
)
def test_checkup_flags_these_reported_failures(case_id: str, kind: str) -> None:
    report = checkup_of(case_id)
    assert not report.healthy
    assert kind in report.kinds


@pytest.mark.parametrize(
    "case_id", ["hf_bert_tiny", "hf_gpt2_tiny", "examples_mnist_cnn", "examples_mnist_rnn"]
)
def test_checkup_stays_quiet_on_these_healthy_models(case_id: str) -> None:
    assert checkup_of(case_id).healthy


def test_zoo_modules_doctests() -> None:
    for module in (zoo, core, training):
        assert doctest.testmod(module).failed == 0, module.__name__


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_zoo_script_prints_a_line_per_case_and_the_per_class_table(tmp_path: Path) -> None:
    out = tmp_path / "zoo.json"
    done = run_script("--cases", "relu_constant_kernels,examples_mnist_cnn", "--json", str(out))
    assert done.returncode == 0, done.stderr
    lines = [
        line for line in done.stdout.splitlines() if line.startswith(("relu_constant", "examples_mnist"))
    ]
    assert len(lines) == 2 and "FLAG" in lines[0] and "ok" in lines[1]
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["rows"]["relu_constant_kernels"]["checkup"]["flagged"] is True
    assert record["summary"]["recall"]["dying"]["checkup"] == "1/1 (right kind 1)"


def test_zoo_script_refuses_an_unknown_case_in_one_line() -> None:
    done = run_script("--cases", "no_such_case")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "no_such_case" in done.stderr


@pytest.mark.skipif(hasattr(gradmedic, "trial"), reason="gradmedic.trial exists")
def test_zoo_script_says_trial_is_not_available() -> None:
    done = run_script("--trial", "--cases", "relu_constant_kernels")
    assert done.returncode == 2 and "trial is not available" in done.stderr
