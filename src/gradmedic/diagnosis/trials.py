"""The trial: a short run of the user's own training on a copy of the model, under the monitor.

The checkup sees the model at initialization; the trial sees it in the training the user will
run: their data, loss, optimizer (same class, same per-group hyperparameters and state) and LR
scheduler, on a deep copy. The monitor records every step; :mod:`.trial_rules` reads the curves.
When a rule needs a cause (the loss diverged, units died, the loss did not move), mini-trials on
further copies change one thing (the learning rate, gradient clipping) and say what fixes it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import gradmedic
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    >>> x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    >>> report = gradmedic.trial(model, (x, y), steps=30)
    >>> report.source, report.healthy, len(report.curves["loss"].steps)
    ('trial', True, 30)
    >>> sgd = torch.optim.SGD(model.parameters(), lr=50.0)
    >>> report = gradmedic.trial(model, (x, y), optimizer=sgd, steps=30)
    >>> report.findings[0].kind
    'divergence'
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError, GradmedicError, ModelError, UnsupportedError
from ..history import History
from ..layers import require_module
from ..monitor import Monitor
from ..running import batch_size, call_model, compute_loss
from .checkups import checkup
from .evidence import evidence_from_history, module_activation
from .findings import Curve, Report, Severity, agreeing_score
from .trial_rules import (
    Counterfactual,
    TrialEvidence,
    divergence_step,
    exploded,
    loss_decreased,
    newly_dead,
    run_trial_rules,
    trial_score,
)

#: Steps of a default trial, and the fewest it cuts to when a step is slow.
DEFAULT_STEPS, MIN_STEPS = 100, 20
#: Wall-clock budget of a default trial's run (not its mini-trials), in seconds.
TIME_BUDGET_S = 30.0
#: The seed of every run of a trial (the same dropout masks and shuffles for each counterfactual).
SEED = 0
#: The monitor's schedule in a trial: signal and loss every step; activations and updates every
#: few steps (trends over 100 steps need no more, and each costs a pass over every output).
MONITOR_OPTIONS: dict[str, Any] = {
    "gradients_every": 1, "activations_every": 4, "updates_every": 4, "through_time_every": None,
    "flush_every": 32,
}  # fmt: skip

LossFn = Callable[..., Tensor]


@dataclass
class _Batch:
    inputs: Any
    targets: Tensor | None


@dataclass
class _Setup:
    """What every run of a trial starts from: the model, data, loss and optimizer as given."""

    model: nn.Module
    data: Any
    loss_fn: LossFn | None
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    notes: list[str] = field(default_factory=list)
    max_norm: float | None = None


@dataclass
class _Run:
    loss: list[float]
    history: History | None
    model: nn.Module
    seconds: float
    stopped: str = ""


def trial(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    steps: int | None = None,
    *,
    scheduler: Any = None,
) -> Report:
    """Diagnose ``model`` in the training it will get: the checkup, then a short run on a copy.

    Args:
        model: the network, as you would start training it; it is never touched (the trial
            trains a deep copy; parameters, buffers, modes and the RNG state are left as found).
        data: an ``(inputs, targets)`` pair (the same batch every step), a single batch
            (a tensor or a dict of keyword inputs), or an iterable of batches such as a
            ``DataLoader`` (cycled when exhausted; batches ``(x, y)``, ``(x,)``, tensors or dicts).
        loss_fn: ``loss_fn(output, targets)`` (or ``loss_fn(output)``); by default cross-entropy
            for integer targets, MSE for float ones, a model output's own ``loss`` (Hugging Face).
        optimizer: the optimizer you will train with, built on ``model.parameters()``: the trial
            builds the same class with the same per-group settings and state on the copy.
            None: ``Adam(lr=1e-3)``, said in the report's notes.
        steps: how many steps; default :data:`DEFAULT_STEPS`, fewer when a step is slow. The
            trial stops early once the loss is non-finite or has exploded.
        scheduler: your LR scheduler on ``optimizer`` (copied onto the copy's optimizer).

    Returns:
        A :class:`Report` (source ``"trial"``): the checkup's findings on the first batch, then
        the trial's (see :mod:`gradmedic.diagnosis.trial_rules`), its score, and its curves.

    Raises:
        ConfigError: no data, data that yields nothing, an optimizer that does not own the
            model's parameters, a scheduler without its optimizer, ``steps <= 0``.
        ModelError: the forward pass or the loss raised during the trial (with the step).
    """
    return run_trial(model, data, loss_fn, optimizer, steps, scheduler=scheduler)


def run_trial(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    steps: int | None = None,
    *,
    scheduler: Any = None,
    max_norm: float | None = None,
) -> Report:
    """:func:`trial`, with gradient clipping at ``max_norm`` in every run (``treat`` proves a
    clipping remedy with it)."""
    require_module(model)
    setup = _Setup(model, data, loss_fn, optimizer, scheduler, max_norm=max_norm)
    _validate(setup, steps)
    if not _is_single(data) and isinstance(data, Iterator):  # a generator cannot start over: keep its batches
        setup.data = list(itertools.islice(data, steps or DEFAULT_STEPS))
        setup.notes.append(
            f"data: a one-shot iterator; its first {len(setup.data)} batches were kept and cycled"
        )
    with _rng_kept():
        first = _first_batch(setup.data)
        init = _checkup(setup, first)
        planned = steps if steps is not None else DEFAULT_STEPS
        run = _run(setup, planned, monitored=True, adapt=steps is None)
        assert run.history is not None
        evidence = _evidence(setup, run, first)
        evidence.counterfactuals = _counterfactuals(setup, evidence, len(run.loss))
    return _report(setup, init, run, evidence)


# -- checks --------------------------------------------------------------------------------


def _validate(setup: _Setup, steps: int | None) -> None:
    if setup.data is None:
        raise ConfigError(
            "trial needs data: pass (inputs, targets), a batch, or an iterable such as a DataLoader"
        )
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
        raise ConfigError(f"steps={steps!r}: give a positive number of steps, or None for the default")
    if setup.scheduler is not None and setup.optimizer is None:
        raise ConfigError(
            "a scheduler was given without its optimizer: pass optimizer=... (the one the scheduler drives)"
        )
    if setup.optimizer is not None:
        _check_owner(setup.model, setup.optimizer)
    if setup.scheduler is not None and getattr(setup.scheduler, "optimizer", None) is not setup.optimizer:
        raise ConfigError(
            f"the {type(setup.scheduler).__name__} given does not drive the optimizer given: build it "
            "on that optimizer (scheduler = ...(optimizer, ...))"
        )


def _check_owner(model: nn.Module, optimizer: object) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    mine = {id(p) for p in model.parameters()}
    theirs = [p for group in optimizer.param_groups for p in group["params"]]
    foreign = sum(1 for p in theirs if id(p) not in mine)
    if not theirs or foreign:
        raise ConfigError(
            f"the {type(optimizer).__name__} given owns {foreign} of its {len(theirs)} parameters outside "
            f"{type(model).__name__}: build it from model.parameters() of the model you pass"
        )


# -- data ----------------------------------------------------------------------------------


def _as_batch(item: Any) -> _Batch:
    """One batch as (inputs, targets): ``(x, y)``, ``(x,)``, a tensor or a dict of inputs."""
    if isinstance(item, (tuple, list)):
        if len(item) == 2 and (item[1] is None or isinstance(item[1], Tensor)):
            return _Batch(item[0], item[1])
        if len(item) == 1:
            return _Batch(item[0], None)
        raise ConfigError(
            f"a batch of {len(item)} items: give batches as (inputs, targets), (inputs,), a tensor or a dict"
        )
    if isinstance(item, (Tensor, dict)):
        return _Batch(item, None)
    raise ConfigError(f"a batch is a {type(item).__name__}: give (inputs, targets), a tensor or a dict")


def _is_single(data: Any) -> bool:
    """Whether ``data`` is one batch (used every step) rather than an iterable of batches."""
    if isinstance(data, (Tensor, dict)):
        return True
    return isinstance(data, tuple) and len(data) == 2 and (data[1] is None or isinstance(data[1], Tensor))


def _batches(data: Any) -> Iterator[_Batch]:
    """Batches for every step: one batch repeated, or the iterable cycled (a one-shot iterator's
    batches are kept and replayed)."""
    if _is_single(data):
        batch = _as_batch(data)
        return itertools.repeat(batch)
    return (_as_batch(item) for item in itertools.chain.from_iterable(itertools.repeat(data)))


def _first_batch(data: Any) -> _Batch:
    if _is_single(data):
        return _as_batch(data)
    if not isinstance(data, Iterable):
        raise ConfigError(
            f"data is a {type(data).__name__}: give (inputs, targets) or an iterable of batches"
        )
    for item in data:
        return _as_batch(item)
    raise ConfigError("the data iterable yielded no batch: pass a non-empty DataLoader or list of batches")


# -- one run -------------------------------------------------------------------------------


def _copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as error:
        raise UnsupportedError(
            f"the trial trains a copy of the model, and copy.deepcopy({type(model).__name__}) raised "
            f"{type(error).__name__}: {error}. Make the model deep-copyable, or use gradmedic.checkup"
        ) from error


def build_optimizer(setup: _Setup, model: nn.Module, lr_factor: float = 1.0) -> torch.optim.Optimizer:
    """The user's optimizer class with the same groups, settings and state, on ``model`` (a copy)."""
    user = setup.optimizer
    if user is None:
        new: torch.optim.Optimizer = torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=1e-3
        )
    else:
        index = {id(p): i for i, p in enumerate(setup.model.parameters())}
        params = list(model.parameters())
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [params[index[id(p)]] for p in g["params"]],
            }
            for g in user.param_groups
        ]
        kind: Any = type(user)
        try:
            new = kind(groups, **user.defaults)
        except TypeError:  # a constructor that does not take every default by name
            new = kind(groups)
        new.load_state_dict(copy.deepcopy(user.state_dict()))
    if lr_factor != 1.0:
        for group in new.param_groups:
            group["lr"] = scaled_rate(group["lr"], lr_factor)
    return new


