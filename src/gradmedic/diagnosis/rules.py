"""The rules: pure functions from :class:`Evidence` to :class:`Finding` lists.

Thresholds, and why:

* Vanishing / exploding: the first layer receives less than 1e-3 (more than 1e3) of the last
  layer's backprop signal (RMS per element). At 1e-3 a layer with a learning rate tuned for
  the last layer needs a thousand times more steps to move; at 1e-6 (critical) it does not move
  at all in any practical budget. A healthy deep network keeps the ratio within 1e-2..1e2.
* Saturation: 40 % of an activation's outputs in its flat tails (local slope below 5 % of the
  maximum, see :data:`gradmedic.stats.SATURATION_SLOPE`) means most of the layer's units pass
  on less than 1/20 of the gradient; 80 % is critical.
* Dead units: half the units of a ReLU-family activation zero for a whole batch (of at least 8
  samples: at 8, chance alone makes 0.4 % of the units look dead) is a warning; 90 % critical.
* Initialisation: ``std(w) * sqrt(fan_in)`` outside the band that keeps the variance of the
  signal for the activation that follows (He: sqrt(2) for ReLU; Xavier/orthogonal: ~1 to 5/3
  for tanh; LeCun: 1 for SELU) in at least 4 layers (a stack, where the factor compounds), *and*
  a signal ratio outside 1e-2..1e2 to show that it matters.
* Stalled layers: a layer whose median update ratio is below 1e-6 while another layer's is
  1000x larger does not learn (the usual healthy ratio is around 1e-3).
* Loss plateau: over at least 50 logged steps, the last tenth of the losses improves on the
  first tenth by less than 1 %.
* Precision underflow: 5 % of a layer's non-zero weight-gradient values (as the backward pass
  made them, i.e. loss-scaled) are below the smallest normal number of the low-precision dtype
  (float16: 6.1e-5; bfloat16: 1.2e-38). Such a value keeps fewer than float16's 10 mantissa bits
  (a subnormal at 1e-6 keeps 4, and its rounding error is up to 3 %) or becomes 0 below 6e-8, so
  that share of the layer's update is noise or missing; 5 % is where the loss already shows as
  a biased update, as the dead-unit and saturation rules count lost units. At 50 % (critical)
  most of the layer's gradient is gone. GradScaler's default scale 2**16 lifts gradients down to
  1e-9 back into the normal range, which is why loss scaling (or bfloat16's wider exponent) is
  the remedy.
* Through time (recurrent layers, :mod:`gradmedic.recurrent_stats`): ``vanishing_through_time``
  when the signal at the first step of the sequence is below 1e-7 of the signal at the last
  step. Not the depth rules' 1e-3: a recurrent layer shares its weights across steps, so its
  weight gradient is the *sum* of every step's contribution, and a float32 sum keeps a term down
  to about its 7th significant digit (eps 1.2e-7); above that, Adam's per-weight normalization
  turns even a small but consistent share into steady updates. Measured: LSTM and GRU layers with
  forget-gate bias 1 over 50 steps, which learn the adding problem, keep 1e-5..1e-4 at the first
  step; a vanilla tanh ``nn.RNN`` with PyTorch's default init keeps 1e-26 over 100 steps.
  Critical when the memory horizon (the steps back above 1e-3 of the last step's signal) covers
  less than a quarter of the sequence, or the signal underflows to 0: three quarters of the
  inputs then teach the layer nothing. ``exploding_through_time`` when the signal somewhere
  before the last step exceeds 1e3 times its value at the last step (as the depth rule), critical
  at 1e6: the oldest steps then dominate each update of the shared weights. Every recurrent layer
  without either finding gets an info finding, ``memory_horizon``, with its horizon in numbers.

Example:
    >>> from gradmedic.diagnosis.evidence import Evidence, LayerEvidence
    >>> layers = [LayerEvidence(str(i), "Linear", signal=10.0 ** (i - 12), activation="tanh")
    ...           for i in range(13)]
    >>> [f.kind for f in run_rules(Evidence(layers))][:1]
    ['vanishing_gradient']
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .. import registry
from ..recurrent_stats import HORIZON_FRACTION, span
from ..registry import ActivationFamily
from . import catalog
from .evidence import Evidence, LayerEvidence, TimeEvidence
from .findings import Finding, Kind, Remedy, Severity

VANISH_WARNING, VANISH_CRITICAL = 1e-3, 1e-6
EXPLODE_WARNING, EXPLODE_CRITICAL = 1e3, 1e6
MISMATCH_SIGNAL, MISMATCH_LAYERS = 1e-2, 4
SATURATED_WARNING, SATURATED_CRITICAL = 0.4, 0.8
DEAD_WARNING, DEAD_CRITICAL = 0.5, 0.9
MIN_DEAD_BATCH = 8
STALLED_ABSOLUTE, STALLED_RELATIVE = 1e-6, 1e-3
PLATEAU_STEPS, PLATEAU_GAIN = 50, 0.01
SUBNORMAL_WARNING = 0.01
TIME_VANISH_WARNING, TIME_CRITICAL_SHARE = 1e-7, 0.25
TIME_EXPLODE_WARNING, TIME_EXPLODE_CRITICAL = 1e3, 1e6
_HORIZON = f"1e{round(math.log10(HORIZON_FRACTION))}"  # "1e-3"
UNDERFLOW_WARNING, UNDERFLOW_CRITICAL = 0.05, 0.5

#: Activation names by family (see :mod:`gradmedic.registry`).
SATURATING = registry.names(ActivationFamily.SATURATING)
RELU_FAMILY = registry.names(ActivationFamily.RELU)
SMOOTH_RELU = registry.names(ActivationFamily.SMOOTH_RELU)
#: Range of std(w) * sqrt(fan_in) that keeps the signal's scale through the activation.
GAIN_BAND: dict[str, tuple[float, float]] = {
    **{name: (1.2, 1.8) for name in RELU_FAMILY | SMOOTH_RELU},
    "tanh": (0.9, 2.0),
    "sigmoid": (0.9, 4.5),
    "selu": (0.85, 1.2),
}


def signal_ratio(evidence: Evidence) -> tuple[float, list[LayerEvidence]]:
    """Backprop signal at the first observed layer over the last one, and the observed layers."""
    layers = evidence.observed()
    if len(layers) < 2:
        return 1.0, layers
    return layers[0].signal / layers[-1].signal, layers


def _fmt(x: float) -> str:
    return f"{x:.1e}" if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e3) else f"{x:.2g}"


def _per_layer(ratio: float, n: int) -> float:
    return ratio ** (1 / max(n - 1, 1))


def dominant_activation(evidence: Evidence) -> str | None:
    """The activation after most layers (None if the layers have none)."""
    names = [layer.activation for layer in evidence.layers if layer.activation]
    return max(set(names), key=names.count) if names else None


def gain_mismatches(evidence: Evidence) -> list[LayerEvidence]:
    """Layers whose initial gain does not suit the activation after them."""
    bad = []
    for layer in evidence.layers:
        band = GAIN_BAND.get(layer.activation or "")
        if band and math.isfinite(layer.gain) and not band[0] <= layer.gain <= band[1]:
            bad.append(layer)
    return bad


def recommended_init(activation: str | None, deep: bool) -> Remedy:
    """The initialisation remedy for the activation after the layers."""
    if activation in RELU_FAMILY or activation in SMOOTH_RELU:
        return catalog.he_init()
    if activation == "selu":
        return catalog.lecun_init()
    saturating = activation if activation in ("sigmoid", "tanh") else "tanh"
    return catalog.xavier_or_orthogonal_init(deep, saturating)


def _vanishing_cause(evidence: Evidence) -> tuple[str, list[Remedy]]:
    activation = dominant_activation(evidence)
    deep = evidence.depth >= 10
    mismatched = gain_mismatches(evidence)
    init = recommended_init(activation, deep)
    tail = [catalog.batch_norm(), catalog.residual(), catalog.adaptive_optimizer()]
    gains = f"{np.median([layer.gain for layer in mismatched]):.2f}" if mismatched else ""
    # tanh with a good init keeps the signal; sigmoid (slope at most 1/4) never does
    if activation in SATURATING and (activation != "tanh" or not mismatched):
        cause = (
            f"saturating {activation} activations: each layer multiplies the gradient by the "
            f"activation's slope (at most {'0.25' if activation == 'sigmoid' else '1'}), "
            f"over {evidence.depth} layers"
        )
        if mismatched:
            cause += f", and weights initialised with gain {gains} (std * sqrt(fan_in)) shrink it further"
        return cause, [catalog.non_saturating_activation(activation), init, *tail]
    if mismatched:
        cause = (
            f"initialisation: weights with gain {gains} (std * sqrt(fan_in)) do not suit "
            f"{activation or 'the activation'}: each layer scales the signal down"
        )
        return cause, [init, catalog.non_saturating_activation(activation), *tail]
    cause = f"depth: the product of {evidence.depth} per-layer factors, each below 1"
    return cause, [*tail[:2], init, catalog.adaptive_optimizer()]


def rule_vanishing(evidence: Evidence) -> list[Finding]:
    """The backprop signal shrinks from the last layer to the first."""
    ratio, layers = signal_ratio(evidence)
    if ratio >= VANISH_WARNING:
        return []
    last = layers[-1].signal
    starved = [layer.name for layer in layers if layer.signal < VANISH_WARNING * last]
    per_layer = _per_layer(ratio, len(layers))
    cause, remedies = _vanishing_cause(evidence)
    evidence_text = (
        f"the backprop signal shrinks x{per_layer:.2f} per layer; layer {layers[0].name!r} receives "
        f"{_fmt(ratio)} of what layer {layers[-1].name!r} receives; {len(starved)} of {len(layers)} "
        f"layers get less than 1e-3 of it"
    )
    severity = Severity.CRITICAL if ratio < VANISH_CRITICAL else Severity.WARNING
    numbers = {"ratio": ratio, "per_layer": per_layer, "starved": float(len(starved))}
    return [Finding(Kind.VANISHING_GRADIENT, severity, starved, evidence_text, cause, remedies, numbers)]


def rule_exploding(evidence: Evidence) -> list[Finding]:
    """The backprop signal grows from the last layer to the first, or spikes during training."""
    ratio, layers = signal_ratio(evidence)
    findings = []
    if ratio > EXPLODE_WARNING:
        per_layer = _per_layer(ratio, len(layers))
        grown = [layer.name for layer in layers if layer.signal > EXPLODE_WARNING * layers[-1].signal]
        mismatched = gain_mismatches(evidence)
        activation = dominant_activation(evidence)
        cause = (
            f"initialisation: weights with gain {np.median([layer.gain for layer in mismatched]):.2f} "
            f"(std * sqrt(fan_in)) amplify the signal at every layer"
            if mismatched
            else f"depth: the product of {evidence.depth} per-layer factors above 1"
        )
        remedies = [
            catalog.clipping(),
            recommended_init(activation, evidence.depth >= 10),
            catalog.batch_norm(),
            catalog.lower_learning_rate(),
        ]
        text = (
            f"the backprop signal grows x{per_layer:.2f} per layer; layer {layers[0].name!r} "
            f"receives {_fmt(ratio)} times what layer {layers[-1].name!r} receives"
        )
        severity = Severity.CRITICAL if ratio > EXPLODE_CRITICAL else Severity.WARNING
        findings.append(
            Finding(
                Kind.EXPLODING_GRADIENT,
                severity,
                grown,
                text,
                cause,
                remedies,
                {"ratio": ratio, "per_layer": per_layer},
            )
        )
    findings.extend(_gradient_spikes(evidence))
    return findings


def _gradient_spikes(evidence: Evidence) -> list[Finding]:
    series = evidence.grad_norm_series[np.isfinite(evidence.grad_norm_series)]
    if len(series) < 20:
        return []
    median = float(np.median(series))
    peak_index = int(np.argmax(series))
    if median <= 0 or series[peak_index] < 100 * median:
        return []
    text = (
        f"the total gradient norm reached {_fmt(float(series[peak_index]))}, "
        f"{series[peak_index] / median:.0f}x its median, at row {peak_index} of the run"
    )
    return [Finding(Kind.EXPLODING_GRADIENT, Severity.WARNING, [], text,
                    "a few batches produce huge gradients (a steep region of the loss)",
                    [catalog.clipping(), catalog.lower_learning_rate()],
                    {"spike": float(series[peak_index] / median)})]  # fmt: skip


def rule_saturation(evidence: Evidence) -> list[Finding]:
    """Saturating activations whose outputs sit in their flat tails."""
    hit = [
        layer
        for layer in evidence.layers
        if math.isfinite(layer.saturated) and layer.saturated >= SATURATED_WARNING
    ]
    if not hit:
        return []
    worst = max(hit, key=lambda layer: layer.saturated)
    text = (
        f"{len(hit)} layer(s) have at least {SATURATED_WARNING:.0%} of their {worst.activation} "
        f"outputs saturated (slope below 5% of its maximum); worst: layer {worst.name!r} with "
        f"{worst.saturated:.0%}"
    )
    trend = _grew(evidence.saturation_trend)
    if trend:
        text += f"; {trend}"
    severity = Severity.CRITICAL if worst.saturated >= SATURATED_CRITICAL else Severity.WARNING
    remedies = [
        catalog.non_saturating_activation(worst.activation),
        recommended_init(worst.activation, evidence.depth >= 10),
        catalog.batch_norm(),
    ]
    cause = "pre-activations too large for the activation: weights or inputs too big, or drifting"
    hit_names = [layer.name for layer in hit]
    return [Finding(Kind.SATURATED_ACTIVATIONS, severity, hit_names, text, cause, remedies,
                    {"worst": worst.saturated})]  # fmt: skip


def rule_dead_units(evidence: Evidence) -> list[Finding]:
    """ReLU-family units that output zero for every sample of the batch."""
    if evidence.batch_size is not None and evidence.batch_size < MIN_DEAD_BATCH:
        return []
    hit = [layer for layer in evidence.layers if math.isfinite(layer.dead) and layer.dead >= DEAD_WARNING]
    if not hit:
        return []
    worst = max(hit, key=lambda layer: layer.dead)
    text = (
        f"{len(hit)} layer(s) have at least {DEAD_WARNING:.0%} dead units (zero for the whole "
        f"batch); worst: layer {worst.name!r} with {worst.dead:.0%}"
    )
    trend = _grew(evidence.dead_trend)
    if trend:
        text += f"; {trend}"
    severity = Severity.CRITICAL if worst.dead >= DEAD_CRITICAL else Severity.WARNING
    remedies = [
        catalog.leaky_activation(),
        catalog.he_init(),
        catalog.lower_learning_rate(),
        catalog.batch_norm(),
    ]
    cause = (
        "units pushed to negative pre-activations for every input (large updates, bias drift or a bad init)"
    )
    return [Finding(Kind.DEAD_UNITS, severity, [layer.name for layer in hit], text, cause, remedies,
                    {"worst": worst.dead})]  # fmt: skip


def _grew(trend: dict[str, tuple[float, float]]) -> str:
    grown = [(name, a, b) for name, (a, b) in trend.items() if b - a >= 0.2]
    if not grown:
        return ""
    name, a, b = max(grown, key=lambda t: t[2] - t[1])
    return f"it grew during training (layer {name!r}: {a:.0%} -> {b:.0%})"


def rule_init_mismatch(evidence: Evidence) -> list[Finding]:
    """Initial weight scale that does not suit the activation after the layer, where it shows."""
    ratio, _ = signal_ratio(evidence)
    mismatched = gain_mismatches(evidence)
    if len(mismatched) < MISMATCH_LAYERS or MISMATCH_SIGNAL <= ratio <= 1 / MISMATCH_SIGNAL:
        return []
    activation = dominant_activation(evidence)
    band = GAIN_BAND.get(activation or "", (math.nan, math.nan))
    gain = float(np.median([layer.gain for layer in mismatched]))
    text = (
        f"{len(mismatched)} layers start with gain std*sqrt(fan_in) = {gain:.2f}; "
        f"{activation} needs {band[0]:.2f}..{band[1]:.2f}; the signal ratio first/last is {_fmt(ratio)}"
    )
    cause = (
        "weights too small for the activation: each layer shrinks the signal"
        if gain < band[0]
        else "weights too large for the activation: each layer amplifies (or saturates) the signal"
    )
    remedies = [recommended_init(activation, evidence.depth >= 10), catalog.batch_norm()]
    return [Finding(Kind.INIT_MISMATCH, Severity.WARNING, [layer.name for layer in mismatched], text, cause,
                    remedies, {"gain": gain})]  # fmt: skip


def rule_missing_normalization(evidence: Evidence, found: list[Finding]) -> list[Finding]:
    """A deep plain stack without normalization whose signal already degrades."""
    troubled = {Kind.VANISHING_GRADIENT, Kind.EXPLODING_GRADIENT, Kind.SATURATED_ACTIVATIONS} & {
        f.kind for f in found
    }
    if evidence.normalized or evidence.depth < 6 or not troubled or evidence.recurrent:
        return []
    layers = [layer.name for layer in evidence.layers if layer.weight]
    text = (
        f"{evidence.depth} Linear/Conv layers in a row with no BatchNorm, LayerNorm or GroupNorm, "
        f"and {', '.join(sorted(troubled))} already shows"
    )
    cause = "nothing re-scales the signal between layers, so each layer's drift compounds"
    return [
        Finding(
            Kind.MISSING_NORMALIZATION,
            Severity.WARNING,
            layers,
            text,
            cause,
            [catalog.batch_norm(), catalog.layer_norm()],
            {"depth": float(evidence.depth)},
        )
    ]


def rule_too_deep(evidence: Evidence, found: list[Finding]) -> list[Finding]:
    """The signal reaches only the top of a deep plain stack: a shallower model would do as well."""
    vanishing = next((f for f in found if f.kind == Kind.VANISHING_GRADIENT), None)
    _, layers = signal_ratio(evidence)
    if vanishing is None or evidence.normalized or evidence.depth < 8:
        return []
    last = layers[-1].signal
    reach = sum(1 for layer in layers if layer.signal >= VANISH_WARNING * last)
    if reach * 2 > len(layers):
        return []
    unreached = [layer.name for layer in layers if layer.signal < VANISH_WARNING * last]
    text = f"the signal stays above 1e-3 of the last layer's in only the top {reach} of {len(layers)} layers"
    cause = "the layers below that depth barely change: they add cost and noise, not capacity"
    remedies = [catalog.shallower(max(reach, 2)), catalog.residual()]
    return [Finding(Kind.TOO_DEEP, Severity.WARNING, unreached, text, cause, remedies,
                    {"reach": float(reach), "depth": float(len(layers))})]  # fmt: skip


def rule_stalled(evidence: Evidence) -> list[Finding]:
    """Layers whose updates are negligible next to the others' (needs a monitored run)."""
    ratios = [(layer, layer.update_ratio) for layer in evidence.layers if math.isfinite(layer.update_ratio)]
    if len(ratios) < 2:
        return []
    top = max(r for _, r in ratios)
    stalled = [layer for layer, r in ratios if r < STALLED_ABSOLUTE and r < STALLED_RELATIVE * top]
    if not stalled:
        return []
    text = (
        f"{len(stalled)} layer(s) change by less than {STALLED_ABSOLUTE:g} of their weights per "
        f"update while another changes by {_fmt(top)}; e.g. layer {stalled[0].name!r}: "
        f"{_fmt(stalled[0].update_ratio)}"
    )
    _, remedies = _vanishing_cause(evidence)
    return [Finding(Kind.STALLED_LAYERS, Severity.WARNING, [layer.name for layer in stalled], text,
                    "these layers receive (almost) no gradient, so they do not learn",
                    remedies, {"top": top})]  # fmt: skip


