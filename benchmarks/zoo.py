"""The failure zoo: gradmedic's verdicts on failures re-created from public reports, and on healthy models.

    python benchmarks/zoo.py                 # checkup of every case, per-class recall, false alarms
    python benchmarks/zoo.py --trial --treat # also gradmedic.trial, and whether treat makes a case train
    python benchmarks/zoo.py --confirm       # slow: train each reported model and its fix, write labels
    python benchmarks/zoo.py --json out.json --cases deep_sigmoid_20x100,hf_bert_tiny

A case's label comes from ``benchmarks/zoo/labels.json`` (written by ``--confirm``): a reported
failure counts towards recall only when its training confirmed it (the fix trained clearly better,
see ``zoo/training.py``); a healthy model counts only when it trained. The checkup "flags" a model
when its report is not healthy (a warning or a critical finding).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo import ALL, BY_ID, KINDS_ORDER
from zoo.core import Case, Setup, length, take
from zoo.relabelled import RELABELLED
from zoo.training import TRAINS, confirm, fit

import gradmedic
from gradmedic.diagnosis import Severity
from gradmedic.remedies.training import optimizer_for

LABELS = Path(__file__).resolve().parent / "zoo" / "labels.json"
CHECKUP_ROWS = 64
#: The findings that name each zoo class's failure: a flag for another reason is counted as a flag,
#: and separately as not naming the failure ("right kind"). Class ``other`` accepts any finding.
#: The trial's kinds (``gradmedic.diagnosis.trial_rules.TRIAL_KINDS``) sit beside the checkup's: a
#: divergence names an exploding run or a rate too high, ``dying_units`` dying units, and so on.
MATCHING = {
    "vanishing": {"vanishing_gradient", "vanishing_through_time", "precision_underflow", "stalled_layers",
                  "too_deep", "saturated_activations", "denormal_slowdown", "vanishing_developing"},
    "exploding": {"exploding_gradient", "exploding_through_time", "non_finite", "divergence",
                  "exploding_forward", "exploding_developing"},
    "dying": {"dead_units", "dying_units"},
    "saturation": {"saturated_activations", "vanishing_gradient", "saturation_growing"},
    "lr_optimizer": {"non_finite", "exploding_gradient", "loss_plateau", "stalled_layers", "divergence",
                     "loss_not_decreasing"},
}  # fmt: skip


#: The treatments measured: ``treat`` alone, and with ``--trial`` also ``treat(..., trial=True)``.
TREATMENTS = ("treat", "treat_trial")


class UsageError(Exception):
    """A mistake on the command line: one line on stderr, exit 2."""


def first_rows(setup: Setup, rows: int = CHECKUP_ROWS) -> tuple[Any, torch.Tensor]:
    index = torch.arange(min(rows, length(setup.x)))
    return take(setup.x, index), setup.y[index]


@contextlib.contextmanager
def precision(setup: Setup) -> Iterator[None]:
    """The case's autocast, around whatever gradmedic runs, as the user's training runs it."""
    with torch.autocast("cpu", dtype=setup.autocast) if setup.autocast else contextlib.nullcontext():
        yield


def verdict(report: gradmedic.Report) -> dict:
    worst = max((f.severity for f in report.findings), default=Severity.INFO)
    return {
        "flagged": not report.healthy,
        "worst": worst.label if report.findings else "none",
        "kinds": [f"{f.kind}:{f.severity.label}" for f in report.findings],
        "flagged_kinds": sorted({f.kind for f in report.findings if f.severity >= Severity.WARNING}),
        "layers": len(report.layers),
        "score": round(report.score, 3),
    }


def run_checkup(case: Case) -> dict:
    setup = case.build(0)
    x, y = first_rows(setup)
    with precision(setup):
        report = gradmedic.checkup(setup.model, x, y, setup.loss_fn)
    return verdict(report)


def run_trial(case: Case) -> dict:
    setup = case.build(0)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(20):
        rows = torch.randint(0, length(setup.x), (min(setup.batch, length(setup.x)),), generator=g)
        batches.append((take(setup.x, rows), setup.y[rows]))
    optimizer = setup.optimizer(setup.model.parameters(), setup.lr)
    with precision(setup):
        report = gradmedic.trial(setup.model, batches, loss_fn=setup.loss_fn, optimizer=optimizer)  # type: ignore[attr-defined]
    return verdict(report)


def run_treat(case: Case) -> dict:
    """Treat the reported model, then retrain the treated copy with the case's optimizer and rate."""
    setup = case.build(0)
    x, y = first_rows(setup, 256)
    with precision(setup):
        treatment = gradmedic.treat(setup.model, x, y, setup.loss_fn, suggest_lr=False)
    return retrained(setup, treatment)