def scaled_rate(lr: float, factor: float) -> float:
    """``lr * factor`` without the binary rounding noise a user would then read and copy
    (0.1 x 0.1 is 0.010000000000000002 in floating point: 0.01 here).

    Example:
        >>> scaled_rate(0.1, 0.1), scaled_rate(3e-4, 10)
        (0.01, 0.003)
    """
    return float(f"{lr * factor:.12g}")


def _build_scheduler(setup: _Setup, optimizer: torch.optim.Optimizer) -> Any:
    if setup.scheduler is None:
        return None
    return copy.deepcopy(setup.scheduler, memo={id(setup.optimizer): optimizer})


def trial_loss(output: Any, targets: Tensor | None, loss_fn: LossFn | None, notes: list[str]) -> Tensor:
    """The loss of one step: the user's, a model output's own ``loss``, or the checkup's default."""
    said: list[str] = []
    own = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    if loss_fn is None and targets is None and isinstance(own, Tensor) and own.numel() == 1:
        loss, said = own, ["loss: the model's own output.loss"]
    else:
        loss = compute_loss(output, targets, loss_fn, said)
    notes.extend(note for note in said if note not in notes)
    return loss


def _step(model: nn.Module, batch: _Batch, setup: _Setup, step: int) -> Tensor:
    try:
        output = call_model(model, batch.inputs)
        return trial_loss(output, batch.targets, setup.loss_fn, setup.notes)
    except GradmedicError as error:
        raise type(error)(f"trial step {step}: {error}") from error.__cause__ or error
    except Exception as error:
        raise ModelError(
            f"trial step {step}: the loss raised {type(error).__name__}: {error} (the model was not touched)"
        ) from error