def rule_non_finite(evidence: Evidence) -> list[Finding]:
    """NaN or Inf in the loss, gradients or activations."""
    if not evidence.non_finite:
        return []
    first = min(evidence.non_finite, key=lambda e: e.step)
    same_step = sorted({e.metric for e in evidence.non_finite if e.step == first.step})
    text = (
        f"at step {first.step}, {', '.join(same_step)} became NaN/Inf; first at {first.layer!r}; "
        f"{len(evidence.non_finite)} event(s) in all"
    )
    cause = (
        "values overflowed: a learning rate too large, an exploding gradient, or a bad operation (log 0, 0/0)"
    )
    remedies = [catalog.lower_learning_rate(), catalog.clipping(), catalog.he_init()]
    return [
        Finding(
            Kind.NON_FINITE,
            Severity.CRITICAL,
            [first.layer],
            text,
            cause,
            remedies,
            {"step": float(first.step)},
        )
    ]


def rule_denormal(evidence: Evidence) -> list[Finding]:
    """Many subnormal floats on CPU: every operation on them is many times slower."""
    if not evidence.on_cpu or evidence.flush_denormal or evidence.subnormal_fraction < SUBNORMAL_WARNING:
        return []
    text = (
        f"{evidence.subnormal_fraction:.1%} of the gradient values are subnormal floats "
        f"(below 1.2e-38 in float32); on CPU each operation on them can be 10-100x slower"
    )
    cause = (
        "the vanishing signal has reached the subnormal range; call torch.set_flush_denormal(True) "
        "to flush them to zero at once, and treat the vanishing gradient"
    )
    _, remedies = _vanishing_cause(evidence)
    return [Finding(Kind.DENORMAL_SLOWDOWN, Severity.WARNING, [], text, cause, remedies,
                    {"subnormal_fraction": evidence.subnormal_fraction})]  # fmt: skip


