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
from typing import Any

from ._version import __version__
from .errors import ConfigError, GradmedicError


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
    add_trial_parser(commands)
    cure = commands.add_parser(
        "treat", help="apply remedies to a copy of a model of yours and prove them with a second checkup"
    )
    cure.add_argument("target", metavar="TARGET", help="as for checkup")
    cure.add_argument("--allow", help="comma-separated remedy families: init,activation,normalization,"
                      "residual,recurrent,clipping (default: all)")  # fmt: skip
    cure.add_argument("--trial", action="store_true",
                      help="also trial the training (TARGET may return its optimizer), prove the result by "
                      "a second trial; adds the learning rate, optimizer and clipping remedies")  # fmt: skip
    cure.add_argument("--out", metavar="DIR", default="gradmedic-treated",
                      help="where to write model.pt (treated state_dict), changes.json, reports")  # fmt: skip
    page = commands.add_parser(
        "report", help="diagnose a recorded run and write a self-contained HTML report (exit 1: not healthy)"
    )
    page.add_argument("run", metavar="RUN.jsonl", help="a run from History.save or watch(..., log_path=...)")
    page.add_argument("-o", "--out", metavar="PATH", help="the HTML file (default: RUN with .html)")
    page.add_argument("--title", help="the page title")
    add_lab_parser(commands)
    return parser


def add_trial_parser(commands: Any) -> None:
    """``gradmedic trial TARGET [--steps N] [--json PATH] [--markdown PATH]``."""
    trial = commands.add_parser(
        "trial",
        help="the checkup, then a short run of your training on a copy of the model, then the diagnosis",
    )
    trial.add_argument(
        "target",
        metavar="TARGET",
        help="as for checkup; may also return its optimizer (5th item or 'optimizer')",
    )
    trial.add_argument(
        "--steps", type=_positive_int, help="training steps (default: gradmedic chooses, ~100)"
    )
    trial.add_argument("--json", metavar="PATH", help="also write the report (with its curves) as JSON")
    trial.add_argument("--markdown", metavar="PATH", help="also write the report as Markdown")


def run_trial(args: argparse.Namespace) -> int:
    """``gradmedic trial TARGET``: print the trial's report; exit 1 when the run is not healthy."""
    from .diagnosis import print_report, trial
    from .targets import load_target

    target = load_target(args.target)
    data = (target.inputs, target.targets)
    report = trial(target.model, data, target.loss_fn, target.optimizer, args.steps)
    if args.json:
        report.to_json(args.json)
    if args.markdown:
        Path(args.markdown).write_text(report.to_markdown(), encoding="utf-8")
    print_report(report)
    return 0 if report.healthy else 1


#: The lab's studies, for the help text (``gradmedic.lab.studies.STUDIES``, not imported here).
LAB_STUDIES = ("activations", "init", "batchnorm", "layernorm", "residual", "clipping", "recurrent",
               "optimizers", "depth", "treat")  # fmt: skip


def add_lab_parser(commands: Any) -> None:
    """``gradmedic lab [STUDY ...] [options]`` and ``gradmedic lab report DIR``."""
    lab = commands.add_parser(
        "lab",
        help="measure every remedy on real tasks, side by side, and write a report (resumable)",
        usage="gradmedic lab [STUDY ...] [--preset quick|full] [--out DIR] [--workers N] "
        "[--executor local|ray]\n       gradmedic lab report DIR",
        description="Run the lab's studies (default: all) and write DIR/report.html. Each cell's result "
        "is saved as it finishes: run the same command again to resume an interrupted run. "
        "'gradmedic lab report DIR' re-renders the report from the saved results.",
    )
    lab.add_argument("studies", nargs="*", metavar="STUDY",
                     help=f"studies to run: {', '.join(LAB_STUDIES)} (default: all)")  # fmt: skip
    lab.add_argument("--preset", choices=("quick", "full"), default="quick",
                     help="quick: every study in minutes; full: the whole grid (default quick)")  # fmt: skip
    lab.add_argument("--out", metavar="DIR", default="lab-out",
                     help="where results and the report go (default lab-out)")  # fmt: skip
    lab.add_argument("--workers", metavar="N", type=_positive_int,
                     help="worker processes (Ray: CPUs of a local instance); default: the cores")  # fmt: skip
    lab.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local process pool, or Ray (a cluster when RAY_ADDRESS is set, else a local "
                     "instance; pip install 'gradmedic[ray]')")  # fmt: skip


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_lab_command(args: argparse.Namespace) -> int:
    """``gradmedic lab ...``: run the studies, save the cells, write the report, summarize."""
    import time

    from .lab.runner import LabInterrupted, run_lab

    if args.studies[:1] == ["report"]:
        return run_lab_report(args)
    start = time.perf_counter()
    try:
        studies = args.studies or None
        results = run_lab(studies, args.preset, args.out, args.workers, args.executor, report=False)
    except LabInterrupted as stop:
        print(f"\ngradmedic lab: interrupted: {stop}", file=sys.stderr)
        return 130
    path = _write_lab_report(args.out)
    errors = [result for result in results if not result.ok]
    print(f"lab: {len(results)} cells, {len(results) - len(errors)} ok, {len(errors)} "
          f"error{'s' * (len(errors) != 1)}; {_duration(time.perf_counter() - start)}")  # fmt: skip
    for result in errors[:5]:
        print(f"  error in {result.spec.label}: {(result.error or '').splitlines()[0]}")
    if len(errors) > 5:
        print(f"  ... and {len(errors) - 5} more (see the report)")
    print(f"report: {path}")
    return 0


def run_lab_report(args: argparse.Namespace) -> int:
    """``gradmedic lab report DIR``: render the report again from the results saved in DIR."""
    if len(args.studies) != 2:
        raise ConfigError("usage: gradmedic lab report DIR (one lab directory)")
    out = Path(args.studies[1])
    if not any((out / "cells").glob("*.json")):
        raise ConfigError(
            f"no lab results in {out} (expected {out / 'cells'}/*.json, from 'gradmedic lab --out {out}')"
        )
    print(f"report: {_write_lab_report(out)}")
    return 0


def _write_lab_report(out: str | Path) -> Path:
    from .lab.report import write_report

    return Path(write_report(out))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


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
    treatment = treat(target.model, target.inputs, target.targets, target.loss_fn, allow=allow,
                      optimizer=target.optimizer, trial=args.trial)  # fmt: skip
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
    if treatment.trial_before is not None and treatment.trial_after is not None:
        treatment.trial_before.to_json(out / "trial_before.json")
        treatment.trial_after.to_json(out / "trial_after.json")
    print("\n" + treatment.summary())
    print(
        f"\nwritten: {out / 'model.pt'} (load it into the treated architecture: gradmedic.treat(...).model), "
        f"{out / 'changes.json'}, {out / 'before.json'}, {out / 'after.json'}"
    )
    trial_ok = treatment.trial_after is None or treatment.trial_after.healthy
    return 0 if treatment.after.healthy and trial_ok else 1


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
        if args.command == "trial":
            return run_trial(args)
        if args.command == "treat":
            return run_treat(args)
        if args.command == "report":
            return run_report(args)
        if args.command == "lab":
            return run_lab_command(args)
    except (GradmedicError, ImportError) as error:
        print(f"gradmedic: {error}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
