"""The HTML report: one self-contained page (pictures as data URIs, no network, escaped text),
``Treatment.save_html``, ``gradmedic report RUN.jsonl``, and the page opened in headless Chromium.
"""

from __future__ import annotations

import html
import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import gradmedic
from browser import ARTIFACTS, CHROMIUM, ROOT, Page, assert_self_contained, browse, images, screenshot
from gradmedic import plots
from gradmedic.cli import main
from gradmedic.diagnosis import catalog
from gradmedic.diagnosis.checkups import diagnose
from gradmedic.diagnosis.findings import Finding, Kind, LayerSummary, Report, Severity
from gradmedic.errors import ConfigError
from gradmedic.history import History
from gradmedic.html_report import report_html, save_html, treatment_html
from gradmedic.layers import LayerInfo
from gradmedic.remedies.changes import group_changes
from plot_helpers import mlp, synthetic, vanishing

KINDS = [
    "vanishing_gradient",
    "exploding_gradient",
    "saturated_activations",
    "dead_units",
    "init_mismatch",
    "missing_normalization",
    "too_deep",
    "stalled_layers",
    "non_finite",
    "denormal_slowdown",
    "loss_plateau",
]
# ... and any kind a finding can have that this list does not name yet
KINDS += sorted({kind.value for kind in Kind} - set(KINDS))
REMEDIES = [
    catalog.non_saturating_activation("sigmoid"),
    catalog.leaky_activation(),
    catalog.he_init(),
    catalog.xavier_or_orthogonal_init(deep=True),
    catalog.xavier_or_orthogonal_init(deep=False),
    catalog.lecun_init(),
    catalog.batch_norm(),
    catalog.residual(),
    catalog.clipping(),
    catalog.gated_recurrent(),
    catalog.adaptive_optimizer(),
    catalog.lower_learning_rate(),
    catalog.layer_norm(),
    catalog.shallower(4),
]
SEVERITIES = [Severity.CRITICAL, Severity.WARNING, Severity.INFO]
WEIRD = "enc<oder>.0&\"x'"


def every_kind_report() -> Report:
    """One finding of every kind, each with two or three of the catalogue's remedies."""
    findings = [
        Finding(
            kind,
            SEVERITIES[i % 3],
            [WEIRD, f"block{i}.fc"],
            f"evidence of {kind}: ratio 1e-9 < 1e-3",
            f"cause of {kind}",
            [REMEDIES[(2 * i + k) % len(REMEDIES)] for k in range(2 if i % 2 else 3)],
            {"ratio": 1e-9, "steps": float(i)},
        )
        for i, kind in enumerate(KINDS)
    ]
    layers = [
        LayerSummary(WEIRD, "Linear", 1e-9, 1e-7, "sigmoid", 0.9, float("nan")),
        LayerSummary("block1.fc", "Linear", 1e-2, 1e-2, "relu", float("nan"), 0.1),
        LayerSummary("head", "Linear", 1e-1, 1.0),
    ]
    return Report(findings, 0.12, "checkup", ["a note with <angle> brackets"], layers)


def section(page: str, anchor: str) -> str:
    """The HTML of one ``<section id=anchor>``."""
    start = page.index(f'<section id="{anchor}">')
    return page[start : page.index("</section>", start)]


@pytest.fixture(scope="module")
def sick_run() -> tuple[Report, History]:
    """A 12-layer sigmoid MLP trained 6 steps with every statistic recorded, and its diagnosis."""
    torch.manual_seed(0)
    history = vanishing()
    return diagnose(history), history


# -- structure -------------------------------------------------------------------------------