def _run(setup: _Setup, steps: int, monitored: bool, adapt: bool = False, lr_factor: float = 1.0,
         max_norm: float | None = None) -> _Run:  # fmt: skip
    """Train a fresh copy for ``steps`` steps (fewer when ``adapt`` and a step is slow)."""
    torch.manual_seed(SEED)
    model = _copy(setup.model)
    model.train()
    optimizer = build_optimizer(setup, model, lr_factor)
    scheduler = _build_scheduler(setup, optimizer)
    monitor = Monitor(model, optimizer, **MONITOR_OPTIONS) if monitored else None
    losses: list[float] = []
    batches = _batches(setup.data)
    start, stopped = time.perf_counter(), ""
    try:
        if monitor is not None:
            monitor.attach()
        step = 0
        while step < steps:
            loss = _train_step(model, optimizer, scheduler, next(batches), setup, step, max_norm, monitor)
            losses.append(loss)
            step += 1
            if exploded(np.array(losses)):
                why = "is not finite" if not math.isfinite(loss) else "exploded"
                stopped = f"stopped at step {step - 1}: the loss {why}"
                break
            if step == 1:
                warm = time.perf_counter()  # the first step pays for allocations and lazy setup
            if adapt and step == 4:
                steps = _adapted(steps, (time.perf_counter() - warm) / 3, setup.notes)
    finally:
        if monitor is not None:
            monitor.detach()
    history = monitor.history if monitor is not None else None
    return _Run(losses, history, model, time.perf_counter() - start, stopped)


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, batch: _Batch,
                setup: _Setup, step: int, max_norm: float | None,
                monitor: Monitor | None) -> float:  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    loss = _step(model, batch, setup, step)
    loss.backward()
    if monitor is not None:
        monitor.step(loss)
    max_norm = max_norm if max_norm is not None else setup.max_norm
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    if scheduler is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the copy's optimizer.step is not wrapped
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(loss.detach())
            else:
                scheduler.step()
    return float(loss.detach())