def run_treat_with_trial(case: Case) -> dict:
    """Treat the reported model given the case's optimizer, proved by a second trial
    (``treat(..., optimizer=, trial=True)``), then retrain it with the settings the trial proved
    (the optimizer class and rate, clipping), or the case's own where it proved none."""
    setup = case.build(0)
    x, y = first_rows(setup, 256)
    user = setup.optimizer(setup.model.parameters(), setup.lr)
    with precision(setup):
        treatment = gradmedic.treat(setup.model, x, y, setup.loss_fn, optimizer=user, trial=True)
    if treatment.settings:
        settings = dict(treatment.settings)
        setup.optimizer = lambda params, lr: optimizer_for(setup.model, settings, user)
        setup.clip = settings.get("max_norm", setup.clip)
    return {**retrained(setup, treatment), "settings": {k: str(v) for k, v in treatment.settings.items()}}


def retrained(setup: Setup, treatment: gradmedic.Treatment) -> dict:
    """Train ``treatment.model`` in ``setup`` (its clipping too): does the treated case train now?"""
    setup.model = treatment.model
    if treatment.clip_norm is not None:
        setup.clip = treatment.clip_norm
    score = fit(setup, seed=0)
    return {
        "changes": [str(c) for c in treatment.changes],
        "learned": round(score, 4),
        "trains": score >= TRAINS,
    }


def torchmortem_available() -> bool:
    """Whether the optional ``torchmortem`` package can be imported."""
    try:
        importlib.import_module("torchmortem")
    except ImportError:
        return False
    return True


def run_torchmortem(case: Case, steps: int = 30) -> dict:
    """torchmortem's verdict: its ``Autopsy`` watching the case's first ``steps`` training steps."""
    module = importlib.import_module("torchmortem")
    setup = case.build(0)
    setup.steps = steps
    optimizer = setup.optimizer(setup.model.parameters(), setup.lr)
    setup.optimizer = lambda params, lr: optimizer
    autopsy = module.Autopsy(setup.model, optimizer=optimizer)
    autopsy.attach()
    try:
        fit(setup, seed=0, on_step=lambda loss: autopsy.step(loss=float(loss.detach())))
    finally:
        autopsy.detach()
    findings = autopsy.get_report().findings
    serious = [f for f in findings if f.severity.name in ("WARNING", "CRITICAL")]
    return {
        "flagged": bool(serious),
        "kinds": sorted({f"{f.category}:{f.severity.name.lower()}" for f in findings}),
        "layers": len({layer for f in findings for layer in f.affected_layers}),
        "worst": "critical" if any(f.severity.name == "CRITICAL" for f in findings) else
        ("warning" if serious else "none"),
    }  # fmt: skip


def guarded(fn: Any, case: Case) -> dict:
    """Run one measurement; a failure is recorded in its row, never fatal (a sweep never dies of one)."""
    try:
        return fn(case)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"}


def load_labels() -> dict:
    return json.loads(LABELS.read_text(encoding="utf-8")) if LABELS.exists() else {}


def label_of(case: Case, labels: dict) -> str:
    """``sick`` (confirmed), ``relabelled`` (training contradicts the report), ``trains``/``fails``
    for healthy models, or ``unconfirmed`` without a label."""
    entry = labels.get(case.id)
    if entry is None:
        return "unconfirmed"
    if case.healthy:
        return "trains" if entry["confirmed"] else "fails"
    return "sick" if entry["confirmed"] else "relabelled"


def describe(key: str, value: dict) -> str:
    """One measurement in a few words: the error, FLAG/ok with the findings, or the treated score."""
    if "error" in value:
        return f"ERROR {value['error']}"
    if key in TREATMENTS:
        return f"learned {value['learned']:.2f}" + (
            f" with {value['settings']}" if value.get("settings") else ""
        )
    findings = ", ".join(value["kinds"]) or "-"
    return f"{'FLAG' if value['flagged'] else 'ok  '} layers={value['layers']:<3} {findings}"


def row_line(case: Case, label: str, row: dict) -> str:
    """The printed line of one case: id, class, family, label, then each measurement."""
    measured = " | ".join(f"{key}: {describe(key, value)}" for key, value in row.items())
    why = (
        f"\n{'':38s} relabelled: {RELABELLED[case.id]}"
        if label == "relabelled" and case.id in RELABELLED
        else ""
    )
    return f"{case.id:38s} {case.kind:12s} {case.family:11s} {label:11s} {measured}{why}"


def names_it(kind: str, value: dict) -> bool:
    """Whether a flagged verdict names the case's class of failure (see ``MATCHING``)."""
    if not value.get("flagged"):
        return False
    return kind == "other" or bool(MATCHING[kind] & set(value.get("flagged_kinds", [])))


