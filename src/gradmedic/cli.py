"""The ``gradmedic`` command line.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    gradmedic ...
    0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__
from .errors import GradmedicError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradmedic",
        description="Find, explain and treat vanishing and exploding gradients in PyTorch models.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="train a sick built-in network on scikit-learn's digits under the monitor"
    )
    demo.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    demo.add_argument("--depth", type=int, default=20, help="number of sigmoid layers (default 20)")
    demo.add_argument("--seed", type=int, default=0)
    check = commands.add_parser(
        "checkup", help="one forward/backward pass on a model of yours, then the diagnosis"
    )
    check.add_argument(
        "target",
        metavar="TARGET",
        help="package.module:function or path/file.py:function "
        "returning (model, inputs[, targets[, loss_fn]])",
    )
    check.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    check.add_argument("--markdown", metavar="PATH", help="also write the report as Markdown")
    cure = commands.add_parser(
        "treat", help="apply remedies to a copy of a model of yours and prove them with a second checkup"
    )
    cure.add_argument("target", metavar="TARGET", help="as for checkup")
    cure.add_argument("--allow", help="comma-separated remedy families: init,activation,normalization,"
                      "residual,recurrent,clipping (default: all)")  # fmt: skip
    cure.add_argument("--out", metavar="DIR", default="gradmedic-treated",
                      help="where to write model.pt (treated state_dict), changes.json, reports")  # fmt: skip
    page = commands.add_parser(
        "report", help="diagnose a recorded run and write a self-contained HTML report (exit 1: not healthy)"
    )
    page.add_argument("run", metavar="RUN.jsonl", help="a run from History.save or watch(..., log_path=...)")
    page.add_argument("-o", "--out", metavar="PATH", help="the HTML file (default: RUN with .html)")
    page.add_argument("--title", help="the page title")
    return parser


def run_report(args: argparse.Namespace) -> int:
    """``gradmedic report RUN.jsonl -o report.html``: diagnose a recorded run, write the HTML."""
    from .diagnosis.render import headline
    from .html_report import report_run

    report, path = report_run(args.run, args.out, args.title)
    print(f"{headline(report)}\nwritten: {path}")
    return 0 if report.healthy else 1


def run_treat(args: argparse.Namespace) -> int:
    """``gradmedic treat TARGET``: before/after reports, the changes, the treated weights."""
    import json

    import torch

    from .diagnosis import print_report
    from .remedies import treat
    from .targets import load_target

    target = load_target(args.target)
    allow = args.allow.split(",") if args.allow else None
    treatment = treat(target.model, target.inputs, target.targets, target.loss_fn, allow=allow)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(treatment.model.state_dict(), out / "model.pt")
    (out / "changes.json").write_text(json.dumps([c.to_dict() for c in treatment.changes], indent=2) + "\n")
    treatment.before.to_json(out / "before.json")
    treatment.after.to_json(out / "after.json")
    print("BEFORE")
    print_report(treatment.before)
    print("\nAFTER")
    print_report(treatment.after)
    print("\n" + treatment.summary())
    print(
        f"\nwritten: {out / 'model.pt'} (load it into the treated architecture: gradmedic.treat(...).model), "
        f"{out / 'changes.json'}, {out / 'before.json'}, {out / 'after.json'}"
    )
    return 0 if treatment.after.healthy else 1


def run_checkup(args: argparse.Namespace) -> int:
    """``gradmedic checkup TARGET``: print the report; exit 1 when the model is not healthy."""
    from .diagnosis import checkup, print_report
    from .targets import load_target

    target = load_target(args.target)
    report = checkup(target.model, target.inputs, target.targets, target.loss_fn)
    if args.json:
        report.to_json(args.json)
    if args.markdown:
        Path(args.markdown).write_text(report.to_markdown(), encoding="utf-8")
    print_report(report)
    return 0 if report.healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"gradmedic {__version__}")
        return 0
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(steps=args.steps, depth=args.depth, seed=args.seed)
            return 0
        if args.command == "checkup":
            return run_checkup(args)
        if args.command == "treat":
            return run_treat(args)
        if args.command == "report":
            return run_report(args)
    except (GradmedicError, ImportError) as error:
        print(f"gradmedic: {error}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