def test_every_finding_kind_and_remedy_code_is_on_the_page() -> None:
    report = every_kind_report()
    page = report_html(report)
    for finding in report.findings:
        assert f"<code>{finding.kind}</code>" in page
        assert html.escape(finding.evidence) in page and html.escape(finding.cause) in page
    findings = section(page, "findings")
    for remedy in {r for f in report.findings for r in f.remedies}:
        # each code once in the findings (a later finding links to it); the top one also on top
        assert findings.count(f"<pre><code>{html.escape(remedy.code)}</code></pre>") == 1, remedy.name
        assert html.escape(remedy.name) in findings
    used = {r for f in report.findings for r in f.remedies}
    assert used == set(REMEDIES)
    assert "NOT healthy" in page and "0.12" in page
    for k, severity in enumerate(SEVERITIES):
        count = len(range(k, len(KINDS), len(SEVERITIES)))
        assert f'<span class="chip {severity.label}">{count} {severity.label}</span>' in page
    assert "What to do first" in page
    assert_self_contained(page)


def test_a_diagnosed_run_shows_every_picture_as_a_decodable_png(sick_run) -> None:
    report, history = sick_run
    page = report_html(report, history, title="sick run")
    assert len(images(page)) == 4  # flow, flow over time, activations, update ratios
    assert "Skipped" not in page
    for kind in report.kinds:
        assert f"<code>{kind}</code>" in page
    for remedy in {r for f in report.findings for r in f.remedies}:
        assert f"<code>{html.escape(remedy.code)}</code>" in page
    for layer in report.layers:
        assert f"<code>{html.escape(layer.name)}</code>" in page
    assert "6 recorded steps" in page and "<title>sick run</title>" in page
    assert_self_contained(page)


def test_text_from_the_model_is_escaped() -> None:
    report = every_kind_report()
    report.findings[0].evidence = "<script>alert(1)</script> & more"
    page = report_html(report, title="<b>my</b> model")
    assert WEIRD not in page and "<oder>" not in page
    assert html.escape(WEIRD) in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "<b>my</b>" not in page and "&lt;b&gt;my&lt;/b&gt; model" in page
    assert "a note with &lt;angle&gt; brackets" in page
    assert len(Page(page).all("script")) == 1  # the page's own copy-button script, nothing injected
    text = "".join(Page(page).text)
    assert WEIRD in text  # a browser shows the name as it is


def test_layer_names_with_angle_brackets_in_a_history_are_escaped_and_drawn(tmp_path: Path) -> None:
    layers = [
        LayerInfo(name, "Linear", "param", forward_index=i) for i, name in enumerate([WEIRD, "<b>", "out"])
    ]
    history = History(layers, [])
    history.append("signal_rms", [0, 1], torch.tensor([[1e-8, 1e-4, 1e-2], [1e-8, 1e-4, 1e-2]]).numpy())
    history.append("weight_grad_norm", [0, 1], torch.tensor([[1e-6, 1e-3, 1e-1]] * 2).numpy())
    page = report_html(diagnose(history), history)
    assert "<oder>" not in page and "<b>" not in page
    assert html.escape(WEIRD) in page and "&lt;b&gt;" in page
    assert len(images(page)) == 2  # flow and flow over time; no activations, no updates recorded
    assert_self_contained(page)


def test_missing_data_skips_each_picture_with_a_note() -> None:
    history = synthetic(3, {"signal_rms": [[1e-6, 1e-3, 1e-1]]})
    page = report_html(diagnose(history), history)
    assert len(images(page)) == 1  # the flow
    assert "only 1 recorded step" in page
    assert "no act_saturated or act_dead recorded in this run" in page and "activations_every" in page
    assert "no update_ratio recorded in this run" in page and "updates_every" in page


def test_without_a_history_the_signal_comes_from_the_report_and_the_run_pictures_are_explained() -> None:
    page = report_html(every_kind_report())
    assert len(images(page)) == 1
    assert "this report came without a History" in page and "gradmedic report run.jsonl" in page


def test_an_empty_healthy_report() -> None:
    page = report_html(Report([], 1.0, "checkup"))
    assert "Healthy" in page and "No finding" in page and "What to do first" not in page
    assert not Page(page).all("img")
    assert "no layer has a backprop signal" in page
    assert_self_contained(page)


def test_without_matplotlib_the_page_says_how_to_get_the_pictures(monkeypatch, sick_run) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    report, history = sick_run
    page = report_html(report, history)
    assert not Page(page).all("img")
    assert page.count("pip install &#x27;gradmedic[plot]&#x27;") == 4
    assert "vanishing_gradient" in page


