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
from zoo.training import TRAINS, confirm, fit

import gradmedic
from gradmedic.diagnosis import Severity

LABELS = Path(__file__).resolve().parent / "zoo" / "labels.json"
CHECKUP_ROWS = 64


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
    setup.model = treatment.model
    if treatment.clip_norm is not None:
        setup.clip = treatment.clip_norm
    score = fit(setup, seed=0)
    return {
        "changes": [str(c) for c in treatment.changes],
        "learned": round(score, 4),
        "trains": score >= TRAINS,
    }


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


def row_line(case: Case, label: str, row: dict) -> str:
    check = row["checkup"]
    seen = "ERROR " + check["error"] if "error" in check else f"{'FLAG' if check['flagged'] else 'ok  '} " \
        f"layers={check['layers']:<3} {', '.join(check['kinds']) or '-'}"  # fmt: skip
    extra = ""
    for key in ("trial", "treat"):
        if key in row:
            value = row[key]
            extra += f" | {key}: " + (value.get("error") or (("FLAG" if value.get("flagged") else "ok") if key == "trial"
                                                           else f"learned {value['learned']:.2f}"))  # fmt: skip
    return f"{case.id:38s} {case.kind:12s} {case.family:11s} {label:11s} {seen}{extra}"


def summarise(rows: dict, labels: dict) -> dict:
    """Per-class recall of each verdict over confirmed failures; false alarms on healthy models that train."""
    summary: dict[str, Any] = {"recall": {}, "healthy": {}, "errors": 0}
    for kind in KINDS_ORDER:
        cases = [c for c in ALL if c.kind == kind and label_of(c, labels) == "sick"]
        entry: dict[str, Any] = {"cases": len(cases)}
        for key in ("checkup", "trial"):
            hits = [rows[c.id][key].get("flagged") for c in cases if key in rows.get(c.id, {})]
            if hits:
                entry[key] = f"{sum(bool(h) for h in hits)}/{len(hits)}"
        treats = [rows[c.id]["treat"].get("trains") for c in cases if "treat" in rows.get(c.id, {})]
        if treats:
            entry["treat_trains"] = f"{sum(bool(t) for t in treats)}/{len(treats)}"
        summary["recall"][kind] = entry
    healthy = [c for c in ALL if c.healthy and label_of(c, labels) == "trains" and c.id in rows]
    for key in ("checkup", "trial"):
        seen = [rows[c.id][key] for c in healthy if key in rows[c.id] and "error" not in rows[c.id][key]]
        if seen:
            summary["healthy"][key] = {
                "models": len(seen),
                "false_alarms (critical)": sum(v["worst"] == "critical" for v in seen),
                "warnings": sum(v["worst"] == "warning" for v in seen),
            }
    summary["errors"] = sum("error" in v for r in rows.values() for v in r.values() if isinstance(v, dict))
    return summary


def print_summary(summary: dict) -> None:
    print("\nper class (confirmed failures only):")
    for kind, entry in summary["recall"].items():
        parts = [f"{k} {v}" for k, v in entry.items() if k != "cases"]
        print(f"  {kind:12s} cases {entry['cases']:2d}  " + "  ".join(parts))
    for key, entry in summary["healthy"].items():
        print(f"healthy models ({key}): {entry}")
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
        print(f"{case.id:38s} {entry.get('confirmed')} {json.dumps({k: entry.get(k) for k in ('reported', 'fix')})[:200]}"
              f" {entry['seconds']}s", flush=True)  # fmt: skip


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
    start = time.perf_counter()
    for case in cases:
        label = label_of(case, labels)
        row = {"checkup": guarded(run_checkup, case)}
        if args.trial:
            row["trial"] = guarded(run_trial, case)
        if args.treat and label == "sick":
            row["treat"] = guarded(run_treat, case)
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