def _adapted(steps: int, seconds: float, notes: list[str]) -> int:
    """Fewer steps (not below MIN_STEPS) when ``steps`` would take more than TIME_BUDGET_S."""
    fit = int(TIME_BUDGET_S / max(seconds, 1e-9))
    if fit >= steps:
        return steps
    cut = max(MIN_STEPS, fit)
    notes.append(
        f"steps: {cut} instead of {steps}: a step takes {seconds:.2f} s (budget {TIME_BUDGET_S:g} s)"
    )
    return cut


# -- evidence, counterfactuals, report ----------------------------------------------------


def _checkup(setup: _Setup, batch: _Batch) -> Report:
    def loss(output: Any, targets: Tensor | None = None) -> Tensor:
        return trial_loss(output, targets, setup.loss_fn, [])

    try:
        return checkup(_copy(setup.model), batch.inputs, batch.targets, loss)
    except GradmedicError as error:
        raise type(error)(f"trial step 0 (the checkup): {error}") from error.__cause__ or error


def _describe(optimizer: torch.optim.Optimizer | None) -> tuple[str, float]:
    """The optimizer in words (its first group's main settings) and its first group's rate."""
    if optimizer is None:
        return "Adam(lr=0.001)", 1e-3
    group = optimizer.param_groups[0]
    keys = [k for k in ("lr", "momentum", "weight_decay", "alpha", "betas") if group.get(k)]
    values = [f"{k}={group[k]:.3g}" if isinstance(group[k], float) else f"{k}={group[k]}" for k in keys]
    return f"{type(optimizer).__name__}({', '.join(values)})", float(group["lr"])


def _evidence(setup: _Setup, run: _Run, first: _Batch) -> TrialEvidence:
    history = run.history
    assert history is not None
    base = evidence_from_history(history, run.model)
    _drop_unowned(base, setup, run.model)
    described, lr = _describe(setup.optimizer)
    base.batch_size = batch_size(first.inputs)
    return TrialEvidence(
        curves=curves(history),
        activations={layer.name: layer.activation for layer in base.layers if layer.activation},
        non_finite=list(history.non_finite),
        base=base,
        optimizer=described,
        lr=lr,
        batch_size=base.batch_size,
    )


