"""The trial's rules: pure functions from :class:`TrialEvidence` (a short run's curves and its
counterfactual mini-trials) to :class:`Finding` lists.

Thresholds, and why (each from what a step of gradient descent does, not from any test set):

* Divergence: the loss is not finite, or the median of :data:`WINDOW` consecutive losses is
  more than :data:`RISE` (2) times the loss at initialization (step 0), and the last ``WINDOW``
  steps of the run are still above that start. Steps that make the model twice as wrong as it
  was at random initialization, and after which it does not even get back to where it began, are
  making it worse (a spike the run recovers from and ends better is not that); a median over a
  window is not moved by one noisy batch. Critical: a divergent run is lost.
* Exploding forward pass: a layer's output is not finite before any update (step 0): the model
  overflows by itself, whatever the learning rate.
* Where it exploded: the first layer, in forward order, whose output (or, from the output side,
  whose backprop signal) became non-finite; when everything stayed finite, the first layer whose
  output scale grew more than :data:`GREW` (10) times over the run, a decade being the smallest
  change that is not the drift of an ordinary update.
* The cause of a divergence comes from counterfactual mini-trials (further copies, one thing
  changed): the learning rate divided by 10 (then 100), and clipping at the gradient norm at
  initialization (a step of the size the model started with passes untouched). A change
  *fixes* the run when its mini-trial neither diverges (as above) nor fails to decrease (as below).
* Units dying during training (ReLU family): at least :data:`NEWLY_DEAD` (a quarter) of a
  layer's units that were alive at step 0 (the first batch, before any update: a rate that kills
  units in its first updates must not hide them in the baseline) are dead (zero for every example
  of a batch, batches of at least 8: at 8, chance makes 0.4 % look dead) in each of the last
  :data:`WINDOW` recorded batches. A dead unit gets no gradient, so it does not come back by
  itself: a quarter of a layer is a capacity loss a user would not choose. Critical when 90 % of
  the layer is dead.
* Saturation growing: an activation's saturated share (outputs in the flat tails) rose by at
  least :data:`GROWTH` (0.2, a fifth of the outputs) and ends at or above the checkup's 40 %.
* Stalled layers: as the checkup's rule (update ratio below 1e-6 while another layer's is 1000x
  larger), over the trial's own updates.
* Loss not decreasing: over at least :data:`MIN_STEPS` steps, the mean of the last tenth of the
  losses is not below the mean of the first tenth by more than 1 % of it *and* by more than
  three standard errors of the step-to-step noise (robust: 1.4826 * MAD of the differences over
  sqrt(2)). Below that, a plateau cannot be told from noise; above it, the run is learning.
* Vanishing / exploding developing: the backprop signal ratio first/last layer ends beyond the
  checkup's 1e-3 (1e3) and moved by at least a decade from where it started.

Example:
    >>> import numpy as np
    >>> divergence_step(np.array([2.3, 2.2, 2.5, 9.0, 40.0, 300.0, np.inf]))
    4
    >>> loss_decreased(np.linspace(2.3, 1.0, 40)), loss_decreased(np.full(40, 2.3))
    (True, False)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..history import FORWARD_METRICS, NonFiniteEvent
from . import catalog, rules
from .evidence import Evidence
from .findings import Curve, Family, Finding, Kind, Remedy, Severity

WINDOW = 3
RISE, EXPLODED = 2.0, 100.0
GREW = 10.0
NEWLY_DEAD, DEAD_CRITICAL = 0.25, 0.9
GROWTH = 0.2
MIN_STEPS = 20
PLATEAU_GAIN, NOISE_SIGMAS = 0.01, 3.0
DECADE = 10.0


@dataclass
class Counterfactual:
    """One mini-trial on a further copy with one thing changed.

    Attributes:
        change: ``"lr"`` (the learning rate times ``factor``) or ``"clip"`` (gradient clipping).
        label: what changed, in words (``"learning rate 0.01 (x0.1)"``).
        settings: the numbers to use (``{"lr": 0.01}`` or ``{"max_norm": 2.5}``).
        loss: its losses, one per step.
        newly_dead: the worst share of units that died during it (NaN: not measured).
    """

    change: str
    label: str
    settings: dict[str, float]
    loss: np.ndarray
    newly_dead: float = math.nan

    @property
    def fixed(self) -> bool:
        """The run neither diverged nor stalled."""
        return divergence_step(self.loss) is None and loss_decreased(self.loss)

    def summary(self) -> str:
        loss = self.loss
        end = f"{_fmt(float(loss[-1]))}" if len(loss) else "?"
        verdict = "fixes it" if self.fixed else "does not fix it"
        return f"{self.label}: loss {_fmt(float(loss[0]))} -> {end} in {len(loss)} steps, {verdict}"


@dataclass
class TrialEvidence:
    """What the trial's rules read: the curves of the run, its events and counterfactuals.

    Attributes:
        curves: ``loss``, ``signal_rms``, ``dead``, ``saturated``, ``pre_mean``, ``pre_std``,
            ``update_ratio`` (see :class:`gradmedic.diagnosis.findings.Curve`).
        activations: the activation after each parametrised layer, where known.
        non_finite: the monitor's non-finite events.
        base: the monitor's evidence of the run (the checkup's rules read it).
        optimizer: the optimizer in words (``"Adam(lr=0.001)"``); ``lr``: its first group's rate.
        counterfactuals: the mini-trials run to find a cause.
    """

    curves: dict[str, Curve]
    activations: dict[str, str] = field(default_factory=dict)
    non_finite: list[NonFiniteEvent] = field(default_factory=list)
    base: Evidence = field(default_factory=lambda: Evidence([]))
    optimizer: str = "the optimizer"
    lr: float = math.nan
    batch_size: int | None = None
    counterfactuals: list[Counterfactual] = field(default_factory=list)

    @property
    def loss(self) -> np.ndarray:
        curve = self.curves.get("loss")
        return curve.values[:, 0] if curve is not None and len(curve.values) else np.zeros(0)


def _fmt(x: float) -> str:
    return rules._fmt(x) if math.isfinite(x) else str(x)


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else math.nan


def divergence_step(loss: np.ndarray) -> int | None:
    """The first step where the loss is not finite, or where its window median exceeds RISE x the
    start *and* the last window of the run is still above the start (a spike the run recovers
    from, ending better than it began, is not a divergence)."""
    bad = np.flatnonzero(~np.isfinite(loss))
    first_bad = int(bad[0]) if len(bad) else None
    if not len(loss) or not math.isfinite(float(loss[0])):
        return 0 if len(loss) else None
    start = float(loss[0])
    end = first_bad if first_bad is not None else len(loss)
    if first_bad is None and not (start != 0 and _median(loss[-WINDOW:]) > start):
        return None
    for step in range(WINDOW, end + 1):
        window = loss[step - WINDOW : step]
        if len(window) == WINDOW and _median(window) > RISE * abs(start) and start != 0:
            return step - 1
    return first_bad


def exploded(loss: np.ndarray) -> bool:
    """The verdict is certain: the loss is not finite, or EXPLODED x its start (stop the trial)."""
    if len(loss) and not math.isfinite(float(loss[-1])):
        return True
    return len(loss) > WINDOW and _median(loss[-WINDOW:]) > EXPLODED * abs(float(loss[0])) > 0


def loss_trend(loss: np.ndarray) -> tuple[float, float, float]:
    """Mean of the first and last tenth (at least WINDOW steps) and the standard error of their gap."""
    tenth = max(len(loss) // 10, WINDOW)
    early, late = float(np.mean(loss[:tenth])), float(np.mean(loss[-tenth:]))
    steps = np.diff(loss)
    sigma = 1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / math.sqrt(2) if len(steps) else 0.0
    return early, late, sigma * math.sqrt(2 / tenth)


def loss_decreased(loss: np.ndarray) -> bool:
    """Whether the loss went down by more than 1 % and more than NOISE_SIGMAS standard errors."""
    loss = loss[np.isfinite(loss)]
    if len(loss) < 2 * WINDOW:
        return False
    early, late, error = loss_trend(loss)
    gain = early - late
    return gain > PLATEAU_GAIN * abs(early) and gain > NOISE_SIGMAS * error


def _early_late(curve: Curve | None, column: int) -> tuple[float, float, float] | None:
    """A column's median over the first WINDOW rows, its minimum over the last WINDOW, and the last."""
    if curve is None:
        return None
    values = curve.values[:, column]
    values = values[np.isfinite(values)]
    if len(values) < 2 * WINDOW:
        return None
    return _median(values[:WINDOW]), float(np.min(values[-WINDOW:])), float(values[-1])


