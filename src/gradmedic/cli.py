"""The ``gradmedic`` command line.

Exit status, the same for every subcommand: 0 healthy (or done), 1 not healthy, 2 a usage or
input error (a wrong argument, a TARGET or file gradmedic cannot use, an error raised by the
user's own model or loss): one line on stderr, no traceback; 3 a bug in gradmedic, with the
traceback; 130 interrupted (``gradmedic run`` exits with the script's own status instead, once the
script runs). :func:`main` is the one place that maps errors to these codes, so a
new subcommand gets them without code of its own.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    gradmedic ...
    0
    >>> main(["demo", "--steps", "-5"])
    2
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ._version import __version__
from .errors import USER_CODE, ConfigError, GradmedicError

if TYPE_CHECKING:
    from .diagnosis import Report
    from .history import History

#: Exit status: healthy, not healthy, a usage or input error, a bug in gradmedic.
EXIT_HEALTHY, EXIT_NOT_HEALTHY, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3


class UsageError(Exception):
    """A command line argparse refuses; :func:`main` prints it on one line and exits 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused command line raises :class:`UsageError` instead of printing the
    usage and exiting (its subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gradmedic",
        description="Find, explain and treat vanishing and exploding gradients in PyTorch models.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="train a sick built-in network on scikit-learn's digits under the monitor"
    )
    demo.add_argument("--steps", type=_positive_int, default=300, help="training steps (default 300)")
    demo.add_argument("--depth", type=_positive_int, default=20, help="number of sigmoid layers (default 20)")
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
    add_run_parser(commands)
    return parser


def add_run_parser(commands: Any) -> None:
    """``gradmedic run [--out DIR] [--every N] [--live] SCRIPT [ARGS...]``."""
    run = commands.add_parser(
        "run",
        help="run an unmodified training script, watch every model its optimizers train, diagnose at exit",
        description="Runs SCRIPT as 'python SCRIPT ARGS' would, watches each model an optimizer trains "
        "(from its second step), and at exit prints the diagnosis and writes DIR/report.json, "
        "DIR/report.html and DIR/run.jsonl. Exits with the script's own status.",
    )
    run.add_argument("--out", metavar="DIR", default="gradmedic-run",
                     help="where the reports and runs go (default gradmedic-run)")  # fmt: skip
    run.add_argument("--every", metavar="N", type=_positive_int,
                     help="record the per-layer signal every N steps (default: watch()'s)")  # fmt: skip
    run.add_argument("--live", action="store_true", help="a terminal view of the signal and findings")
    run.add_argument("script", metavar="SCRIPT", help="the training script")
    run.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS", help="the script's arguments")


def run_script_command(args: argparse.Namespace) -> int:
    """``gradmedic run SCRIPT ARGS``: the script's own exit status."""
    from .script_runner import run_script

    options = {"gradients_every": args.every} if args.every else {}
    return run_script(args.script, args.script_args, args.out, options, live=args.live).status


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
    from .diagnosis import trial
    from .model_spec import load_model_spec

    for path in (args.json, args.markdown):
        _writable_file(path)
    target = load_model_spec(args.target)
    data = (target.inputs, target.targets)
    return _show(trial(target.model, data, target.loss_fn, target.optimizer, args.steps), args)


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

    report, path = report_run(args.run, args.out, args.title)
    print(f"{headline(report)}\nwritten: {path}")
    return 0 if report.healthy else 1


def report_run(
    run: str | Path, out: str | Path | None = None, title: str | None = None
) -> tuple[Report, Path]:
    """Load a recorded run, diagnose it and write its HTML report (what ``gradmedic report`` runs).

    Args:
        run: a JSON Lines file from ``History.save`` or ``gradmedic.watch(..., log_path=...)``.
        out: the HTML file to write (default: ``run`` with the suffix ``.html``).
        title: the page title (default: "gradmedic report: <file name>").

    Returns:
        The report and the path written.

    Raises:
        ConfigError: if ``run`` is missing or not a readable gradmedic history, or ``out``
            cannot be written; the message says which and what to do.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     report_run(Path(folder) / "missing.jsonl")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gradmedic.errors.ConfigError: ...missing.jsonl: no such file; give the JSON Lines file of a run...
    """
    from .diagnosis import diagnose
    from .html_report import save_html

    run = Path(run)
    history = _load_run(run)
    if len(history) == 0:
        raise ConfigError(
            f"{run} holds no recorded step (only its header): nothing to diagnose. Was the run stopped "
            "before its first flush? Record steps with gradmedic.watch(..., log_path=...) or History.save"
        )
    report = diagnose(history)
    target = Path(out) if out is not None else run.with_suffix(".html")
    try:
        save_html(target, report, history, title or f"gradmedic report: {run.name}")
    except OSError as error:
        raise ConfigError(f"cannot write the report to {target}: {error.strerror or error}") from None
    return report, target