def rule_precision_underflow(evidence: Evidence) -> list[Finding]:
    """Gradient values too small for the low-precision dtype of a mixed-precision run.

    Example:
        >>> from gradmedic.diagnosis.evidence import Evidence, LayerEvidence
        >>> layers = [LayerEvidence("0", "Linear", underflow=0.6), LayerEvidence("1", "Linear")]
        >>> found = rule_precision_underflow(Evidence(layers, low_precision="float16"))
        >>> [(f.kind, f.severity.label, f.layers) for f in found]
        [('precision_underflow', 'critical', ['0'])]
    """
    hit = [layer for layer in evidence.layers if layer.underflow >= UNDERFLOW_WARNING]  # NaN: not measured
    if not hit:
        return []
    worst = max(hit, key=lambda layer: layer.underflow)
    severity = Severity.CRITICAL if worst.underflow >= UNDERFLOW_CRITICAL else Severity.WARNING
    dtype = evidence.low_precision or "float16"
    tiny = 1.2e-38 if dtype == "bfloat16" else 6.1e-5
    text = (
        f"in {len(hit)} layer(s), {UNDERFLOW_WARNING:.0%} or more of the non-zero gradient values are "
        f"below {dtype}'s smallest normal number ({tiny:.1e}), where they lose precision or become 0; "
        f"worst: layer {worst.name!r}, {worst.underflow:.0%}"
    )
    if dtype == "bfloat16":  # float32's exponent range: the gradient itself has vanished
        cause = "the gradient itself has vanished below 1e-38 (bfloat16 has float32's range)"
        remedies = _vanishing_cause(evidence)[1]
    else:
        cause = (
            f"the gradients are smaller than {dtype} can hold: without loss scaling (or with a scale "
            "too small) the backward pass rounds them to subnormals or to zero"
        )
        remedies = [catalog.loss_scaling(), catalog.bfloat16()]
    return [Finding(Kind.PRECISION_UNDERFLOW, severity, [layer.name for layer in hit], text, cause,
                    remedies, {"worst": worst.underflow})]  # fmt: skip


