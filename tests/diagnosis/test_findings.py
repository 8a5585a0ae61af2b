"""The Report: JSON round trip (strict JSON, NaN as null), Markdown, plain text and rich output."""

from __future__ import annotations

import builtins
import io
import json
import math
from collections.abc import Iterator

import pytest
import torch

import gradmedic
import sick_models as sm
from gradmedic.diagnosis import catalog, print_report
from gradmedic.diagnosis.findings import Finding, LayerSummary, Report, Severity
from gradmedic.diagnosis.render import headline, render_text
from gradmedic.errors import ConfigError

KINDS = [
    "vanishing_gradient", "exploding_gradient", "saturated_activations", "dead_units", "init_mismatch",
    "missing_normalization", "too_deep", "stalled_layers", "loss_plateau", "non_finite", "denormal_slowdown",
]  # fmt: skip
REMEDIES = [
    catalog.non_saturating_activation("sigmoid"), catalog.leaky_activation(), catalog.he_init(),
    catalog.xavier_or_orthogonal_init(True), catalog.xavier_or_orthogonal_init(False), catalog.lecun_init(),
    catalog.batch_norm(), catalog.residual(), catalog.clipping(0.5), catalog.gated_recurrent(),
    catalog.adaptive_optimizer(), catalog.lower_learning_rate(), catalog.layer_norm(), catalog.shallower(4),
]  # fmt: skip


def every_kind() -> Report:
    """A report with one finding of each kind, every remedy, NaN numbers and a [bracketed] text."""
    severities = list(Severity)
    findings = [
        Finding(
            kind,
            severities[i % len(severities)],
            [f"layers.{i}", f"layers.{i + 1}"] if i % 3 else [],
            f"evidence of {kind}: [{i}] x{i / 7:.3f}",
            f"cause of {kind}",
            [REMEDIES[i % len(REMEDIES)], REMEDIES[(i + 5) % len(REMEDIES)]],
            {"ratio": 10.0**-i, "missing": math.nan},
        )
        for i, kind in enumerate(KINDS)
    ]
    layers = [
        LayerSummary("layers.0", "Linear", 1e-9, 0.5, "sigmoid", 0.9, math.nan),
        LayerSummary("layers.1", "Conv2d", math.nan, math.nan, None, math.nan, math.nan),
        LayerSummary("layers.2", "Linear", 1e-2, 0.25, "relu", math.nan, 0.75),
    ]
    findings.sort(key=lambda f: -f.severity)
    return Report(findings, 0.125, "monitor", ["a note", "another [note]"], layers)


@pytest.fixture(scope="module")
def checked() -> Report:
    """A real checkup with several findings."""
    torch.manual_seed(0)
    patient = sm.deep_sigmoid(20)
    return gradmedic.checkup(patient.model, patient.inputs, patient.targets)


@pytest.fixture(params=["synthetic", "checkup", "healthy"])
def report(request: pytest.FixtureRequest, checked: Report) -> Report:
    if request.param == "synthetic":
        return every_kind()
    if request.param == "checkup":
        return checked
    return Report([], 1.0, "checkup", [], [LayerSummary("fc", "Linear", 0.1, 0.2)])


# -- JSON -------------------------------------------------------------------------------------