def _load_run(run: Path) -> History:
    """``History.load`` with an error that says what the file should be, for any bad file."""
    from .history import History

    how = "give the JSON Lines file of a run (History.save or gradmedic.watch(..., log_path=...))"
    if not run.is_file():
        raise ConfigError(f"{run}: no such file; {how}")
    try:
        return History.load(run)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ConfigError(f"{run} is not a readable gradmedic history ({type(error).__name__}: "
                          f"{error}); {how}") from None  # fmt: skip


def run_treat(args: argparse.Namespace) -> int:
    """``gradmedic treat TARGET``: before/after reports, the changes, the treated weights."""
    import json

    import torch

    from .diagnosis import print_report
    from .model_spec import load_model_spec
    from .remedies import treat

    allow = [name.strip() for name in args.allow.split(",")] if args.allow is not None else None
    _creatable_folder(args.out)
    target = load_model_spec(args.target)
    treatment = treat(target.model, target.inputs, target.targets, target.loss_fn, allow=allow,
                      optimizer=target.optimizer, trial=args.trial)  # fmt: skip
    out = _writable_folder(args.out)
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
    from .diagnosis import checkup
    from .model_spec import load_model_spec

    for path in (args.json, args.markdown):
        _writable_file(path)
    target = load_model_spec(args.target)
    return _show(checkup(target.model, target.inputs, target.targets, target.loss_fn), args)


def _show(report: Report, args: argparse.Namespace) -> int:
    """Write ``report`` where ``--json``/``--markdown`` say, print it; exit 1 when not healthy."""
    from .diagnosis import print_report

    if args.json:
        report.to_json(args.json)
    if args.markdown:
        Path(args.markdown).write_text(report.to_markdown(), encoding="utf-8")
    print_report(report)
    return EXIT_HEALTHY if report.healthy else EXIT_NOT_HEALTHY


def _writable_file(path: str | None) -> None:
    """Refuse, before any work, an output file that cannot be written (ConfigError)."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{path} is a folder: name a file to write, e.g. {target / 'report.json'}")
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write {path}: the folder {target.parent} does not exist")
    if not _can_write(target if target.exists() else target.parent):
        raise ConfigError(f"cannot write {path}: permission denied")


def _creatable_folder(path: str) -> None:
    """Refuse, before any work, an output folder that could not be created or written into."""
    folder = Path(path).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"cannot create the folder {path}: {existing} is a file")
    if not _can_write(existing):
        raise ConfigError(f"cannot write into the folder {path}: permission denied on {existing}")


def _writable_folder(path: str) -> Path:
    """Create the output folder ``path`` (and its parents) now, or say why it cannot be."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the folder {path}: {error.strerror or error}") from None
    if not _can_write(folder):
        raise ConfigError(f"cannot write into the folder {path}: permission denied")
    return folder


def _can_write(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK)


COMMANDS = {
    "checkup": run_checkup,
    "trial": run_trial,
    "treat": run_treat,
    "report": run_report,
    "lab": run_lab_command,
    "run": run_script_command,
}


def run_command(args: argparse.Namespace) -> int:
    """Run the subcommand ``args.command`` and return its exit status."""
    if args.command == "demo":
        from .demo import run_demo

        run_demo(steps=args.steps, depth=args.depth, seed=args.seed)
        return EXIT_HEALTHY
    return int(COMMANDS[args.command](args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.version:
            print(f"gradmedic {__version__}")
            return EXIT_HEALTHY
        if args.command is None:
            parser.print_help()
            return EXIT_HEALTHY
        return run_command(args)
    except KeyboardInterrupt:
        print("gradmedic: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        return _exit_status(error)


def _exit_status(error: Exception) -> int:
    """Print ``error`` as the command line shows it and return the exit status it means.

    A user's mistake (a gradmedic error, a TARGET that cannot be imported, a file that cannot
    be read or written, an error raised by the user's own model or loss) is one line on stderr
    and status 2; anything else is a bug in gradmedic: the traceback, and status 3.
    """
    context = getattr(error, USER_CODE, None)
    if isinstance(error, (GradmedicError, UsageError, ImportError, OSError)) or context is not None:
        prefix = f"{context} raised {type(error).__name__}: " if context is not None else ""
        prefix = "" if isinstance(error, UsageError) else f"gradmedic: {prefix}"  # it names the command
        print(f"{prefix}{_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    print(
        "gradmedic: internal error: this is a bug in gradmedic; please report it with the traceback above",
        file=sys.stderr,
    )
    return EXIT_BUG


def _one_line(error: BaseException) -> str:
    """The error's message on one line (an OSError with its file name)."""
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