# -- divergence ----------------------------------------------------------------------------


def where_exploded(evidence: TrialEvidence) -> tuple[str, str, int] | None:
    """(layer, "forward" or "backward", step): the first non-finite value, else the first layer
    whose output (then signal) grew more than GREW times over the run."""
    if evidence.non_finite:
        first_step = min(e.step for e in evidence.non_finite)
        events = [e for e in evidence.non_finite if e.step == first_step and e.metric != "loss"]
        forward = [e for e in events if e.metric in FORWARD_METRICS]
        chosen = forward[0] if forward else events[0] if events else None
        if chosen is not None:
            return chosen.layer, "forward" if forward else "backward", first_step
    for name, direction in (("pre_std", "forward"), ("signal_rms", "backward")):
        curve = evidence.curves.get(name)
        if curve is None or len(curve.values) < 2:
            continue
        order = range(len(curve.columns)) if direction == "forward" else reversed(range(len(curve.columns)))
        for column in order:
            step = _first_growth(curve.values[:, column])
            if step is not None:
                return curve.columns[column], direction, curve.steps[step]
    return None


def _first_growth(values: np.ndarray) -> int | None:
    """The first row where ``values`` exceed GREW times their first finite positive value."""
    start = values[np.isfinite(values)][:1]
    if not len(start) or not start[0] > 0:
        return None
    grown = np.flatnonzero(np.isfinite(values) & (values > GREW * start[0]))
    return int(grown[0]) if len(grown) else None