def test_save_html_and_the_report_method_write_the_same_page(tmp_path: Path) -> None:
    history = synthetic(3, {"signal_rms": [[1e-6, 1e-3, 1e-1]]})
    report = diagnose(history)
    a = save_html(tmp_path / "a.html", report, history)
    b = report.save_html(tmp_path / "b.html", history=history)
    assert a.read_text(encoding="utf-8") == b.read_text(encoding="utf-8")
    assert len(images(a.read_text(encoding="utf-8"))) == 1


def test_treatment_page_shows_before_and_after_side_by_side(tmp_path: Path) -> None:
    torch.manual_seed(0)
    blocks = [m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())]
    model = nn.Sequential(*blocks, nn.Linear(16, 4))
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    treatment = gradmedic.treat(model, x, y, suggest_lr=False)
    path = treatment.save_html(tmp_path / "treatment.html")
    page = path.read_text(encoding="utf-8")
    assert page == treatment_html(treatment)
    assert "Before treatment" in page and "After treatment" in page
    assert "NOT healthy" in page and ("Healthy" in page) == treatment.after.healthy
    for kind in treatment.before.kinds + treatment.after.kinds:
        assert f"<code>{kind}</code>" in page
    for line in group_changes(treatment.changes):
        assert html.escape(line) in page
    assert "backprop signal before treatment" in page
    assert len(images(page)) == 1  # both signals on one axis
    assert_self_contained(page)


# -- the picture of reports, and the README's picture ---------------------------------------


