"""Unit tests of :mod:`gradmedic.lab.document`: one list of blocks, written as Markdown and HTML."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from gradmedic.lab.document import Heading, Items, Nav, Picture, Table, Text, to_html, to_markdown

PNG = b"\x89PNG\r\n\x1a\nnot really a picture"


def blocks() -> list:
    return [
        Nav([("results", "Results")]),
        Heading("Results <b>", anchor="results"),
        Text("gain *2* with `code` and a \\ and <script>alert(1)</script>"),
        Text("a note", muted=True),
        Table(["arm", "gain"], [["relu | leaky", "0.5"], ["multi\nline  text", "---"]], numeric=(1,)),
        Picture("signal_depth", "Signal", "caption <i>", PNG),
        Items(["one", "two *bold*"]),
    ]


class Tags(HTMLParser):
    """The start tags of a page, with their attributes, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_markdown_escapes_what_markdown_would_read_as_markup() -> None:
    md = to_markdown("Lab *report*", blocks())
    lines = md.splitlines()
    assert lines[0] == "# Lab \\*report\\*"
    assert "## Results &lt;b&gt;" in lines
    assert "gain \\*2\\* with \\`code\\` and a \\\\ and &lt;script&gt;alert(1)&lt;/script&gt;" in lines
    assert "*a note*" in lines
    assert "| arm | gain |" in lines and "| --- | ---: |" in lines
    assert "| relu \\| leaky | 0.5 |" in lines and "| multi line text | --- |" in lines
    assert "![Signal](figures/signal_depth.png)" in lines and "*caption &lt;i&gt;*" in lines
    assert lines[-2:] == ["- one", "- two \\*bold\\*"] and md.endswith("\n")
    assert "(pics/signal_depth.png)" in to_markdown("Lab", blocks(), pictures="pics")


def test_html_escapes_text_aligns_numbers_and_embeds_pictures() -> None:
    page = to_html("Lab", blocks())
    parsed = Tags()
    parsed.feed(page)
    names = [tag for tag, _ in parsed.tags]
    empty = Tags()
    empty.feed(to_html("Lab", []))
    shell = [tag for tag, _ in empty.tags]
    for tag in ("script", "b", "i"):  # text stays text: no tag beyond the page shell's own
        assert names.count(tag) == shell.count(tag), tag
    assert "<script>alert(1)</script>" in "".join(parsed.text)
    assert ("h2", {"id": "results"}) in parsed.tags
    assert ("a", {"href": "#results"}) in parsed.tags
    assert ("p", {"class": "why"}) in parsed.tags
    cells = re.findall(r"<td( class=\"num\")?>([^<]*)</td>", page)
    assert cells[:2] == [("", "relu | leaky"), (' class="num"', "0.5")]
    (src,) = [attrs["src"] for tag, attrs in parsed.tags if tag == "img"]
    assert src is not None and base64.b64decode(src.split(",", 1)[1]) == PNG
    assert names.count("li") == 2


def test_both_forms_say_the_same_words() -> None:
    words = ["Results", "a note", "relu", "Signal", "one", "two"]
    md, page = to_markdown("Lab", blocks()), to_html("Lab", blocks())
    assert all(w in md and w in page for w in words)
    assert to_markdown("Lab", [Nav([("a", "b")])]) == "# Lab\n"  # links are for the HTML page only
