"""One cell of the lab: build the model, check it up at initialization, sweep the learning rate.

:func:`run_cell` turns a :class:`~gradmedic.lab.schema.CellSpec` into a
:class:`~gradmedic.lab.schema.CellResult`:

1. the task's data (:func:`gradmedic.lab.data.load_task`) and a checkup batch of 128 training
   samples; the model of the spec's recipe (:func:`gradmedic.lab.recipes.build_model`) with
   ``torch.manual_seed(spec.seed)``; with ``params["treat"]`` it is first treated by
   :func:`gradmedic.treat` on that batch (and trained with the norm clipping treat asks for);
2. :func:`gradmedic.checkup` of the model as it will start training: health score, verdict,
   finding kinds, backprop signal per layer and, for recurrent models, the signal by steps back
   (:func:`time_signal`);
3. for each learning rate of ``spec.lrs``, a copy of that same initialized model is trained on
   the training data (``spec.steps`` Adam steps by default, batches of 64) and scored on the
   validation data; the rate with the best validation score wins, and its run gives the
   learning curve (mean training loss per window and test score at 16 checkpoints), the final
   test score and the steps to the study's target;
4. the trial's early verdict: each run is watched by a :class:`~gradmedic.Monitor` for its first
   :data:`EARLY_FRACTION` of steps (it observes and changes nothing), and
   :func:`gradmedic.diagnosis.trials.early_verdict` scores them; the cell keeps the best over the
   sweep (``early_score``, ``early_findings``).

Training remedies come from ``params``: ``optimizer`` (:func:`gradmedic.training.make_optimizer`)
and ``clip`` (``norm``/``value``/``agc``, :func:`gradmedic.install_gradient_clipping` with ``max_norm``,
``clip_value``, ``clipping``). A run whose loss becomes NaN/Inf stops there and is scored as it
is. Any exception is recorded in the result (``status="error"``), never raised.

Example:
    >>> from gradmedic.lab.schema import CellSpec
    >>> spec = CellSpec("depth", "digits", "mlp", "relu", {"depth": 2, "width": 32, "target": 0.8},
    ...                 seed=0, steps=60, lrs=(3e-3,), axis="depth")
    >>> result = run_cell(spec)
    >>> result.status, result.metric > 0.8, result.healthy, len(result.signal)
    ('ok', True, True, 3)
"""

from __future__ import annotations

import copy
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import registry
from ..diagnosis import Report, checkup
from ..diagnosis.evidence import time_evidence
from ..diagnosis.trials import MONITOR_OPTIONS, early_verdict
from ..history import History
from ..monitor import Monitor
from ..remedies import install_gradient_clipping, treat
from ..training import make_optimizer
from .data import TaskData, load_task
from .recipes import build_model
from .schema import CellResult, CellSpec

BATCH = 64
CHECKUP_BATCH = 128
#: The share of each run's steps the early trial verdict reads (the issue: at most 10 %).
EARLY_FRACTION = 0.1
CHECKPOINTS = 15
TREAT_CLIP = "norm"


@dataclass
class Run:
    """One training run of the sweep."""

    lr: float
    val: float = math.nan
    test: float = math.nan
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    last_loss: float = math.inf
    history: History | None = None
    early_loss: list[float] = field(default_factory=list)

    def rank(self) -> tuple[float, float]:
        """Best validation score first; ties broken by the lower final training loss."""
        val = self.val if math.isfinite(self.val) else -1.0
        return val, -self.last_loss if math.isfinite(self.last_loss) else -math.inf


def run_cell(spec: CellSpec) -> CellResult:
    """Run one cell (see the module docstring); an exception becomes ``status="error"``."""
    started = time.perf_counter()
    result = CellResult(spec)
    try:
        torch.set_flush_denormal(True)  # vanishing signals make denormals, which crawl on CPU
        measure(spec, result)
    except Exception as error:  # a failing cell is recorded, never fatal
        result.status = "error"
        result.error = describe_error(error)
    result.wall_time = time.perf_counter() - started
    return result


def describe_error(error: BaseException) -> str:
    """``Type: message`` and the last lines of the traceback."""
    tail = "".join(traceback.format_exception(type(error), error, error.__traceback__)[-3:])
    return f"{type(error).__name__}: {error}\n{tail[-1500:]}"


def measure(spec: CellSpec, result: CellResult) -> None:
    """Fill ``result``: the checkup at initialization, then the learning-rate sweep."""
    params = spec.params
    data = load_task(spec.task, spec.seed, params.get("length"))
    x, y = data.batch(CHECKUP_BATCH, seed=spec.seed)
    torch.manual_seed(spec.seed)
    model = build_model(spec.recipe, params, data.n_inputs, data.n_outputs, example=x)
    clip = params.get("clip")
    if params.get("treat"):
        treatment = treat(model, x, y, loss_fn=data.checkup_loss(), suggest_lr=False)
        model = treatment.model
        clip = clip or (TREAT_CLIP if treatment.clip_norm else None)
    record_checkup(result, checkup(model, x, y, data.checkup_loss()))
    result.time_signal = time_signal(model, x, y, data)
    result.metric_name = data.metric_name
    runs = [train(copy.deepcopy(model), data, spec, lr, clip) for lr in spec.lrs]
    record_early(result, runs, model)
    best = max(runs, key=Run.rank)
    result.lr, result.metric = best.lr, best.test
    result.by_lr = {repr(run.lr): run.val for run in runs}
    result.curve_steps, result.curve_loss, result.curve_metric = best.steps, best.loss, best.metric
    target = float(params.get("target", math.inf))
    result.steps_to_target = next((s for s, m in zip(best.steps, best.metric) if m >= target), None)