def _drop_unowned(evidence: Any, setup: _Setup, model: nn.Module) -> None:
    """Layers whose parameters the optimizer does not update cannot be 'stalled': forget their ratio."""
    if setup.optimizer is None:
        return
    index = {id(p): name for name, p in setup.model.named_parameters()}
    owned = {index[id(p)] for g in setup.optimizer.param_groups for p in g["params"]}
    modules = dict(model.named_modules())
    for layer in evidence.layers:
        module = modules.get(layer.name)
        names = (
            [f"{layer.name}.{n}" if layer.name else n for n, _ in module.named_parameters(recurse=False)]
            if module
            else []
        )
        if names and not all(n in owned for n in names):
            layer.update_ratio = math.nan


def curves(history: History) -> dict[str, Curve]:
    """The trial's per-step series, one column per parametrised layer (forward order)."""
    found: dict[str, Curve] = {}
    if "loss" in history.metrics:
        steps, rows = history.array("loss")
        found["loss"] = Curve([int(s) for s in steps], ["loss"], rows[:, :1])
    params = [i for i in history.forward_order() if history.layers[i].kind == "param"]
    names = [history.layers[i].name for i in params]
    following = _following_columns(history)
    for key, metric, columns in (
        ("signal_rms", "signal_rms", params),
        ("pre_mean", "act_mean", params),
        ("pre_std", "act_std", params),
        ("update_ratio", "update_ratio", params),
        ("dead", "act_dead", [following.get(i, -1) for i in params]),
        ("saturated", "act_saturated", [following.get(i, -1) for i in params]),
    ):
        if metric not in history.metrics:
            continue
        steps, rows = history.array(metric)
        padded = np.concatenate([rows, np.full((len(rows), 1), np.nan)], axis=1)  # column -1: no activation
        found[key] = Curve([int(s) for s in steps], names, padded[:, columns])
    return found


def _following_columns(history: History) -> dict[int, int]:
    """The activation module's column after each parametrised layer's column, in forward order."""
    after: dict[int, int] = {}
    owner = None
    for column in history.forward_order():
        layer = history.layers[column]
        if layer.kind == "param":
            owner = column
        elif owner is not None and module_activation(layer.type) is not None:
            after[owner] = column
            owner = None
    return after


def _counterfactuals(setup: _Setup, evidence: TrialEvidence, ran: int) -> list[Counterfactual]:
    """Mini-trials on further copies, only where a finding needs a cause."""
    loss = evidence.loss
    step = divergence_step(loss)
    if step is not None:
        if step == 0 and not math.isfinite(float(loss[0])):
            return []  # the forward pass itself overflows: no update was made
        length = min(max(3 * (step + 1), MIN_STEPS), max(ran, MIN_STEPS))
        found = []
        for factor in (0.1, 0.01):
            found.append(_lr_trial(setup, evidence, factor, length))
            if found[-1].fixed:
                break
        norm = _init_grad_norm(evidence)
        if math.isfinite(norm) and norm > 0:
            run = _run(setup, length, monitored=False, max_norm=norm)
            found.append(
                Counterfactual("clip", f"clipping at norm {norm:.3g}", {"max_norm": norm}, np.array(run.loss))
            )
        return found
    dying = {n: v for n, v in newly_dead(evidence).items() if v[1] - v[0] >= 0.25}
    if dying:
        return [_lr_trial(setup, evidence, 0.1, ran, monitored=True)]
    if len(loss) >= MIN_STEPS and not loss_decreased(loss):
        found = [_lr_trial(setup, evidence, 10.0, ran)]
        if not found[0].fixed:
            found.append(_lr_trial(setup, evidence, 100.0, ran))
        return found
    return []


