"""A report as a list of blocks, written out as Markdown or as one self-contained HTML page.

The lab report is built once as blocks (headings, paragraphs, tables, pictures, lists) and
rendered twice, so ``report.md`` and ``report.html`` always say the same thing. The HTML page is
written with the shell of gradmedic's pages (:mod:`gradmedic.pages.shell`: the look of the run
report) and embeds each picture as a PNG data URI; the Markdown file links each picture from a
folder next to it.

Example:
    >>> blocks = [Heading("Results"), Text("a | b"), Table(["x", "y"], [["1", "a|b"]], numeric=(0,))]
    >>> print(to_markdown("Lab", blocks))
    # Lab
    <BLANKLINE>
    ## Results
    <BLANKLINE>
    a | b
    <BLANKLINE>
    | x | y |
    | ---: | --- |
    | 1 | a\\|b |
    <BLANKLINE>
    >>> page = to_html("Lab", blocks)
    >>> "<td class=\\"num\\">1</td>" in page, "a|b" in page
    (True, True)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..pages.shell import bullets, escape, figure, nav, page


@dataclass
class Heading:
    """A heading (level 2 = a section); ``anchor`` names it for links in the HTML page."""

    text: str
    level: int = 2
    anchor: str | None = None


@dataclass
class Text:
    """A paragraph of plain text; ``muted`` for notes."""

    text: str
    muted: bool = False


@dataclass
class Table:
    """Rows of plain-text cells; the ``numeric`` columns are right-aligned."""

    header: list[str]
    rows: list[list[str]]
    numeric: tuple[int, ...] = ()


@dataclass
class Picture:
    """A PNG picture: ``name`` is its file stem in the Markdown's picture folder."""

    name: str
    title: str
    caption: str
    png: bytes


@dataclass
class Items:
    """A bulleted list of plain-text items."""

    items: list[str]


@dataclass
class Nav:
    """Links to headings of this document, by anchor (the HTML page only)."""

    links: list[tuple[str, str]] = field(default_factory=list)


Block = Heading | Text | Table | Picture | Items | Nav


# -- Markdown ------------------------------------------------------------------------------


def to_markdown(title: str, blocks: Sequence[Block], pictures: str = "figures") -> str:
    """The document as GitHub-flavoured Markdown; pictures link to ``pictures/<name>.png``."""
    parts = [f"# {_md(title)}"]
    for block in blocks:
        part = _md_block(block, pictures)
        if part:
            parts.append(part)
    return "\n\n".join(parts) + "\n"


def _md_block(block: Block, pictures: str) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {_md(block.text)}"
    if isinstance(block, Text):
        return f"*{_md(block.text)}*" if block.muted else _md(block.text)
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Picture):
        return f"![{_md(block.title)}]({pictures}/{block.name}.png)\n\n*{_md(block.caption)}*"
    if isinstance(block, Items):
        return "\n".join(f"- {_md(item)}" for item in block.items)
    return ""


def _md_table(table: Table) -> str:
    rule = ["---:" if i in table.numeric else "---" for i in range(len(table.header))]
    lines = [table.header, rule, *table.rows]
    return "\n".join("| " + " | ".join(_cell(c) for c in line) + " |" for line in lines)


def _md(text: str) -> str:
    """Text safe in Markdown prose: no HTML tags, no stray emphasis."""
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([*`\\])", r"\\\1", text)


def _cell(text: str) -> str:
    return _md(" ".join(text.split())).replace("|", "\\|") if text not in ("---", "---:") else text


# -- HTML ----------------------------------------------------------------------------------


def to_html(title: str, blocks: Sequence[Block]) -> str:
    """The document as one self-contained HTML page (the look of gradmedic's HTML report)."""
    return page(title, [_html_block(block) for block in blocks])


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        anchor = f' id="{escape(block.anchor)}"' if block.anchor else ""
        return f"<h{block.level}{anchor}>{escape(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        return f'<p class="why">{escape(block.text)}</p>' if block.muted else f"<p>{escape(block.text)}</p>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Picture):
        return figure(block.png, block.title, block.caption)
    if isinstance(block, Items):
        return bullets(block.items)
    return nav(block.links)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join(_html_row(row, table.numeric) for row in table.rows)
    rows = f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
    return f'<div style="overflow-x:auto"><table>{rows}</table></div>'


def _html_row(row: list[str], numeric: tuple[int, ...]) -> str:
    opening = ['<td class="num">' if i in numeric else "<td>" for i in range(len(row))]
    return "<tr>" + "".join(f"{td}{escape(c)}</td>" for td, c in zip(opening, row)) + "</tr>"