def rule_plateau(evidence: Evidence) -> list[Finding]:
    """The loss stopped improving early (needs a monitored run)."""
    loss = evidence.loss[np.isfinite(evidence.loss)]
    if len(loss) < PLATEAU_STEPS:
        return []
    tenth = max(len(loss) // 10, 1)
    early, late = float(np.mean(loss[:tenth])), float(np.mean(loss[-tenth:]))
    if early == 0 or (early - late) / abs(early) >= PLATEAU_GAIN:
        return []
    text = f"over {len(loss)} logged steps the loss went from {early:.4g} to {late:.4g} (less than 1% better)"
    _, remedies = _vanishing_cause(evidence)
    return [Finding(Kind.LOSS_PLATEAU, Severity.WARNING, [], text,
                    "the gradient that reaches the weights is too small (or too noisy) to make progress",
                    [catalog.adaptive_optimizer(), *[r for r in remedies if r.family != "optimizer"]],
                    {"early": early, "late": late})]  # fmt: skip


def rule_through_time(evidence: Evidence) -> list[Finding]:
    """Per recurrent layer: the backprop signal through time vanishes or explodes; else an info
    finding that says how far back it reaches (the memory horizon).

    Example:
        >>> import numpy as np
        >>> from gradmedic.diagnosis.evidence import TimeEvidence
        >>> rnn = TimeEvidence("rnn", "RNN", 0.85 ** np.arange(150), 150)
        >>> finding = rule_through_time(Evidence([], time=[rnn]))[0]
        >>> finding.kind, finding.severity.label
        ('vanishing_through_time', 'warning')
        >>> for part in finding.evidence.split("; "):
        ...     print(part)
        the signal falls x0.85 per step
        after 43 steps it is below 1e-3 of its value at the last step
        the sequence has 150 steps
        at the first step it is 3.0e-11 of it
    """
    return [finding for layer in evidence.time for finding in _through_time(layer)]


def _through_time(layer: TimeEvidence) -> list[Finding]:
    values = span(layer.profile)
    if len(values) < 2 or not values[0] > 0:
        return []
    ratio, peak = float(values[-1] / values[0]), float(np.nanmax(values) / values[0])
    numbers = {"horizon": float(layer.horizon), "length": float(layer.length), "decay": layer.decay,
               "reach": ratio, "gate_mean": layer.gate_mean,
               "gate_saturated": layer.gate_saturated}  # fmt: skip
    sequence = f"the sequence has {layer.length} steps" + (
        f" (the last {layer.steps} recorded)" if layer.steps < layer.length else ""
    )
    if peak > TIME_EXPLODE_WARNING:
        return [_exploding_through_time(layer, peak, sequence, numbers)]
    if ratio < TIME_VANISH_WARNING:
        return [_vanishing_through_time(layer, ratio, sequence, numbers)]
    text = (
        f"the signal stays above {_HORIZON} of its value at the last step for {layer.horizon} "
        f"steps back; {sequence}; at the first step it is {_fmt(ratio)} of it (x{layer.decay:.2f} per step)"
    )
    cause = "how far back a loss at the end of the sequence still teaches the layer (its memory horizon)"
    return [Finding(Kind.MEMORY_HORIZON, Severity.INFO, [layer.name], text, cause, [], numbers)]


def _vanishing_through_time(layer: TimeEvidence, ratio: float, sequence: str,
                            numbers: dict[str, float]) -> Finding:  # fmt: skip
    text = (
        f"the signal falls x{layer.decay:.2f} per step; after {layer.horizon} steps it is below "
        f"{_HORIZON} of its value at the last step; {sequence}; at the first step it is "
        f"{_fmt(ratio)} of it"
    )
    if layer.gated:
        gate = "update" if layer.type.startswith("GRU") else "forget"
        cause = (
            f"the {gate} gates average {layer.gate_mean:.2f} ({layer.gate_saturated:.0%} saturated): "
            f"each step keeps about that share of the state, and of its gradient, too little for "
            f"{layer.length} steps"
            if math.isfinite(layer.gate_mean)
            else f"the {gate} gates let the state, and its gradient, fade at every step"
        )
        first = catalog.forget_gate_bias(layer.length)
    else:
        cause = (
            "a vanilla RNN multiplies the gradient by the recurrent weights and the activation's slope "
            f"at every step; their product is below 1 (x{layer.decay:.2f}), so it shrinks geometrically"
        )
        first = catalog.gated_recurrent()
    remedies = [first, catalog.recurrent_init(), catalog.clipping(), catalog.layer_norm(),
                catalog.adaptive_optimizer()]  # fmt: skip
    critical = ratio == 0 or layer.horizon < TIME_CRITICAL_SHARE * min(layer.length, layer.steps)
    severity = Severity.CRITICAL if critical else Severity.WARNING
    return Finding(Kind.VANISHING_THROUGH_TIME, severity, [layer.name], text, cause, remedies, numbers)


def _exploding_through_time(layer: TimeEvidence, peak: float, sequence: str,
                            numbers: dict[str, float]) -> Finding:  # fmt: skip
    text = (
        f"the signal grows x{layer.decay:.2f} per step back and reaches {_fmt(peak)} times its value "
        f"at the last step; {sequence}"
    )
    cause = (
        "the recurrent weights amplify the signal at every step (their largest singular value times "
        "the activation's slope is above 1): the oldest steps dominate each update of the shared weights"
    )
    remedies = [catalog.clipping(), catalog.recurrent_init(), catalog.lower_learning_rate(),
                catalog.layer_norm()]  # fmt: skip
    if not layer.gated:
        remedies.append(catalog.gated_recurrent())
    severity = Severity.CRITICAL if peak > TIME_EXPLODE_CRITICAL else Severity.WARNING
    return Finding(Kind.EXPLODING_THROUGH_TIME, severity, [layer.name], text, cause, remedies,
                   {**numbers, "peak": peak})  # fmt: skip


RULES: list[Callable[[Evidence], list[Finding]]] = [
    rule_non_finite, rule_vanishing, rule_exploding, rule_saturation, rule_dead_units,
    rule_init_mismatch, rule_stalled, rule_denormal, rule_plateau, rule_precision_underflow,
    rule_through_time,
]  # fmt: skip
STRUCTURAL_RULES: list[Callable[[Evidence, list[Finding]], list[Finding]]] = [
    rule_missing_normalization, rule_too_deep,
]  # fmt: skip


def run_rules(evidence: Evidence) -> list[Finding]:
    """Every rule on ``evidence``; findings sorted by severity (most severe first)."""
    found = [finding for rule in RULES for finding in rule(evidence)]
    found += [finding for rule in STRUCTURAL_RULES for finding in rule(evidence, found)]
    return sorted(found, key=lambda f: -f.severity)


#: Weight of the worst dead fraction in the health score. Units that are dead on one batch at
#: initialization mostly come back once training moves the biases (in the lab, ReLU stacks with
#: 20-60% dead units at init trained as well as their peers); where they do not, the backprop
#: signal has collapsed too, which the signal factor already counts.
DEAD_WEIGHT = 0.25
#: Through-time factor, in decades of the signal's fall from the last step to the first: 1 up to
#: the first number, 0 from the second. A vanilla RNN's factor is strict (its per-step Jacobian is
#: fixed by the recurrent weights and the tanh's slope: in the lab, none whose signal fell more
#: than 1e-4 across the sequence learned the adding problem); a gated cell (LSTM/GRU) learns to
#: open its forget/update gates, so its signal at initialization understates its reach (in the
#: lab, LSTMs and GRUs whose signal fell by 1e-10 still learned it): its scale is twice as wide.
TIME_DECADES_VANILLA = (2.0, 5.0)
TIME_DECADES_GATED = (10.0, 20.0)


def health_score(evidence: Evidence) -> float:
    """A score in [0, 1] meant to predict whether the model trains as it is.

    It multiplies one factor per symptom: the signal ratio on a log scale (1 within 1e-2..1e2,
    0 beyond 1e-8 or 1e8), the worst saturated fraction (``1 - 0.9 * saturated``), the worst dead
    fraction (``1 - DEAD_WEIGHT * dead``), the worst recurrent layer's signal through time (see
    :data:`TIME_DECADES_VANILLA` and :data:`TIME_DECADES_GATED`; any step above 1e3 times the
    last step's signal lowers it too, to 0 at 1e6), and 0 for non-finite values. ``gradmedic lab``
    measures how well it predicts trainability (the ROC AUC in its report).
    """
    if evidence.non_finite:
        return 0.0
    ratio, _ = signal_ratio(evidence)
    decades = abs(math.log10(ratio)) if ratio > 0 else 99.0
    score = min(max((8 - decades) / 6, 0.0), 1.0)
    saturated = [layer.saturated for layer in evidence.layers if math.isfinite(layer.saturated)]
    dead = [layer.dead for layer in evidence.layers if math.isfinite(layer.dead)]
    score *= 1 - 0.9 * max(saturated, default=0.0)
    score *= 1 - DEAD_WEIGHT * max(dead, default=0.0)
    score *= min((_time_factor(layer) for layer in evidence.time), default=1.0)
    return float(score)


def _time_factor(layer: TimeEvidence) -> float:
    """1 for a healthy signal through time, falling on a log scale to 0 (see :func:`health_score`)."""
    values = span(layer.profile)
    if len(values) < 2 or not values[0] > 0:
        return 1.0
    ratio, peak = values[-1] / values[0], np.nanmax(values) / values[0]
    below = -math.log10(ratio) if ratio > 0 else 99.0
    above = math.log10(peak) if math.isfinite(peak) else 99.0
    fine, hopeless = TIME_DECADES_GATED if layer.gated else TIME_DECADES_VANILLA
    vanish = (hopeless - below) / (hopeless - fine)
    explode = (6 - above) / 3  # 1 at the warning (1e3), 0 at the critical 1e6
    return float(min(max(min(vanish, explode), 0.0), 1.0))