def rule_divergence(evidence: TrialEvidence) -> list[Finding]:
    """The loss rose or became non-finite; where, and why (from the counterfactuals)."""
    loss = evidence.loss
    step = divergence_step(loss)
    if step is None:
        return []
    place = where_exploded(evidence)
    if place is not None and place[2] == 0 and place[1] == "forward":
        return [_exploding_forward(place[0])]
    start = float(loss[0])
    what = (
        "became non-finite" if not math.isfinite(float(loss[step])) else f"reached {_fmt(float(loss[step]))}"
    )
    text = f"the loss went from {_fmt(start)} at initialization (step 0) and {what} at step {step}"
    if place is not None:
        verb = "became non-finite" if evidence.non_finite else f"grew more than {GREW:g}x"
        text += f"; the first layer whose {place[1]} values {verb}: {place[0]!r} (step {place[2]})"
    cause, remedies = _divergence_cause(evidence)
    numbers = {"step": float(step), "start": start, "lr": evidence.lr, **_what_worked(evidence)}
    return [Finding(Kind.DIVERGENCE, Severity.CRITICAL, [place[0]] if place else [], text, cause, remedies,
                    numbers)]  # fmt: skip


def _exploding_forward(layer: str) -> Finding:
    text = f"before any update (step 0) the output of layer {layer!r} is NaN/Inf: the forward pass overflows"
    cause = (
        "a value beyond the float range in the forward pass at initialization (an exp, pow or "
        "division of too large an input), whatever the learning rate"
    )
    remedies = [
        Remedy(Family.ACTIVATION, "Bound the overflowing operation",
               "a bounded input keeps exp/pow within the float range",
               "x = torch.clamp(x, max=80.0)  # before exp; or use logsumexp / softplus"),
        catalog.he_init(), catalog.batch_norm(),
    ]  # fmt: skip
    return Finding(Kind.EXPLODING_FORWARD, Severity.CRITICAL, [layer], text, cause, remedies, {"step": 0.0})


def _divergence_cause(evidence: TrialEvidence) -> tuple[str, list[Remedy]]:
    fixes = [c for c in evidence.counterfactuals if c.fixed]
    tried = "; ".join(c.summary() for c in evidence.counterfactuals)
    if not fixes:
        cause = f"not the learning rate alone: {tried}" if tried else "values overflowed (no mini-trial ran)"
        return cause, [
            catalog.clipping(),
            catalog.lower_learning_rate(),
            catalog.he_init(),
            catalog.batch_norm(),
        ]
    remedies = [_remedy_of(c, evidence.optimizer) for c in fixes]
    best = fixes[0]
    if best.change == "lr":
        cause = (
            f"learning rate too high for this model: {evidence.optimizer} diverges, while at "
            f"lr={best.settings['lr']:.3g} it converges ({tried})"
        )
    else:
        cause = (
            f"a few steps with huge gradients: clipping at norm {best.settings['max_norm']:.3g} keeps it "
            f"finite and learning ({tried})"
        )
    return cause, [*remedies, catalog.lower_learning_rate() if best.change != "lr" else catalog.clipping()]