def record_checkup(result: CellResult, report: Report) -> None:
    """The checkup's raw score (the estimate the lab calibrates, before it is made to agree with
    the verdict), verdict, finding kinds and per-layer backprop signal."""
    result.score, result.healthy = float(report.progress_score), bool(report.healthy)
    result.findings = list(report.kinds)
    result.layer_names = [layer.name for layer in report.layers]
    result.signal = [float(layer.signal_rms) for layer in report.layers]


def record_early(result: CellResult, runs: list[Run], model: nn.Module) -> None:
    """The trial's verdict from each run's first steps; the cell keeps the best over the sweep
    (a user would train at the rate whose first steps look best)."""
    verdicts = [
        early_verdict(run.history, model, result.score, BATCH, run.early_loss)
        for run in runs
        if run.history is not None
    ]
    if verdicts:
        result.early_score, result.early_findings = max(verdicts, key=lambda v: v[0])
    for run in runs:
        run.history = None


def time_signal(model: nn.Module, x: Tensor, y: Tensor, data: TaskData) -> list[float] | None:
    """For a recurrent model, the backprop signal of the checkup's loss by steps back (0: the last
    step) at the recurrent layer, from one watched forward/backward pass on a copy; else None.

    Example:
        >>> from gradmedic.lab.recipes import build_model
        >>> data = load_task("adding", seed=0, length=12)
        >>> x, y = data.batch(16)
        >>> profile = time_signal(build_model("rnn", {"cell": "rnn", "hidden": 8}, 2, 1), x, y, data)
        >>> len(profile), profile[0] > profile[-1] > 0
        (12, True)
    """
    if not any(registry.is_recurrent(m) for m in model.modules()):
        return None
    trial = copy.deepcopy(model)
    loss_fn = data.checkup_loss() or data.loss
    with Monitor(trial, gradients_every=1, activations_every=1, updates_every=None, flush_every=1) as monitor:
        loss = loss_fn(trial(x), y)
        loss.backward()
        monitor.step(loss)
    found = time_evidence(monitor.history)
    return [float(v) for v in found[0].profile] if found else None


def checkpoints(steps: int, count: int = CHECKPOINTS) -> list[int]:
    """``count + 1`` evenly spaced steps from 0 to ``steps`` (fewer when ``steps`` is small).

    Example:
        >>> checkpoints(300, 3)
        [0, 100, 200, 300]
    """
    return sorted({round(i * steps / count) for i in range(count + 1)})


def train(model: nn.Module, data: TaskData, spec: CellSpec, lr: float, clip: str | None) -> Run:
    """Train ``model`` at ``lr`` on the training data; test score at the checkpoints, validation
    score at the end. Stops at the first non-finite loss."""
    params = spec.params
    optimizer = make_optimizer(params.get("optimizer", "adam"), model.parameters(), lr)
    if clip is not None:
        install_gradient_clipping(optimizer, clip, **clip_options(params))
    generator = torch.Generator().manual_seed(spec.seed)
    train_set, test = data.fit, data.final
    marks, losses, run = checkpoints(spec.steps), [], Run(lr)
    model.train()
    early = max(round(EARLY_FRACTION * spec.steps), 1)
    monitor = Monitor(model, optimizer, **MONITOR_OPTIONS).attach()  # observes, changes nothing
    for step in range(spec.steps):
        if step == early:
            run.history = _detached(monitor)
        if step in marks:
            run.steps.append(step)
            run.metric.append(data.metric(model, test.x_test, test.y_test))
        index = torch.randint(0, len(train_set.y_train), (BATCH,), generator=generator)
        loss = data.loss(model(train_set.x_train[index]), train_set.y_train[index])
        losses.append(float(loss.item()))
        if not math.isfinite(losses[-1]):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if monitor.attached:
            monitor.step(loss)
        optimizer.step()
    if run.history is None:
        run.history = _detached(monitor)
    run.early_loss = losses[:early]
    finish(run, model, data, losses, spec.steps)
    return run


def _detached(monitor: Monitor) -> History:
    monitor.detach()
    return monitor.history


def clip_options(params: dict[str, Any]) -> dict[str, float]:
    """The thresholds of ``params`` that :func:`gradmedic.install_gradient_clipping` takes."""
    return {k: float(params[k]) for k in ("max_norm", "clip_value", "clipping") if k in params}


def finish(run: Run, model: nn.Module, data: TaskData, losses: list[float], steps: int) -> None:
    """The last checkpoint (the step the run reached), the loss windows and the final scores."""
    done = len(losses) if losses and math.isfinite(losses[-1]) else max(len(losses) - 1, 0)
    if not run.steps or run.steps[-1] != done:
        run.steps.append(done)
        run.metric.append(data.metric(model, data.final.x_test, data.final.y_test))
    run.loss = window_means(losses, run.steps)
    run.last_loss = run.loss[-1] if run.loss and math.isfinite(run.loss[-1]) else math.inf
    run.test = run.metric[-1]
    run.val = data.metric(model, data.fit.x_test, data.fit.y_test)


def window_means(losses: list[float], marks: list[int]) -> list[float]:
    """Mean training loss over the steps before each mark (at mark 0: the first step's loss).

    Example:
        >>> window_means([4.0, 2.0, 1.0, 1.0], [0, 2, 4])
        [4.0, 3.0, 1.0]
    """
    values = np.asarray(losses, dtype=float)
    means, previous = [], 0
    for mark in marks:
        window = values[previous:mark] if mark > previous else values[:1]
        means.append(float(window.mean()) if len(window) else math.nan)
        previous = max(mark, previous)
    return means
