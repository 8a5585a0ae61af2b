"""Write every kind of gradmedic output a user sees into one folder, to compare two versions byte by byte.

It writes: the HTML page and notebook fragment of the demo's checkup, of a recorded training run
(with the run's fragment) and of a treatment; each picture of ``gradmedic.plots`` as PNG; the
dashboards' flow image as ``.npy``; the lab's report (HTML, Markdown, every figure) of the 363 fake
cells of ``tests/lab_report_fakes.py``. Deterministic (seeded, no time stamps): run it at two commits
and ``diff -r`` the folders; the lab's report names the library's source hash, so those two lines
differ whenever the source does. Takes about 20 s on a CPU.

Usage:
    python scripts/presentation_snapshot.py OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import gradmedic
from gradmedic import html_report, plots
from gradmedic.demo import sick_example
from gradmedic.history import History
from gradmedic.integrations._common import flow_image
from gradmedic.lab.report import write_report
from gradmedic.lab.store import ResultStore

TESTS = Path(__file__).resolve().parent.parent / "tests"


def recorded_run() -> History:
    """12 steps of a 6-block sigmoid MLP, every statistic recorded at every step."""
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with gradmedic.watch(model, opt, gradients_every=1, activations_every=1, updates_every=1) as monitor:
        for _ in range(12):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(torch.randn(32, 16)), torch.randint(0, 4, (32,)))
            loss.backward()
            opt.step()
    return monitor.history


def pages(out: Path) -> History:
    """The checkup, run and treatment pages and fragments; returns the recorded run."""
    model, inputs, targets = sick_example(0)
    checkup = gradmedic.checkup(model, inputs, targets)
    history = recorded_run()
    report = gradmedic.diagnose(history)
    torch.manual_seed(0)
    treatment = gradmedic.treat(model, inputs, targets, suggest_lr=False)
    texts = {
        "checkup.html": html_report.report_html(checkup),
        "checkup_fragment.html": html_report.report_fragment(checkup),
        "run.html": html_report.report_html(report, history),
        "run_fragment.html": html_report.report_fragment(report, history),
        "history_fragment.html": html_report.history_fragment(history),
        "treatment.html": html_report.treatment_html(treatment),
        "treatment_fragment.html": html_report.treatment_fragment(treatment),
    }
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
    plots.flow_profiles([treatment.before, treatment.after], ["before", "after"], path=out / "profiles.png")
    np.save(out / "flow_image.npy", flow_image(history, report))
    return history


def pictures(history: History, out: Path) -> None:
    plots.flow(history, path=out / "flow.png")
    plots.flow(history, activations=True, marks={"0": "marked"}, path=out / "flow_marked.png")
    plots.flow_over_time(history, path=out / "flow_over_time.png")
    plots.activations(history, path=out / "activations.png")
    plots.update_ratios(history, path=out / "update_ratios.png")
    profiles = {"RNN": 0.6 ** np.arange(100), "LSTM": 0.97 ** np.arange(100)}
    plots.through_time(profiles, path=out / "through_time.png")


def lab_report(out: Path) -> None:
    sys.path.insert(0, str(TESTS))
    from lab_report_fakes import fake_results

    lab = Path(tempfile.gettempdir()) / "gradmedic_snapshot_lab"  # one path on every run: the report names it
    shutil.rmtree(lab, ignore_errors=True)
    try:
        store = ResultStore(lab)
        for result in fake_results():
            store.save(result)
        write_report(lab)
        shutil.copy(lab / "report.html", out / "lab.html")
        shutil.copy(lab / "report.md", out / "lab.md")
        shutil.copytree(lab / "figures", out / "lab_figures", dirs_exist_ok=True)
    finally:
        shutil.rmtree(lab, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/presentation_snapshot.py OUT_DIR", file=sys.stderr)
        return 2
    torch.set_flush_denormal(True)
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    pictures(pages(out), out)
    lab_report(out)
    print(f"wrote {sum(1 for _ in out.rglob('*'))} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