def _what_worked(evidence: TrialEvidence, factor_above: float = 0.0) -> dict[str, float]:
    """``lr_that_worked`` and ``clip_that_worked``: the settings of the mini-trials that fixed the run."""
    worked: dict[str, float] = {}
    for c in evidence.counterfactuals:
        if c.fixed and c.change == "lr" and c.settings["factor"] > factor_above:
            worked.setdefault("lr_that_worked", c.settings["lr"])
        elif c.fixed and c.change == "clip":
            worked.setdefault("clip_that_worked", c.settings["max_norm"])
    return worked


def _remedy_of(counterfactual: Counterfactual, optimizer: str, showed: str = "converged") -> Remedy:
    """The remedy a mini-trial proved; ``showed`` says what it showed at its rate."""
    if counterfactual.change == "lr":
        rate = counterfactual.settings["lr"]
        name = optimizer.split("(")[0]
        return Remedy(Family.OPTIMIZER, f"Learning rate {rate:.3g}",
                      f"the mini-trial at this rate {showed} ({counterfactual.summary()})",
                      f"torch.optim.{name}(model.parameters(), lr={rate:.3g})")  # fmt: skip
    norm = counterfactual.settings["max_norm"]
    return Remedy(Family.CLIPPING, f"Gradient clipping at norm {norm:.3g}",
                  f"the mini-trial with clipping kept the loss finite ({counterfactual.summary()})",
                  f"torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={norm:.3g})")  # fmt: skip


# -- units and saturation ------------------------------------------------------------------


def _start(curve: Curve, column: int) -> float:
    """A column's first finite value: the first recorded batch, at step 0, before any update.

    Units that die and pre-activations that drift are measured from there, not from a median of
    the first steps: a rate high enough to kill most units in its first two updates would
    otherwise hide its own damage in the baseline. One batch of at least 8 examples makes a live
    unit look dead by chance 0.4 % of the time, far below the NEWLY_DEAD scale.
    """
    values = curve.values[:, column]
    return float(values[np.isfinite(values)][0])


def newly_dead(evidence: TrialEvidence) -> dict[str, tuple[float, float, int]]:
    """Per layer: (dead at step 0, dead throughout the last WINDOW recorded batches, the step
    when half of that rise had happened)."""
    curve = evidence.curves.get("dead")
    found: dict[str, tuple[float, float, int]] = {}
    if curve is None:
        return found
    for column, name in enumerate(curve.columns):
        span = _early_late(curve, column)
        if span is None or span[1] - _start(curve, column) < 1e-9:
            continue
        early, late = _start(curve, column), span[1]
        values = curve.values[:, column]
        crossed = np.flatnonzero(np.nan_to_num(values, nan=-1.0) >= early + (late - early) / 2)
        found[name] = (early, late, curve.steps[int(crossed[0])] if len(crossed) else curve.steps[-1])
    return found


def rule_dying_units(evidence: TrialEvidence) -> list[Finding]:
    """ReLU-family units alive at the start and dead after some steps."""
    if evidence.batch_size is not None and evidence.batch_size < rules.MIN_DEAD_BATCH:
        return []
    dying = {n: v for n, v in newly_dead(evidence).items() if v[1] - v[0] >= NEWLY_DEAD}
    if not dying:
        return []
    worst = max(dying, key=lambda n: dying[n][1] - dying[n][0])
    early, late, when = dying[worst]
    parts = [f"{n!r}: {a:.0%} -> {b:.0%} by step {s}" for n, (a, b, s) in dying.items()]
    text = f"units alive at the start died during the trial in {len(dying)} layer(s): " + "; ".join(parts)
    cause, remedies, worked = _dying_cause(evidence, worst)
    severity = Severity.CRITICAL if late >= DEAD_CRITICAL else Severity.WARNING
    numbers = {"worst": late, "newly_dead": late - early, "step": float(when), **worked}
    return [Finding(Kind.DYING_UNITS, severity, list(dying), text, cause, remedies, numbers)]


