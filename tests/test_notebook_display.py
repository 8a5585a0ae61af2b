"""Report, Treatment and History display themselves in a notebook (``_repr_html_``)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import gradmedic
from gradmedic.html_report import NOTEBOOK_SCOPE

PIL = pytest.importorskip("PIL.Image")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def displayed() -> dict[str, str]:
    """The three objects' notebook HTML: a checkup, a treatment and a watched run of a sick net."""
    torch.manual_seed(0)
    blocks = [m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())]
    model = nn.Sequential(*blocks, nn.Linear(16, 4))
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    report = gradmedic.checkup(model, x, y)
    treatment = gradmedic.treat(model, x, y, suggest_lr=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradmedic.watch(model, optimizer) as monitor:
        for _ in range(4):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return {
        "report": report._repr_html_(),
        "treatment": treatment._repr_html_(),
        "history": monitor.history._repr_html_(),
    }


def pngs(fragment: str) -> list[tuple[int, int]]:
    """The sizes of the PNG images embedded in ``fragment`` (each decoded)."""
    sizes = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', fragment):
        with PIL.open(io.BytesIO(base64.b64decode(data))) as image:
            sizes.append(image.size)
    return sizes


def test_each_object_is_a_self_contained_fragment_with_its_picture(displayed: dict[str, str]) -> None:
    for name, fragment in displayed.items():
        assert fragment.startswith(f'<div class="{NOTEBOOK_SCOPE}">'), name
        assert "<html" not in fragment and "<body" not in fragment and "<script" not in fragment, name
        assert "http://" not in fragment and "https://" not in fragment, name
        assert pngs(fragment) and all(width > 100 for width, _ in pngs(fragment)), name


def test_the_report_shows_its_verdict_and_findings(displayed: dict[str, str]) -> None:
    fragment = displayed["report"]
    assert "NOT healthy" in fragment
    assert "Vanishing gradient" in fragment


def test_the_treatment_shows_before_and_after(displayed: dict[str, str]) -> None:
    fragment = displayed["treatment"]
    assert "Before treatment" in fragment and "After treatment" in fragment


def test_the_history_says_what_it_holds_without_diagnosing(displayed: dict[str, str]) -> None:
    fragment = displayed["history"]
    assert "4 recorded steps" in fragment and "25 layers observed" in fragment
    assert "Vanishing gradient" not in fragment


def test_every_style_rule_is_scoped_to_the_fragment(displayed: dict[str, str]) -> None:
    style = re.search(r"<style>(.*?)</style>", displayed["report"], re.DOTALL).group(1)  # type: ignore[union-attr]
    selectors = [part.strip() for rule in re.findall(r"([^{}]+)\{", style) for part in rule.split(",")]
    assert selectors and all(s.startswith(f".{NOTEBOOK_SCOPE}") for s in selectors), selectors


PROBE = """<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var images = Array.prototype.slice.call(document.images);
    var probe = document.createElement("pre");
    probe.id = "probe";
    probe.textContent = JSON.stringify({
      images: images.map(function (i) { return {complete: i.complete, width: i.naturalWidth}; }),
      outside: getComputedStyle(document.getElementById("outside")).fontSize,
      body_margin: getComputedStyle(document.body).marginLeft
    });
    document.body.appendChild(probe);
  }, 200);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_in_a_notebook_like_page_images_load_and_the_page_style_is_untouched(
    displayed: dict[str, str], tmp_path: Path
) -> None:
    outputs = "".join(f'<div class="output">{fragment}</div>' for fragment in displayed.values())
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>body { margin: 7px; } '
        "h2 { font-size: 11px; }</style>" + PROBE + '</head><body><h2 id="outside">notebook</h2>'
        + outputs + "</body></html>"
    )  # fmt: skip
    path = tmp_path / "notebook.html"
    path.write_text(page, encoding="utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=10000", "--dump-dom", path.as_uri()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, done.stderr[-3000:]
    seen = json.loads(html.unescape(found.group(1)))
    expected = sum(len(pngs(fragment)) for fragment in displayed.values())
    assert len(seen["images"]) == expected > 0
    assert all(image["complete"] and image["width"] > 100 for image in seen["images"]), seen
    assert seen["outside"] == "11px" and seen["body_margin"] == "7px", seen  # the notebook's own styles hold