def same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_same_report(a: Report, b: Report) -> None:
    def summary(r: Report) -> tuple:
        return (r.source, r.score, r.notes, r.healthy, r.kinds)

    assert summary(a) == summary(b)
    for fa, fb in zip(a.findings, b.findings, strict=True):
        assert (fa.kind, fa.severity, fa.layers, fa.evidence, fa.cause) == (
            fb.kind, fb.severity, fb.layers, fb.evidence, fb.cause,
        )  # fmt: skip
        assert isinstance(fb.severity, Severity)
        assert fa.remedies == fb.remedies
        assert fa.numbers.keys() == fb.numbers.keys()
        assert all(same_number(fa.numbers[k], fb.numbers[k]) for k in fa.numbers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert (la.name, la.type, la.activation) == (lb.name, lb.type, lb.activation)
        for field in ("signal_rms", "weight_grad_norm", "saturated", "dead"):
            assert same_number(getattr(la, field), getattr(lb, field)), field


def strict_loads(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_round_trip(report: Report) -> None:
    text = report.to_json()
    data = strict_loads(text)
    assert data["format"] == "gradmedic.report" and data["version"] == 1
    assert data["healthy"] == report.healthy
    assert_same_report(report, Report.from_json(text))
    assert Report.from_json(text).to_json() == text


def test_json_writes_nan_as_null_and_reads_it_back_as_nan() -> None:
    report = every_kind()
    data = strict_loads(report.to_json())
    assert all(f["numbers"]["missing"] is None for f in data["findings"])
    assert data["layers"][1]["signal_rms"] is None and data["layers"][0]["dead"] is None
    assert data["layers"][0]["signal_rms"] == 1e-9
    assert data["findings"][0]["severity"] in {"info", "warning", "critical"}
    back = Report.from_json(report.to_json())
    assert math.isnan(back.layers[1].signal_rms) and math.isnan(back.findings[0].numbers["missing"])


def test_infinite_numbers_are_written_as_null() -> None:
    finding = Finding("exploding_gradient", Severity.CRITICAL, ["0"], "e", "c", [], {"ratio": math.inf})
    layer = LayerSummary("0", "Linear", -math.inf, math.inf)
    data = strict_loads(Report([finding], 0.0, "checkup", [], [layer]).to_json())
    assert data["findings"][0]["numbers"]["ratio"] is None
    assert data["layers"][0]["signal_rms"] is None and data["layers"][0]["weight_grad_norm"] is None


def test_json_file(tmp_path, checked: Report) -> None:
    path = tmp_path / "report.json"
    text = checked.to_json(path)
    assert path.read_text(encoding="utf-8") == text + "\n"
    assert_same_report(checked, Report.from_json(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("text", ['{"format": "something else", "findings": []}', "{}"])
def test_from_json_refuses_what_is_not_a_report(text: str) -> None:
    with pytest.raises(ConfigError, match=r"not a gradmedic report.*to_json"):
        Report.from_json(text)


# -- Markdown and text ---------------------------------------------------------------------------


def test_markdown_has_every_kind_and_remedy(report: Report) -> None:
    markdown = report.to_markdown()
    assert markdown.startswith(f"# {headline(report)}\n")
    for finding in report.findings:
        assert f"`{finding.kind}`" in markdown
        assert finding.evidence in markdown and finding.cause in markdown
        for remedy in finding.remedies:
            assert f"   {remedy.code}\n" in markdown and remedy.name in markdown
    for layer in report.layers:
        assert f"| `{layer.name}` | {layer.type} |" in markdown
    for note in report.notes:
        assert f"> {note}" in markdown
    assert markdown.count("```python") == sum(len(f.remedies) for f in report.findings)


def test_markdown_of_the_synthetic_report_names_all_kinds() -> None:
    markdown = every_kind().to_markdown()
    assert all(f"`{kind}`" in markdown for kind in KINDS)
    assert all(remedy.code in markdown for remedy in REMEDIES)


def assert_shows_everything(text: str, report: Report) -> None:
    assert headline(report) in text
    for finding in report.findings:
        assert f"[{finding.severity.label.upper()}] {finding.kind}" in text
        assert finding.evidence in text and finding.cause in text
        for rank, remedy in enumerate(finding.remedies, 1):
            assert f"{rank}. {remedy.name}" in text and remedy.code in text
    for note in report.notes:
        assert f"note: {note}" in text
    shown = [layer for layer in report.layers if math.isfinite(layer.signal_rms)]
    for layer in shown:
        assert any(line.startswith(layer.name[:15]) for line in text.splitlines())


def test_render_shows_headline_evidence_and_remedies(report: Report) -> None:
    text = report.render()
    assert text.splitlines()[0] == headline(report)
    assert str(report) == text
    assert_shows_everything(text, report)


def test_headline() -> None:
    empty = Report([], 1.0, "checkup")
    assert headline(empty) == "gradmedic checkup: healthy (health score 1.00): no finding"
    report = every_kind()
    n = len(KINDS)
    counts = {s: sum(1 for i in range(n) if i % 3 == s) for s in (0, 1, 2)}
    assert headline(report) == (
        f"gradmedic monitor: NOT healthy (health score 0.12): {counts[2]} critical, {counts[1]} warning, "
        f"{counts[0]} info"
    )
    info_only = Report([Finding("loss_plateau", Severity.INFO, [], "e", "c")], 0.9, "monitor")
    assert info_only.healthy and "healthy (health score 0.90): 1 info" in headline(info_only)


def test_the_checkup_report_shows_the_signal_per_layer(checked: Report) -> None:
    lines = checked.render().splitlines()
    table = [line for line in lines if line[:1].isdigit() and "Linear" in line]
    assert len(table) == len(checked.layers)
    bars = [line.count("█") for line in table]
    assert bars[-1] > bars[len(bars) // 2] > bars[1]  # the signal grows towards the output


# -- print_report: rich and plain ----------------------------------------------------------------


@pytest.fixture
def without_rich(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "rich" or name.startswith("rich."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    yield


def test_print_report_with_rich(report: Report) -> None:
    pytest.importorskip("rich")
    out = io.StringIO()
    print_report(report, file=out)
    text = out.getvalue()
    assert "\x1b[" not in text  # a file is not a terminal: no colour codes
    assert "[/" not in text and "[bold" not in text  # no markup leaks through
    assert_shows_everything(text, report)


def test_print_report_without_rich(report: Report, without_rich: None) -> None:
    with pytest.raises(ImportError):
        import rich.console  # noqa: F401
    out = io.StringIO()
    print_report(report, file=out)
    assert out.getvalue() == render_text(report) + "\n"
    assert_shows_everything(out.getvalue(), report)


def test_print_report_to_stdout(capsys: pytest.CaptureFixture[str], checked: Report) -> None:
    print_report(checked)
    assert_shows_everything(capsys.readouterr().out, checked)