def summarise(rows: dict, labels: dict) -> dict:
    """Per-class recall of each verdict over confirmed failures; false alarms on healthy models that train."""
    summary: dict[str, Any] = {"recall": {}, "healthy": {}, "errors": 0}
    for kind in KINDS_ORDER:
        cases = [c for c in ALL if c.kind == kind and label_of(c, labels) == "sick"]
        entry: dict[str, Any] = {"cases": len(cases)}
        for key in ("checkup", "trial", "torchmortem"):
            seen = [rows[c.id][key] for c in cases if key in rows.get(c.id, {})]
            if seen:
                flagged = sum(bool(v.get("flagged")) for v in seen)
                right = (
                    "" if key == "torchmortem" else f" (right kind {sum(names_it(kind, v) for v in seen)})"
                )
                entry[key] = f"{flagged}/{len(seen)}{right}"
        for key in TREATMENTS:
            treats = [rows[c.id][key].get("trains") for c in cases if key in rows.get(c.id, {})]
            if treats:
                entry[f"{key}_trains"] = f"{sum(bool(t) for t in treats)}/{len(treats)}"
        summary["recall"][kind] = entry
    healthy = [c for c in ALL if c.healthy and label_of(c, labels) == "trains" and c.id in rows]
    for key in ("checkup", "trial", "torchmortem"):
        seen = [rows[c.id][key] for c in healthy if key in rows[c.id] and "error" not in rows[c.id][key]]
        if seen:
            summary["healthy"][key] = {
                "models": len(seen),
                "false_alarms (critical)": sum(v["worst"] == "critical" for v in seen),
                "warnings": sum(v["worst"] == "warning" for v in seen),
            }
    relabelled = [c for c in ALL if label_of(c, labels) == "relabelled" and c.id in rows]
    flagged = [c.id for c in relabelled if rows[c.id]["checkup"].get("flagged")]
    summary["relabelled"] = {"cases": len(relabelled), "checkup_flagged": flagged}
    summary["errors"] = sum("error" in v for r in rows.values() for v in r.values() if isinstance(v, dict))
    return summary


def print_summary(summary: dict) -> None:
    print("\nper class (confirmed failures only):")
    for kind, entry in summary["recall"].items():
        parts = [f"{k} {v}" for k, v in entry.items() if k != "cases"]
        print(f"  {kind:12s} cases {entry['cases']:2d}  " + "  ".join(parts))
    for key, entry in summary["healthy"].items():
        print(f"healthy models ({key}): {entry}")
    relabelled = summary["relabelled"]
    print(
        f"relabelled reports: {relabelled['cases']}, flagged by the checkup: {relabelled['checkup_flagged']}"
    )
    print(f"errors: {summary['errors']}")


def selected(spec: str) -> list[Case]:
    if not spec:
        return list(ALL)
    unknown = [i for i in spec.split(",") if i not in BY_ID]
    if unknown:
        raise UsageError(f"unknown case {unknown[0]!r}; see the ids in benchmarks/zoo/labels.json")
    return [BY_ID[i] for i in spec.split(",")]


def run_confirm(cases: list[Case]) -> None:
    """Train every case (and fix); write each label as soon as it is known, so a rerun resumes."""
    labels = load_labels()
    for case in cases:
        if case.id in labels:
            continue
        start = time.perf_counter()
        entry = guarded(confirm, case)
        entry["seconds"] = round(time.perf_counter() - start, 1)
        labels[case.id] = entry
        LABELS.write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        scores = {k: (entry.get(k) or {}).get("best") for k in ("reported", "fix")}
        print(
            f"{case.id:38s} confirmed={entry.get('confirmed')} best {scores} {entry['seconds']}s", flush=True
        )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trial", action="store_true", help="also run gradmedic.trial on each case")
    parser.add_argument(
        "--treat", action="store_true", help="also treat each confirmed failure and retrain it"
    )
    parser.add_argument(
        "--confirm", action="store_true", help="train reported models and fixes; write labels"
    )
    parser.add_argument("--cases", default="", help="comma-separated case ids (default: all)")
    parser.add_argument("--json", type=Path, help="write the rows and the summary here")
    parser.add_argument("--no-torchmortem", action="store_true", help="skip torchmortem even if installed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        cases = selected(args.cases)
        if args.trial and not hasattr(gradmedic, "trial"):
            raise UsageError("gradmedic.trial is not available in this version; run without --trial")
    except UsageError as error:
        print(f"zoo.py: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.confirm:
        run_confirm(cases)
        return 0
    labels, rows = load_labels(), {}
    mortem = torchmortem_available() and not args.no_torchmortem
    if not mortem:
        print("torchmortem: not installed (pip install torchmortem), its column is left out")
    start = time.perf_counter()
    for case in cases:
        label = label_of(case, labels)
        row = {"checkup": guarded(run_checkup, case)}
        if args.trial:
            row["trial"] = guarded(run_trial, case)
        if mortem:
            row["torchmortem"] = guarded(run_torchmortem, case)
        if args.treat and label == "sick":
            row["treat"] = guarded(run_treat, case)
            if args.trial:
                row["treat_trial"] = guarded(run_treat_with_trial, case)
        rows[case.id] = row
        print(row_line(case, label, row), flush=True)
    summary = summarise(rows, labels)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    print_summary(summary)
    print(f"time: {summary['seconds']} s")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