def _dying_cause(evidence: TrialEvidence, layer: str) -> tuple[str, list[Remedy], dict[str, float]]:
    causes: list[str] = []
    worked: dict[str, float] = {}
    remedies = [catalog.leaky_activation(), catalog.he_init(), catalog.batch_norm()]
    drift = _drift(evidence, layer)
    if drift is not None and drift[1] - drift[0] <= -drift[2]:
        causes.append(
            f"the pre-activations of layer {layer!r} drifted negative (mean {_fmt(drift[0])} -> "
            f"{_fmt(drift[1])}, more than their initial spread {_fmt(drift[2])}): bias and weight updates "
            "push them below zero for every input"
        )
    lower = [c for c in evidence.counterfactuals if c.change == "lr" and math.isfinite(c.newly_dead)]
    dying = newly_dead(evidence)[layer]
    if lower and lower[0].newly_dead <= (dying[1] - dying[0]) / 2:
        causes.insert(0, f"learning rate: at lr={lower[0].settings['lr']:.3g} only {lower[0].newly_dead:.0%} "
                         f"of the units die instead of {dying[1] - dying[0]:.0%}")  # fmt: skip
        showed = "converged" if lower[0].fixed else "kept the units alive"
        remedies.insert(0, _remedy_of(lower[0], evidence.optimizer, showed))
        worked["lr_that_worked"] = lower[0].settings["lr"]
    if not causes:
        causes.append("large updates push units below zero for every input (learning rate, init)")
    return "; ".join(causes), remedies, worked


def _drift(evidence: TrialEvidence, layer: str) -> tuple[float, float, float] | None:
    """(mean at the start, mean at the end, spread at the start) of a layer's output."""
    means, spreads = evidence.curves.get("pre_mean"), evidence.curves.get("pre_std")
    if means is None or spreads is None or layer not in means.columns:
        return None
    column, spread_column = means.columns.index(layer), spreads.columns.index(layer)
    mean = _early_late(means, column)
    if mean is None or _early_late(spreads, spread_column) is None:
        return None
    return _start(means, column), mean[2], _start(spreads, spread_column)


def rule_saturation_growing(evidence: TrialEvidence) -> list[Finding]:
    """Saturating units drifting into their flat tails while training."""
    curve = evidence.curves.get("saturated")
    if curve is None:
        return []
    grown: dict[str, tuple[float, float, float]] = {}
    for column, name in enumerate(curve.columns):
        span = _early_late(curve, column)
        if span is not None and span[2] >= rules.SATURATED_WARNING and span[2] - span[0] >= GROWTH:
            grown[name] = span
    if not grown:
        return []
    parts = [f"{n!r}: {a:.0%} -> {c:.0%}" for n, (a, _, c) in grown.items()]
    text = "the share of saturated outputs grew during the trial: " + "; ".join(parts)
    worst = max(value[2] for value in grown.values())
    activation = next((evidence.activations.get(n) for n in grown if evidence.activations.get(n)), None)
    severity = Severity.CRITICAL if worst >= rules.SATURATED_CRITICAL else Severity.WARNING
    remedies = [
        catalog.non_saturating_activation(activation),
        catalog.batch_norm(),
        catalog.lower_learning_rate(),
    ]
    cause = "updates grow the weights (or shift the biases) until the pre-activations sit in the flat tails"
    return [Finding(Kind.SATURATION_GROWING, severity, list(grown), text, cause, remedies, {"worst": worst})]


# -- progress ------------------------------------------------------------------------------


def rule_stalled(evidence: TrialEvidence) -> list[Finding]:
    """The checkup's stalled-layer rule over the trial's own updates."""
    return rules.rule_stalled(evidence.base)


def rule_not_decreasing(evidence: TrialEvidence) -> list[Finding]:
    """Over the trial the loss did not go down by more than its noise (and 1 %)."""
    loss = evidence.loss
    if len(loss) < MIN_STEPS or divergence_step(loss) is not None or loss_decreased(loss):
        return []
    early, late, error = loss_trend(loss)
    text = (
        f"over {len(loss)} steps the loss went from {_fmt(early)} (mean of the first tenth) to "
        f"{_fmt(late)} (last tenth); the step-to-step noise allows +-{_fmt(NOISE_SIGMAS * error)}"
    )
    higher = [
        c for c in evidence.counterfactuals if c.change == "lr" and c.settings["factor"] > 1 and c.fixed
    ]
    remedies = [catalog.adaptive_optimizer(), *rules._vanishing_cause(evidence.base)[1][:2]]
    cause = "the updates are too small (or too noisy) to make progress"
    if higher:
        cause = (
            f"learning rate too low: {evidence.optimizer} does not move the loss, while {higher[0].summary()}"
        )
        remedies.insert(0, _remedy_of(higher[0], evidence.optimizer))
    numbers = {"early": early, "late": late, "noise": NOISE_SIGMAS * error, **_what_worked(evidence, 1.0)}
    return [Finding(Kind.LOSS_NOT_DECREASING, Severity.WARNING, [], text, cause, remedies, numbers)]