def test_flow_profiles_draws_each_report_on_one_axis(tmp_path: Path) -> None:
    sick, healthy = every_kind_report(), Report([], 1.0, "checkup", layers=[
        LayerSummary(WEIRD, "Linear", 1e-2), LayerSummary("extra", "Linear", 2e-2),
        LayerSummary("head", "Linear", 1e-1)])  # fmt: skip
    fig = plots.flow_profiles([sick, healthy], ["sick", "treated"], path=tmp_path / "profiles.png")
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ax.get_legend_handles_labels()[1]]
    assert [len(line.get_xdata()) for line in lines[:2]] == [3, 3]
    labels = ax.get_legend_handles_labels()[1]
    assert (
        labels[0] == "sick  (first/last layer: 1.0e-08)"
        and labels[1] == "treated  (first/last layer: 1.0e-01)"
    )
    assert any(label.startswith("vanishing zone") for label in labels)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [f"{WEIRD} (Linear)", "extra (Linear)", "block1.fc (Linear)", "head (Linear)"]  # by name
    assert (tmp_path / "profiles.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="2 labels for 1"):
        plots.flow_profiles(sick, ["a", "b"])
    empty = plots.flow_profiles(Report([], 1.0, "checkup"))
    assert any("no signal_rms recorded" in t.get_text() for t in empty.axes[0].texts)


def test_the_readme_picture_script_draws_a_small_png(tmp_path: Path) -> None:
    script = runpy.run_path(str(ROOT / "scripts" / "readme_picture.py"))
    out = script["main"](tmp_path / "sick_vs_treated.png")
    assert out.stat().st_size < 150_000
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width >= 800


# -- command line ----------------------------------------------------------------------------


def watched_run(path: Path, activation: type[nn.Module], depth: int, steps: int = 4) -> Path:
    """Train a small MLP under ``gradmedic.watch(..., log_path=path)``."""
    torch.manual_seed(0)
    model = mlp(depth, activation, kaiming=activation is nn.ReLU)
    x = torch.randn(64, 16)
    y = x[:, :1].sin()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with gradmedic.watch(model, opt, log_path=path, activations_every=1, updates_every=1) as monitor:
        for _ in range(steps):
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            opt.step()
            monitor.step(loss)
    return path


def test_cli_report_writes_the_page_of_a_watched_run(tmp_path: Path, capsys) -> None:
    run = watched_run(tmp_path / "run.jsonl", nn.Sigmoid, depth=12)
    out = tmp_path / "report.html"
    status = main(["report", str(run), "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    assert (status, stderr) == (1, "")
    assert "NOT healthy" in stdout and f"written: {out}" in stdout
    page = out.read_text(encoding="utf-8")
    assert "vanishing_gradient" in page and "<title>gradmedic report: run.jsonl</title>" in page
    assert len(images(page)) == 4


def test_cli_report_of_a_saved_healthy_history_exits_0_next_to_the_run(tmp_path: Path, capsys) -> None:
    recorded = History.load(watched_run(tmp_path / "log.jsonl", nn.ReLU, depth=2))
    run = recorded.save(tmp_path / "healthy.jsonl")
    assert main(["report", str(run), "--title", "<mine>"]) == 0
    assert "healthy" in capsys.readouterr().out
    page = (tmp_path / "healthy.html").read_text(encoding="utf-8")
    assert "<title>&lt;mine&gt;</title>" in page


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file; give the JSON Lines file of a run"),
        ("", "is not a gradmedic history"),
        ("not json at all\n", "is not a gradmedic history"),
        (
            '{"format": "gradmedic.report"}\n',
            "is not a gradmedic history (first line has format='gradmedic.report')",
        ),
        ("VALID\n{not json\n", "run.jsonl, line 2: not a JSON record (Expecting property name"),
        (
            '{"format": "gradmedic.history", "version": 1}\n',
            "line 1: a damaged header (the field 'layers' is",
        ),
    ],
)
def test_cli_report_of_a_bad_file_exits_2_with_a_clear_message(
    tmp_path: Path, capsys, content: str | None, message: str
) -> None:
    run = tmp_path / "run.jsonl"
    if content is not None:
        header = json.dumps(synthetic(2, {"signal_rms": [[1.0, 1.0]]}).header())
        run.write_text(content.replace("VALID", header), encoding="utf-8")
    assert main(["report", str(run), "-o", str(tmp_path / "out.html")]) == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and stderr.startswith("gradmedic: ") and message in stderr
    assert not (tmp_path / "out.html").exists()


def test_cli_report_into_a_missing_folder_exits_2(tmp_path: Path, capsys) -> None:
    run = synthetic(2, {"signal_rms": [[1.0, 1.0]]}).save(tmp_path / "run.jsonl")
    assert main(["report", str(run), "-o", str(tmp_path / "no" / "such" / "dir.html")]) == 2
    assert "cannot write the report to" in capsys.readouterr().err


def test_cli_report_on_a_folder_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


# -- in a browser ----------------------------------------------------------------------------


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium): the page is not opened in a browser"
    "; .ci/run installs it where it can",
)
def test_in_headless_chromium_every_image_loads_and_no_error_occurs(tmp_path: Path, sick_run) -> None:
    report, history = sick_run
    torch.manual_seed(0)
    blocks = [m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())]
    treatment = gradmedic.treat(
        nn.Sequential(*blocks, nn.Linear(16, 4)),
        torch.randn(64, 16),
        torch.randint(0, 4, (64,)),
        suggest_lr=False,
    )
    pages = {"html_report": report_html(report, history), "treatment_report": treatment_html(treatment)}
    for name, page in pages.items():
        seen = browse(page, tmp_path, name)
        expected = len(Page(page).all("img"))
        assert len(seen["images"]) == expected > 0, seen
        assert all(i["complete"] and i["width"] > 100 for i in seen["images"]), seen
        assert seen["buttons"] == seen["codes"] > 0, seen  # the inline script added a copy button to each
        if seen["secure"]:  # the clipboard path: the button wrote its own code block
            assert seen["clicked"] == "copied" and seen["copied"] == seen["first_code"] != "", seen
        else:  # the selection fallback of an insecure page
            assert seen["clicked"] in ("copied", "press Ctrl+C"), seen
        assert seen["problems"] == [], seen
        ARTIFACTS.mkdir(exist_ok=True)
        saved = ARTIFACTS / f"{name}.html"
        saved.write_text(page, encoding="utf-8")
        screenshot(saved, tmp_path, ARTIFACTS / f"{name}.png", height=2400)
