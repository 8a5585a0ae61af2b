"""Reports for people: plain text (any terminal), rich (colour, when installed) and Markdown.

Example:
    >>> from gradmedic.diagnosis.findings import Report
    >>> print(render_text(Report([], 1.0, "checkup")).splitlines()[0])
    gradmedic checkup: healthy (health score 1.00): no finding
"""

from __future__ import annotations

import math
from typing import IO, TYPE_CHECKING

from ..terminal import BAR_WIDTH, fmt, log_bar
from .severity import Severity

if TYPE_CHECKING:
    from .findings import Finding, Report


def layer_list(names: list[str], limit: int = 6) -> str:
    """``'0', '2', '4'`` or ``'0', '2', ... '38' (20 layers)``."""
    quoted = [repr(n) for n in names]
    if len(quoted) <= limit:
        return ", ".join(quoted)
    return f"{', '.join(quoted[: limit - 1])}, ... {quoted[-1]} ({len(quoted)} layers)"


def headline(report: Report) -> str:
    """One line: source, verdict, score, number of findings per severity."""
    verdict = "healthy" if report.healthy else "NOT healthy"
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in Severity}
    parts = [f"{n} {s.label}" for s, n in sorted(counts.items(), reverse=True) if n]
    found = ", ".join(parts) if parts else "no finding"
    return f"gradmedic {report.source}: {verdict} (health score {report.score:.2f}): {found}"


def layer_lines(report: Report) -> list[str]:
    """The per-layer backprop signal as log-scale bars."""
    values = [
        layer.signal_rms
        for layer in report.layers
        if math.isfinite(layer.signal_rms) and layer.signal_rms > 0
    ]
    if not values:
        return []
    low, high = min(values), max(values)
    lines = [
        f"{'layer':<16}{'type':<10}{'then':<10}{'signal rms':>11}  {'(log scale)':<{BAR_WIDTH}} sat/dead"
    ]
    for layer in report.layers:
        extra = layer.saturated if math.isfinite(layer.saturated) else layer.dead
        lines.append(
            f"{layer.name[:15]:<16}{layer.type[:9]:<10}{(layer.activation or '')[:9]:<10}"
            f"{fmt(layer.signal_rms):>11}  {log_bar(layer.signal_rms, low, high)} "
            f"{f'{extra:.0%}' if math.isfinite(extra) else ''}"
        )
    return lines


def finding_lines(finding: Finding) -> list[str]:
    """A finding: kind, layers, evidence, cause, ranked remedies with code."""
    lines = [f"[{finding.severity.label.upper()}] {finding.kind}"]
    if finding.layers:
        lines.append(f"  layers:   {layer_list(finding.layers)}")
    lines += [f"  evidence: {finding.evidence}", f"  cause:    {finding.cause}"]
    lines += ["  remedies:"] if finding.remedies else []  # an info finding may have none
    for rank, remedy in enumerate(finding.remedies, 1):
        auto = " [gradmedic.treat applies it]" if remedy.automatic else ""
        lines.append(f"    {rank}. {remedy.name}{auto}: {remedy.why}")
        lines.append(f"       {remedy.code}")
    return lines


def render_text(report: Report) -> str:
    """The whole report as plain text."""
    lines = [headline(report)]
    table = layer_lines(report)
    if table:
        lines += ["", *table]
    for finding in report.findings:
        lines += ["", *finding_lines(finding)]
    for note in report.notes:
        lines += ["", f"note: {note}"]
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    """The report as Markdown: headline, per-layer table, findings with remedies and code."""
    out = [f"# {headline(report)}", ""]
    if report.layers:
        out += ["| layer | type | then | signal rms | saturated | dead |", "|---|---|---|---|---|---|"]
        for layer in report.layers:
            out.append(
                f"| `{layer.name}` | {layer.type} | {layer.activation or ''} | {fmt(layer.signal_rms)} | "
                f"{_percent(layer.saturated)} | {_percent(layer.dead)} |"
            )
        out.append("")
    for f in report.findings:
        out += [f"## {f.severity.label}: `{f.kind}`", ""]
        if f.layers:
            out.append(f"- **layers**: {layer_list(f.layers)}")
        out += [f"- **evidence**: {f.evidence}", f"- **cause**: {f.cause}", ""]
        out += ["Remedies:", ""] if f.remedies else []
        for rank, r in enumerate(f.remedies, 1):
            auto = " *(applied by `gradmedic.treat`)*" if r.automatic else ""
            out += [f"{rank}. **{r.name}**{auto}: {r.why}", "", "   ```python", f"   {r.code}", "   ```", ""]
    out += [f"> {note}" for note in report.notes]
    return "\n".join(out).rstrip() + "\n"


def _percent(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else ""


STYLES = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def print_report(report: Report, file: IO[str] | None = None) -> None:
    """Print the report: in colour with ``rich`` when it is installed, else as plain text."""
    try:
        from rich.console import Console
        from rich.markup import escape
    except ImportError:
        print(render_text(report), file=file)
        return
    console = Console(file=file, highlight=False, soft_wrap=True)
    style = "bold green" if report.healthy else "bold red"
    console.print(f"[{style}]{escape(headline(report))}[/]")
    table = layer_lines(report)
    if table:
        console.print()
        console.print(f"[bold]{escape(table[0])}[/]")
        for line in table[1:]:
            console.print(escape(line).replace("█", "[magenta]█[/]"))
    for finding in report.findings:
        lines = finding_lines(finding)
        console.print()
        console.print(f"[{STYLES[finding.severity]}]{escape(lines[0])}[/]")
        for line in lines[1:]:
            code = line.startswith("       ")
            console.print(f"[green]{escape(line)}[/]" if code else escape(line))
    for note in report.notes:
        console.print(f"\n[dim]note: {escape(note)}[/]")
