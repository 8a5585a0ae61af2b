"""Helpers for tests of the HTML pages: parse a page, decode its pictures, check that nothing leaves
the file, and open it in headless Chromium (where installed)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]  # the repository


ARTIFACTS = ROOT / "artifacts"


class Page(HTMLParser):
    """Tags, attributes and text of a page, for structure checks."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def images(page: str) -> list[Image.Image]:
    """Every <img> of the page, decoded: each must be a PNG data URI."""
    decoded = []
    for attrs in Page(page).all("img"):
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix), attrs["src"][:40]
        data = base64.b64decode(attrs["src"][len(prefix) :], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.width > 100 and image.height > 100
        assert attrs["alt"]
        decoded.append(image)
    return decoded


def assert_self_contained(page: str) -> None:
    """No reference leaves the file: data URIs and in-page anchors only, no external script/style."""
    parsed = Page(page)
    for _, attrs in parsed.tags:
        for name in ("src", "href", "action", "poster", "srcset"):
            value = attrs.get(name)
            if value is None:
                continue
            if value.startswith("data:"):
                assert re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/]+=*", value), (name, value[:60])
            else:
                assert value.startswith("#") and "http" not in value and "//" not in value, (name, value)
    assert not parsed.all("link") and not parsed.all("iframe")
    assert all("src" not in attrs for attrs in parsed.all("script"))
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/]+=*", "data:", page)  # base64 may hold any 4 letters
    assert "@import" not in text and "url(" not in text
    assert re.search(r"https?:|//[a-z]", text) is None


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


#: Put first in <head>: records script errors, console errors and failed loads; once the page has
#: loaded, clicks one copy button and writes what it saw into <pre id="probe"> for --dump-dom.
PROBE = """<script>
window.__problems = [];
window.addEventListener("error", function (e) {
  window.__problems.push("error: " + (e.message || (e.target && (e.target.src || e.target.href)) || e.type));
}, true);
window.addEventListener("unhandledrejection", function (e) {
  window.__problems.push("rejection: " + e.reason);
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__problems.push("console.error: " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
// The system clipboard answers a script's write when Chromium's permission check returns, which
// under load can be after the probe looks: a recording stand-in makes the click deterministic.
window.__copied = null;
Object.defineProperty(navigator, "clipboard", {
  configurable: true,
  value: {writeText: function (text) { window.__copied = text; return Promise.resolve(); }}
});
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var buttons = document.querySelectorAll("button.copy");
  if (buttons.length) { buttons[0].click(); }
  setTimeout(function () {
    var firstCode = document.querySelector("pre > code");
    var probe = document.createElement("pre");
    probe.id = "probe";
    probe.textContent = JSON.stringify({
      images: images.map(function (i) { return {complete: i.complete, width: i.naturalWidth}; }),
      codes: document.querySelectorAll("pre > code").length,
      buttons: buttons.length,
      clicked: buttons.length ? buttons[0].textContent : null,
      secure: window.isSecureContext,
      copied: window.__copied,
      first_code: firstCode ? firstCode.textContent : null,
      problems: window.__problems
    });
    document.body.appendChild(probe);
  }, 200);
});
</script>"""


def browse(page: str, tmp_path: Path, name: str) -> dict[str, Any]:
    """Open ``page`` (with the probe) in headless Chromium and return what the probe saw."""
    assert CHROMIUM is not None
    probed = tmp_path / f"{name}.probe.html"
    probed.write_text(page.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    command = [
        CHROMIUM,
        *BROWSER_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
    ]
    done = subprocess.run(
        [*command, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, (
        f"Chromium exited {done.returncode} without the probe's output; stderr:\n{done.stderr[-3000:]}"
    )
    assert "Uncaught" not in done.stderr, done.stderr[-3000:]
    return json.loads(html.unescape(found.group(1)))


def screenshot(path: Path, tmp_path: Path, out: Path, height: int) -> None:
    assert CHROMIUM is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        CHROMIUM,
        *BROWSER_FLAGS,
        f"--user-data-dir={tmp_path / 'shots'}",
        "--virtual-time-budget=5000",
    ]
    done = subprocess.run(
        [*command, f"--window-size=1280,{height}", f"--screenshot={out}", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.exists(), f"no screenshot; Chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    with Image.open(out) as shot:
        assert shot.size == (1280, height)
        darkest, lightest = shot.convert("L").getextrema()
        assert darkest < 80 and lightest > 220  # text on a light page, not a blank or black frame
