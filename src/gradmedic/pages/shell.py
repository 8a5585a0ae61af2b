"""The shell of every gradmedic HTML page: the head, the style sheet, the copy-button script, the
document around the content, and the pieces every page is made of (sections, links, figures).

The run report (:mod:`gradmedic.pages.report`), the treatment page (:mod:`gradmedic.pages.treatment`)
and the lab report (:mod:`gradmedic.lab.document`) are written with it, so they share one look. A
page is self-contained: the style sheet and the script are inline, pictures are PNG data URIs
(:mod:`gradmedic.canvas`), and every text is escaped with :func:`escape`. A notebook gets a
:func:`fragment` instead: one ``<div>`` with the style sheet scoped to it (:func:`scoped_css`) and
no script.

Example:
    >>> html = page("a <title>", [section("intro", "Intro", "<p>hello</p>")])
    >>> html.startswith("<!DOCTYPE html>"), "<title>a &lt;title&gt;</title>" in html
    (True, True)
    >>> nav([("intro", "Intro")])
    '<nav><a href="#intro">Intro</a></nav>'
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._version import __version__
from ..canvas import PAGE_DPI, data_uri, png_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Resolution of the embedded pictures (they are drawn at their usual size in inches).
DPI = PAGE_DPI


def escape(text: object) -> str:
    """Escape any text (quotes included) for HTML content and attribute values.

    Example:
        >>> escape('<a href="x">')
        '&lt;a href=&quot;x&quot;&gt;'
    """
    return html.escape(str(text), quote=True)


# -- the document ------------------------------------------------------------------------------

CSS = """
:root { --critical: #b42318; --critical-bg: #fef3f2; --warning: #b54708; --warning-bg: #fffaeb;
  --info: #175cd3; --info-bg: #eff8ff; --healthy: #067647; --healthy-bg: #ecfdf3;
  --line: #d0d5dd; --muted: #475467; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #101828; margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1200px; }
h1 { font-size: 1.6rem; margin: 0 0 .8rem; overflow-wrap: anywhere; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .8rem; border-bottom: 1px solid var(--line); padding-bottom: .3rem; }
h3 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .86rem; }
code { background: #f2f4f7; padding: 0 .25rem; border-radius: 3px; overflow-wrap: anywhere; }
pre { position: relative; background: #f2f4f7; border: 1px solid var(--line); border-radius: 6px;
  padding: .6rem 4.8rem .6rem .8rem; margin: .3rem 0 .6rem; overflow-x: auto; white-space: pre-wrap; }
pre code { background: none; padding: 0; }
button.copy { position: absolute; top: .35rem; right: .35rem; font: inherit; font-size: .75rem;
  padding: .1rem .5rem; border: 1px solid var(--line); border-radius: 4px; background: #fff;
  cursor: pointer; }
button.copy:hover { background: #eaecf0; }
nav { margin: 1rem 0; font-size: .95rem; }
nav a { margin-right: 1.2rem; }
.verdict { border-radius: 10px; padding: 1rem 1.3rem; border-left: 8px solid; }
.verdict.sick { background: var(--critical-bg); border-color: var(--critical); }
.verdict.healthy { background: var(--healthy-bg); border-color: var(--healthy); }
.verdict .big { font-size: 1.9rem; font-weight: 700; margin-right: 1rem; }
.verdict.sick .big { color: var(--critical); }
.verdict.healthy .big { color: var(--healthy); }
.verdict p { margin: .5rem 0; }
.score { display: inline-flex; align-items: center; gap: .5rem; font-size: 1.05rem; margin-right: 1rem; }
.meter { display: inline-block; width: 140px; height: 12px; background: #fff; border: 1px solid var(--line);
  border-radius: 6px; overflow: hidden; vertical-align: middle; }
.meter span { display: block; height: 100%; }
.chip { display: inline-block; border-radius: 999px; padding: 0 .6rem; font-size: .8rem; font-weight: 600;
  margin: .1rem .25rem .1rem 0; border: 1px solid; white-space: nowrap; }
.chip.critical { color: var(--critical); background: var(--critical-bg); }
.chip.warning { color: var(--warning); background: var(--warning-bg); }
.chip.info { color: var(--info); background: var(--info-bg); }
.chip.none { color: var(--muted); background: #f9fafb; }
.chip.auto { color: var(--healthy); background: var(--healthy-bg); }
.chip.family { color: var(--muted); background: #f9fafb; font-weight: 400; }
.first { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .6rem .9rem;
  margin-top: .7rem; }
.first h3 { margin: 0 0 .3rem; font-size: 1rem; }
.finding { border: 1px solid var(--line); border-left: 6px solid; border-radius: 8px;
  padding: .2rem 1.1rem .6rem; margin: 0 0 1.1rem; }
.finding.critical { border-left-color: var(--critical); }
.finding.warning { border-left-color: var(--warning); }
.finding.info { border-left-color: var(--info); }
.finding h3 { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; }
.finding dl { display: grid; grid-template-columns: 6.5rem 1fr; gap: .3rem .8rem; margin: .4rem 0 .8rem; }
.finding dt { font-weight: 600; color: var(--muted); }
.finding dd { margin: 0; overflow-wrap: anywhere; }
.remedies li { margin-bottom: .5rem; }
.why { color: var(--muted); }
details summary { cursor: pointer; color: var(--info); }
figure { margin: .4rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaecf0; border-radius: 6px; }
figcaption { color: var(--muted); font-size: .9rem; max-width: 75ch; }
.skipped { color: var(--muted); background: #f9fafb; border: 1px dashed var(--line); border-radius: 6px;
  padding: .5rem .8rem; }
table { border-collapse: collapse; font-size: .88rem; width: 100%; }
th, td { border-bottom: 1px solid #eaecf0; padding: .25rem .5rem; text-align: left; vertical-align: middle; }
th { background: #f9fafb; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { overflow-wrap: anywhere; max-width: 22rem; }
tr.vanishing td { background: #f5f8ff; }
tr.vanishing td.signal, td.num.vanishing { color: var(--info); font-weight: 600; }
tr.exploding td.signal, td.num.exploding { color: var(--critical); font-weight: 600; }
.proof { font-size: 1.1rem; margin: 1rem 0 .4rem; }
.chip.small { font-size: .7rem; padding: 0 .45rem; }
tr.exploding td { background: var(--critical-bg); }
.bar { width: 11rem; height: .8rem; background: #f2f4f7; border-radius: 3px; overflow: hidden; }
.bar span { display: block; height: 100%; background: #53b1fd; }
tr.vanishing .bar span { background: #2e90fa; opacity: .45; }
tr.exploding .bar span { background: var(--critical); }
.legend { color: var(--muted); font-size: .85rem; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 30rem), 1fr));
  gap: 1.5rem; }
.columns > div { min-width: 0; }
.changes li { white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .86rem;
  overflow-wrap: anywhere; }
.changes li.skip { color: var(--muted); }
footer { margin-top: 3rem; color: var(--muted); font-size: .8rem; }
@media print { button.copy, nav { display: none; } }
"""


#: Adds a copy button to every code block (plain inline script; the page works without it).
SCRIPT = """
(function () {
  function copy(button, code) {
    function done(ok) {
      button.textContent = ok ? "copied" : "press Ctrl+C";
      setTimeout(function () { button.textContent = "copy"; }, 1500);
    }
    function select() {
      var range = document.createRange();
      range.selectNodeContents(code);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (error) { ok = false; }
      done(ok);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(code.textContent).then(function () { done(true); }, select);
    } else {
      select();
    }
  }
  document.querySelectorAll("pre > code").forEach(function (code) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "copy";
    button.setAttribute("aria-label", "copy this code");
    button.addEventListener("click", function () { copy(button, code); });
    code.parentNode.insertBefore(button, code);
  });
})();
"""


def page(title: str, sections: Sequence[str]) -> str:
    """The whole page: head, style sheet, ``title`` as its heading, the ``sections`` (empty ones
    left out), a footer and the copy-button script."""
    body = "\n".join(part for part in sections if part)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="gradmedic {escape(__version__)}">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{body}\n"
        f"<footer>Written by gradmedic {escape(__version__)}. Self-contained: no network needed.</footer>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def section(anchor: str, heading: str, content: str) -> str:
    """A ``<section>`` with an id and a heading; nothing when ``content`` is empty."""
    if not content:
        return ""
    return f'<section id="{escape(anchor)}">\n<h2>{escape(heading)}</h2>\n{content}\n</section>'


def nav(links: Sequence[tuple[str, str]]) -> str:
    """Links to anchors of the page: ``(anchor, text)`` pairs, in order."""
    return "<nav>" + "".join(f'<a href="#{escape(a)}">{escape(text)}</a>' for a, text in links) + "</nav>"


def side_by_side(left: str, right: str, headings: Sequence[str] = ("Before", "After")) -> str:
    return (
        f'<div class="columns"><div><h3>{escape(headings[0])}</h3>{left}</div>'
        f"<div><h3>{escape(headings[1])}</h3>{right}</div></div>"
    )


def bullets(items: Sequence[str]) -> str:
    """A bulleted list of plain-text items (escaped)."""
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


# -- pictures ----------------------------------------------------------------------------------

#: Draws a picture; called only when the page shows it.
Draw = Callable[[], "Figure"]


def figure(png: bytes, alt: str, caption: str) -> str:
    """A PNG picture as an embedded ``<figure>`` with its caption.

    Example:
        >>> print(figure(b"png", "flow", "a <caption>").replace("><", ">\\n<"))
        <figure>
        <img src="data:image/png;base64,cG5n" alt="flow">
        <figcaption>a &lt;caption&gt;</figcaption>
        </figure>
    """
    return (
        f'<figure><img src="{data_uri(png)}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def picture(title: str, caption: str, draw: Draw | None, missing: str | None = None) -> str:
    """A heading and the drawn figure as an embedded PNG, or a note saying why it is skipped
    (``missing``, or matplotlib not installed)."""
    head = f"<h3>{escape(title)}</h3>" if title else ""
    if missing is not None or draw is None:
        return f'{head}<p class="skipped">Skipped: {escape(missing)}</p>'
    try:
        fig = draw()
    except ImportError as error:
        return f'{head}<p class="skipped">Skipped: {escape(error)}</p>'
    return head + figure(png_bytes(fig, DPI), title or caption, caption)


# -- notebooks ---------------------------------------------------------------------------------

#: The class of the element that holds a notebook fragment; its style sheet applies inside it only.
NOTEBOOK_SCOPE = "gradmedic-nb"


def scoped_css(css: str, scope: str) -> str:
    """``css`` with every rule confined to elements inside ``.scope`` (the page's root rules to it).

    Example:
        >>> print(scoped_css(":root { --x: 1; } body, p { margin: 0; }", "box"))
        .box { --x: 1; }
        .box, .box p { margin: 0; }
    """
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        scoped = []
        for selector in (part.strip() for part in selectors.split(",")):
            scoped.append(f".{scope}" if selector in (":root", "body", "html") else f".{scope} {selector}")
        rules.append(f"{', '.join(scoped)} {{{body}}}")
    return "\n".join(rules)


def fragment(parts: Sequence[str]) -> str:
    """The ``parts`` in one ``<div>`` holding the style sheet scoped to it (no script)."""
    body = "\n".join(part for part in parts if part)
    return (
        f'<div class="{NOTEBOOK_SCOPE}"><style>{scoped_css(CSS, NOTEBOOK_SCOPE)}\n'
        f".{NOTEBOOK_SCOPE} {{ padding: .5rem 0; max-width: 1000px; }}</style>\n{body}\n</div>"
    )
