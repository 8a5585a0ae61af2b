"""Training settings from a trial: the learning rate, optimizer and clipping to train with, and
the proof: a second trial of the treated model with those settings.

A trial names a learning rate or clipping bound only when one of its counterfactual mini-trials
fixed the run (``lr_that_worked``, ``clip_that_worked`` in a finding's numbers); without one, and
when the trial blames the learning rate (a divergence, units dying, a loss that does not move),
the rate comes from :func:`gradmedic.find_lr` on the treated model. Every candidate (the treated
architecture with the new settings, the settings alone, the architecture alone) is tried again;
the best one is kept only if its trial is better than the first one (healthy first, then score).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from gradmedic.diagnosis.findings import Finding, Report, Severity
    >>> found = Finding("divergence", Severity.CRITICAL, [], "", "", numbers={"lr_that_worked": 0.05})
    >>> settings_from(Report([found], 0.0, "trial"), torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.5))
    {'optimizer': 'SGD', 'lr': 0.05}
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..diagnosis.findings import Kind, Report
from ..diagnosis.trials import run_trial
from ..running import LossFn

#: Trial findings whose cause may be the learning rate or the optimizer.
TRAINING_KINDS = (Kind.DIVERGENCE, Kind.DYING_UNITS, Kind.LOSS_NOT_DECREASING, Kind.SATURATION_GROWING)


def settings_from(report: Report, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """The optimizer, learning rate and clipping bound the trial's counterfactuals found to work."""
    settings: dict[str, Any] = {}
    for finding in report.findings:
        if finding.kind not in TRAINING_KINDS:
            continue
        if "lr_that_worked" in finding.numbers and "lr" not in settings:
            settings["optimizer"] = type(optimizer).__name__ if optimizer is not None else "Adam"
            settings["lr"] = finding.numbers["lr_that_worked"]
        if "clip_that_worked" in finding.numbers and "lr" not in settings:
            settings["max_norm"] = finding.numbers["clip_that_worked"]
    return settings


def needs_training_change(report: Report) -> bool:
    """Whether the trial found a problem a learning rate, optimizer or clipping could be the cause of."""
    return any(f.kind in TRAINING_KINDS and f.severity >= 1 for f in report.findings)


def optimizer_for(
    model: nn.Module, settings: dict[str, Any], user: torch.optim.Optimizer | None
) -> torch.optim.Optimizer:
    """An optimizer for ``model`` (possibly a treated architecture): the user's class and
    first-group hyperparameters, or ``settings['optimizer']``, at ``settings['lr']``."""
    name = settings.get("optimizer", type(user).__name__ if user is not None else "Adam")
    kind: Any = getattr(torch.optim, name)
    options: dict[str, Any] = {}
    if user is not None and type(user).__name__ == name:
        options = {k: v for k, v in user.param_groups[0].items() if k not in ("params", "initial_lr")}
    options["lr"] = settings.get("lr", options.get("lr", 1e-3))
    return kind([p for p in model.parameters() if p.requires_grad], **options)


@dataclass
class Candidate:
    """A model and the settings it is trained with, and its trial."""

    label: str
    model: nn.Module
    settings: dict[str, Any]
    report: Report


def prove(
    candidates: list[tuple[str, nn.Module, dict[str, Any]]],
    data: Any,
    loss_fn: LossFn | None,
    user: torch.optim.Optimizer | None,
    steps: int | None,
) -> list[Candidate]:
    """A trial of each candidate, with its settings."""
    proved = []
    for label, model, settings in candidates:
        optimizer = optimizer_for(model, settings, user) if settings or user is not None else None
        report = run_trial(model, data, loss_fn, optimizer, steps, max_norm=settings.get("max_norm"))
        proved.append(Candidate(label, model, settings, report))
    return proved


def better(after: Report, before: Report) -> bool:
    """Healthy beats not healthy; then the higher score (to two decimals) wins."""

    def key(report: Report) -> tuple[bool, float]:
        return report.healthy, round(report.score, 2)

    return key(after) > key(before)


def loss_callable(loss_fn: LossFn | None, targets: Tensor | None) -> Callable[[Any, Tensor], Tensor]:
    """A ``loss(output, targets)`` for :func:`gradmedic.find_lr` from the trial's loss choice."""
    from ..diagnosis.trials import trial_loss

    def loss(output: Any, batch_targets: Tensor) -> Tensor:
        return trial_loss(output, batch_targets if targets is not None else None, loss_fn, [])

    return loss


def copy_of(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


#: torch.optim class names of the optimizers :func:`gradmedic.remedies.lr.suggest_optimizer` names.
OPTIMIZER_CLASSES = {"adam": "Adam", "rmsprop": "RMSprop", "adagrad": "Adagrad", "sgd": "SGD"}


def prove_with_trial(treatment: Any, original: nn.Module, inputs: Any, targets: Tensor | None,
                     loss_fn: LossFn | None, optimizer: torch.optim.Optimizer | None,
                     steps: int | None) -> None:  # fmt: skip
    """Trial the model as given, choose training settings, trial each candidate, keep the best
    if it beats the first trial; else undo everything (``treatment`` is updated in place)."""
    data = (inputs, targets)
    before = run_trial(original, data, loss_fn, optimizer, steps)
    settings = settings_from(before, optimizer)
    if not settings and needs_training_change(before) and treatment.lr:
        settings = {"optimizer": OPTIMIZER_CLASSES.get(treatment.optimizer[0], "Adam"), "lr": treatment.lr}
    changed = bool(treatment.applied)
    candidates = (
        [("the treated model with the new settings", treatment.model, settings)]
        if changed and settings
        else []
    )
    candidates += [("the new settings alone", copy_of(original), settings)] if settings else []
    candidates += [("the treated model", treatment.model, {})] if changed else []
    proved = prove(candidates, data, loss_fn, optimizer, steps)
    best = max(proved, key=lambda c: (c.report.healthy, round(c.report.score, 2)), default=None)
    treatment.trial_before = before
    if best is None or not better(best.report, before):
        treatment.rounds.append(
            "trial: no candidate made the trial better; the model and settings are left as given"
        )
        _undo_changes(treatment, "the trial was not better with it")
        treatment.model, treatment.trial_after, treatment.settings = copy_of(original), before, {}
        return
    treatment.rounds.append(f"trial: kept {best.label} (score {before.score:.2f} -> {best.report.score:.2f})")
    if best.model is not treatment.model:
        _undo_changes(treatment, "the trial was better without it")
    treatment.model, treatment.trial_after, treatment.settings = best.model, best.report, best.settings
    if "optimizer" in best.settings:
        treatment.optimizer = (best.settings["optimizer"], f"proved by a second trial: {best.label}")
    treatment.lr = best.settings.get("lr", treatment.lr)
    treatment.clip_norm = best.settings.get("max_norm", treatment.clip_norm)


def _undo_changes(treatment: Any, why: str) -> None:
    from .changes import Change

    treatment.changes = [
        c if c.skipped else Change(c.family, c.layer, f"undone ({why}): {c.action}", skipped=True)
        for c in treatment.changes
    ]