def signal_ratios(evidence: TrialEvidence) -> np.ndarray:
    """Per recorded step, the backprop signal at the first observed layer over the last one."""
    curve = evidence.curves.get("signal_rms")
    if curve is None or not len(curve.values):
        return np.zeros(0)
    ratios = []
    for row in curve.values:
        seen = row[np.isfinite(row) & (row > 0)]
        ratios.append(seen[0] / seen[-1] if len(seen) >= 2 else math.nan)
    return np.array(ratios)


def rule_signal_developing(evidence: TrialEvidence) -> list[Finding]:
    """Vanishing or exploding that develops over the steps (the ratio's trend, not its start)."""
    ratios = signal_ratios(evidence)
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) < 2 * WINDOW:
        return []
    start, end = _median(ratios[:WINDOW]), _median(ratios[-WINDOW:])
    numbers = {"start": start, "end": end}
    text = (
        f"the backprop signal ratio first/last layer went from {_fmt(start)} to {_fmt(end)} during the trial"
    )
    if end < rules.VANISH_WARNING and end * DECADE <= start:
        cause = (
            "the updates drive the layers into a regime that passes less gradient (saturation, dying units)"
        )
        remedies = rules._vanishing_cause(evidence.base)[1]
        return [Finding(Kind.VANISHING_DEVELOPING, Severity.WARNING, [], text, cause, remedies, numbers)]
    if end > rules.EXPLODE_WARNING and end >= DECADE * start:
        cause = "the updates grow the weights so that each layer amplifies the signal more"
        remedies = [catalog.clipping(), catalog.lower_learning_rate(), catalog.batch_norm()]
        return [Finding(Kind.EXPLODING_DEVELOPING, Severity.WARNING, [], text, cause, remedies, numbers)]
    return []


TRIAL_RULES = [
    rule_divergence, rule_dying_units, rule_saturation_growing, rule_stalled, rule_not_decreasing,
    rule_signal_developing,
]  # fmt: skip
#: Kinds the trial's rules can give (for the report and the CLI).
TRIAL_KINDS = (Kind.DIVERGENCE, Kind.EXPLODING_FORWARD, Kind.DYING_UNITS, Kind.SATURATION_GROWING,
               Kind.STALLED_LAYERS, Kind.LOSS_NOT_DECREASING, Kind.VANISHING_DEVELOPING,
               Kind.EXPLODING_DEVELOPING)  # fmt: skip


def run_trial_rules(evidence: TrialEvidence) -> list[Finding]:
    """Every trial rule on ``evidence``, most severe first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        found = [finding for rule in TRIAL_RULES for finding in rule(evidence)]
    return sorted(found, key=lambda f: -f.severity)


#: Score factor of a run that did not make progress (the loss flat within its noise): half, as
#: the checkup's score is halfway down at 1e-5 of signal: it may yet train, slowly.
PLATEAU_FACTOR = 0.5


def trial_score(evidence: TrialEvidence, init_score: float) -> float:
    """The init checkup's score, times the checkup's score formula on the trial's last steps,
    times 0 for a divergence, ``1 - newly dead`` for dying units and PLATEAU_FACTOR for a loss
    that did not decrease. The init score stays in: it holds what the trial does not record (the
    signal through time of recurrent layers), and a model is no better than its worse look."""
    loss = evidence.loss
    if len(loss) and divergence_step(loss) is not None:
        return 0.0
    score = init_score * rules.health_score(evidence.base)
    dying = [late - early for early, late, _ in newly_dead(evidence).values()]
    score *= 1 - max([d for d in dying if d > 0], default=0.0)
    if len(loss) >= MIN_STEPS and not loss_decreased(loss):
        score *= PLATEAU_FACTOR
    return float(score)