def _lr_trial(setup: _Setup, evidence: TrialEvidence, factor: float, steps: int,
              monitored: bool = False) -> Counterfactual:  # fmt: skip
    run = _run(setup, steps, monitored=monitored, lr_factor=factor)
    rate = scaled_rate(evidence.lr, factor)
    found = Counterfactual("lr", f"learning rate {rate:.3g} (x{factor:g})", {"lr": rate, "factor": factor},
                           np.array(run.loss))  # fmt: skip
    if run.history is not None:
        dead = newly_dead(TrialEvidence(curves(run.history)))
        found.newly_dead = max([late - early for early, late, _ in dead.values()], default=0.0)
    return found


def _init_grad_norm(evidence: TrialEvidence) -> float:
    """The total gradient norm at initialization (step 0): clipping there lets a step of the
    size the model started with pass untouched and cuts only the growth that followed."""
    series = evidence.base.grad_norm_series[:1]
    return float(series[0]) if len(series) and np.isfinite(series[0]) else math.nan


def _report(setup: _Setup, init: Report, run: _Run, evidence: TrialEvidence) -> Report:
    found = run_trial_rules(evidence)
    notes = [*init.notes, *setup.notes]
    if setup.optimizer is None:
        notes.append("optimizer: none given, so Adam(lr=1e-3) (pass optimizer=... to try yours)")
    if setup.max_norm is not None:
        notes.append(f"gradient clipping at norm {setup.max_norm:.3g} before every step")
    ran = (
        f"trial: {len(run.loss)} step(s) of {evidence.optimizer} on a copy of the model ({run.seconds:.1f} s)"
    )
    notes.append(ran + (f"; {run.stopped}" if run.stopped else ""))
    notes += [f"counterfactual: {c.summary()}" for c in evidence.counterfactuals]
    findings = sorted([*init.findings, *found], key=lambda f: -f.severity)
    raw = trial_score(evidence, init.progress_score)
    healthy = all(finding.severity < Severity.WARNING for finding in findings)
    return Report(findings, agreeing_score(raw, healthy), "trial", notes, init.layers,
                  raw_score=raw, curves=evidence.curves)  # fmt: skip


def early_verdict(history: History, model: nn.Module, init_score: float, batch_size: int | None = None,
                  losses: list[float] | None = None) -> tuple[float, list[str]]:  # fmt: skip
    """The trial's score and finding kinds from a run's own first steps, recorded by a
    :class:`Monitor` with :data:`MONITOR_OPTIONS` (no copy, no further run, no counterfactual).
    ``losses``, when given, is the run's loss per step (with a last non-finite one the monitor
    never closed a step for); else the monitor's.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
        >>> with Monitor(model, optimizer, **MONITOR_OPTIONS) as monitor:
        ...     for _ in range(10):
        ...         optimizer.zero_grad()
        ...         loss = model(torch.ones(8, 4)).pow(2).mean() + 1
        ...         loss.backward()
        ...         monitor.step(loss)
        ...         optimizer.step()
        >>> score, kinds = early_verdict(monitor.history, model, 1.0)
        >>> score, kinds[0]
        (0.0, 'divergence')
    """
    base = evidence_from_history(history, model)
    base.batch_size = batch_size
    evidence = TrialEvidence(curves(history), non_finite=list(history.non_finite), base=base,
                             batch_size=batch_size)  # fmt: skip
    evidence.activations = {layer.name: layer.activation for layer in base.layers if layer.activation}
    if losses is not None:
        evidence.curves["loss"] = Curve(
            list(range(len(losses))), ["loss"], np.array(losses, float).reshape(-1, 1)
        )
    return trial_score(evidence, init_score), [f.kind for f in run_trial_rules(evidence)]


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    """Leave torch's RNG state (CPU and CUDA) as found, whatever the runs inside draw."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


__all__ = ["DEFAULT_STEPS", "build_optimizer", "curves", "early_verdict", "run_trial", "trial", "trial_loss"]
