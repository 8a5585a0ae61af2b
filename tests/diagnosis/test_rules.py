"""The rules are pure functions of :class:`Evidence`: checked here on synthetic numbers, no model.

Every threshold is probed just above and just below its constant in ``gradmedic.diagnosis.rules``
(the constants are imported, not copied), so a changed threshold moves the tests with it.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradmedic.diagnosis import rules
from gradmedic.diagnosis.evidence import Evidence, LayerEvidence
from gradmedic.diagnosis.findings import Severity
from gradmedic.diagnosis.rules import (
    DEAD_CRITICAL,
    DEAD_WARNING,
    EXPLODE_CRITICAL,
    EXPLODE_WARNING,
    GAIN_BAND,
    MIN_DEAD_BATCH,
    MISMATCH_LAYERS,
    MISMATCH_SIGNAL,
    PLATEAU_GAIN,
    PLATEAU_STEPS,
    SATURATED_CRITICAL,
    SATURATED_WARNING,
    STALLED_ABSOLUTE,
    STALLED_RELATIVE,
    SUBNORMAL_WARNING,
    VANISH_CRITICAL,
    VANISH_WARNING,
    health_score,
    run_rules,
)
from gradmedic.history import NonFiniteEvent

UP, DOWN = 1 + 1e-6, 1 - 1e-6  # "just above" and "just below" a threshold


def chain(signals: list[float], **fields: object) -> Evidence:
    """Linear layers named '0', '2', '4'... in forward order, with the given backprop signals."""
    return Evidence([LayerEvidence(str(2 * i), "Linear", signal=s, **fields) for i, s in enumerate(signals)])


def two_layers(ratio: float, **fields: object) -> Evidence:
    """First layer receives ``ratio`` times the last layer's signal (exactly: the last is 1)."""
    return chain([ratio, 1.0], **fields)


def kinds(findings: list) -> list[str]:
    return [f.kind for f in findings]


def severity_of(findings: list, kind: str) -> Severity | None:
    found = [f for f in findings if f.kind == kind]
    assert len(found) <= 1, f"{kind} reported twice: {found}"
    return found[0].severity if found else None


# -- vanishing / exploding ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (1.0, None),
        (VANISH_WARNING * UP, None),
        (VANISH_WARNING, None),  # the rule fires strictly below the threshold
        (VANISH_WARNING * DOWN, Severity.WARNING),
        (VANISH_CRITICAL * UP, Severity.WARNING),
        (VANISH_CRITICAL * DOWN, Severity.CRITICAL),
    ],
)
def test_vanishing_thresholds(ratio: float, expected: Severity | None) -> None:
    found = rules.rule_vanishing(two_layers(ratio))
    assert severity_of(found, "vanishing_gradient") == expected
    if expected is not None:
        assert found[0].numbers["ratio"] == pytest.approx(ratio)
        assert found[0].layers == ["0"]


def test_vanishing_names_the_starved_layers_and_the_decay_per_layer() -> None:
    signals = [10.0 ** (i - 8) for i in range(9)]  # 1e-8 ... 1: x10 per layer
    (finding,) = rules.rule_vanishing(chain(signals))
    last = signals[-1]
    assert finding.layers == [str(2 * i) for i, s in enumerate(signals) if s < VANISH_WARNING * last]
    assert finding.layers == ["0", "2", "4", "6", "8"]
    assert finding.numbers["per_layer"] == pytest.approx(0.1)
    assert finding.numbers["starved"] == 5
    assert "'0'" in finding.evidence and "'16'" in finding.evidence


def test_layers_without_a_signal_are_ignored() -> None:
    """NaN (not observed) and zero signals do not count as the first or last layer."""
    evidence = chain([math.nan, 1e-9, 0.5, 1.0, math.nan])
    ratio, observed = rules.signal_ratio(evidence)
    assert ratio == pytest.approx(1e-9)
    assert [layer.name for layer in observed] == ["2", "4", "6"]
    lonely, observed = rules.signal_ratio(chain([math.nan, 1.0, 0.0]))
    assert lonely == 1.0 and [layer.name for layer in observed] == ["2"]  # one layer: no ratio
    assert run_rules(chain([math.nan, 1.0, 0.0])) == []


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (EXPLODE_WARNING, None),  # strictly above
        (EXPLODE_WARNING * DOWN, None),
        (EXPLODE_WARNING * UP, Severity.WARNING),
        (EXPLODE_CRITICAL * DOWN, Severity.WARNING),
        (EXPLODE_CRITICAL * UP, Severity.CRITICAL),
    ],
)
def test_exploding_thresholds(ratio: float, expected: Severity | None) -> None:
    found = rules.rule_exploding(two_layers(ratio))
    assert severity_of(found, "exploding_gradient") == expected
    if expected is not None:
        assert found[0].layers == ["0"]
        assert found[0].remedies[0].family == "clipping"


def test_gradient_spikes_during_training() -> None:
    calm = np.ones(40)
    spiky = calm.copy()
    spiky[30] = 1e4
    assert rules.rule_exploding(Evidence([], grad_norm_series=calm)) == []
    (finding,) = rules.rule_exploding(Evidence([], grad_norm_series=spiky))
    assert finding.kind == "exploding_gradient" and finding.severity == Severity.WARNING
    assert finding.numbers["spike"] == pytest.approx(1e4)
    assert "row 30" in finding.evidence
    assert finding.remedies[0].family == "clipping"
    mild = calm.copy()
    mild[30] = 10.0
    assert rules.rule_exploding(Evidence([], grad_norm_series=mild)) == []
    assert rules.rule_exploding(Evidence([], grad_norm_series=spiky[:10])) == []  # too short to judge


# -- saturation, dead units ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (math.nan, None),
        (SATURATED_WARNING * DOWN, None),
        (SATURATED_WARNING, Severity.WARNING),  # at the threshold: reported
        (SATURATED_CRITICAL * DOWN, Severity.WARNING),
        (SATURATED_CRITICAL, Severity.CRITICAL),
    ],
)
def test_saturation_thresholds(fraction: float, expected: Severity | None) -> None:
    evidence = Evidence(
        [
            LayerEvidence("0", "Linear", 1e-1, activation="sigmoid", saturated=0.0),
            LayerEvidence("2", "Linear", 1e-1, activation="sigmoid", saturated=fraction),
            LayerEvidence("4", "Linear", 1.0),
        ]
    )
    found = rules.rule_saturation(evidence)
    assert severity_of(found, "saturated_activations") == expected
    if expected is not None:
        assert found[0].layers == ["2"]
        assert found[0].numbers["worst"] == fraction
        assert found[0].remedies[0].family == "activation"


@pytest.mark.parametrize(
    ("fraction", "batch", "expected"),
    [
        (DEAD_WARNING * DOWN, 64, None),
        (DEAD_WARNING, 64, Severity.WARNING),
        (DEAD_CRITICAL * DOWN, 64, Severity.WARNING),
        (DEAD_CRITICAL, 64, Severity.CRITICAL),
        (1.0, MIN_DEAD_BATCH - 1, None),  # too small a batch: units look dead by chance
        (1.0, MIN_DEAD_BATCH, Severity.CRITICAL),
        (1.0, None, Severity.CRITICAL),  # batch size unknown (a monitored run)
    ],
)
def test_dead_unit_thresholds(fraction: float, batch: int | None, expected: Severity | None) -> None:
    evidence = Evidence(
        [
            LayerEvidence("0", "Linear", 0.5, activation="relu", dead=0.1),
            LayerEvidence("2", "Linear", 0.5, activation="relu", dead=fraction),
            LayerEvidence("4", "Linear", 1.0),
        ],
        batch_size=batch,
    )
    found = rules.rule_dead_units(evidence)
    assert severity_of(found, "dead_units") == expected
    if expected is not None:
        assert found[0].layers == ["2"]
        assert found[0].remedies[0].family == "activation"
        assert "Leaky" in found[0].remedies[0].name


def test_saturation_and_dead_units_mention_growth_during_training() -> None:
    evidence = Evidence(
        [LayerEvidence("0", "Linear", 1.0, activation="tanh", saturated=0.9)],
        saturation_trend={"0": (0.1, 0.9)},
    )
    (finding,) = rules.rule_saturation(evidence)
    assert "grew during training" in finding.evidence and "10% -> 90%" in finding.evidence


# -- initialisation ------------------------------------------------------------------------


def relu_stack(gain: float, n: int, ratio: float) -> Evidence:
    """``n`` ReLU layers with initial gain ``gain``; the first receives ``ratio`` of the last."""
    signals = np.geomspace(ratio, 1.0, n)
    return Evidence([LayerEvidence(str(2 * i), "Linear", float(s), activation="relu", gain=gain)
                     for i, s in enumerate(signals)])  # fmt: skip


@pytest.mark.parametrize(
    ("gain", "n", "ratio", "fires"),
    [
        (1.0, MISMATCH_LAYERS, MISMATCH_SIGNAL * DOWN, True),
        (1.0, MISMATCH_LAYERS - 1, MISMATCH_SIGNAL * DOWN, False),  # too few layers to compound
        (1.0, MISMATCH_LAYERS, MISMATCH_SIGNAL, False),  # the signal is still fine: it does not matter
        (1.0, MISMATCH_LAYERS, 1 / MISMATCH_SIGNAL, False),
        (1.0, MISMATCH_LAYERS, 1 / MISMATCH_SIGNAL * UP, True),
        (GAIN_BAND["relu"][0], MISMATCH_LAYERS, 1e-9, False),  # band edges are inside the band
        (GAIN_BAND["relu"][1], MISMATCH_LAYERS, 1e-9, False),
        (GAIN_BAND["relu"][0] * DOWN, MISMATCH_LAYERS, 1e-9, True),
        (GAIN_BAND["relu"][1] * UP, MISMATCH_LAYERS, 1e9, True),
    ],
)
def test_init_mismatch_thresholds(gain: float, n: int, ratio: float, fires: bool) -> None:
    found = rules.rule_init_mismatch(relu_stack(gain, n, ratio))
    assert bool(found) == fires
    if fires:
        (finding,) = found
        assert finding.kind == "init_mismatch" and finding.severity == Severity.WARNING
        assert len(finding.layers) == n
        assert finding.remedies[0].family == "init" and "Kaiming" in finding.remedies[0].name
        assert finding.numbers["gain"] == pytest.approx(gain)


@pytest.mark.parametrize(
    ("activation", "needle"),
    [
        ("relu", "kaiming"),
        ("gelu", "kaiming"),
        ("tanh", "orthogonal"),
        ("sigmoid", "orthogonal"),
        ("selu", "linear"),
    ],
)
def test_init_remedy_suits_the_activation(activation: str, needle: str) -> None:
    low = GAIN_BAND[activation][0] / 2
    evidence = Evidence([LayerEvidence(str(i), "Linear", 10.0 ** (i - 12), activation=activation, gain=low)
                         for i in range(12)])  # fmt: skip
    (finding,) = [f for f in run_rules(evidence) if f.kind == "init_mismatch"]
    assert finding.remedies[0].family == "init"
    assert needle in finding.remedies[0].code
    assert "too small" in finding.cause


# -- cause and remedy ranking of the vanishing gradient --------------------------------------


@pytest.mark.parametrize(
    ("activation", "gain", "first_family", "cause_word"),
    [
        ("sigmoid", 1.0, "activation", "saturating"),
        ("sigmoid", 0.5, "activation", "saturating"),  # sigmoid never keeps the signal: swap it first
        ("tanh", 1.0, "activation", "saturating"),
        ("tanh", 0.5, "init", "initialisation"),  # tanh with a bad init: fix the init first
        ("relu", 0.5, "init", "initialisation"),
        (None, math.nan, "normalization", "depth"),
    ],
)
def test_vanishing_cause_ranks_the_remedies(
    activation: str | None, gain: float, first_family: str, cause_word: str
) -> None:
    evidence = Evidence([LayerEvidence(str(i), "Linear", 10.0 ** (i - 12), activation=activation, gain=gain)
                         for i in range(13)])  # fmt: skip
    (finding,) = rules.rule_vanishing(evidence)
    assert finding.remedies[0].family == first_family
    assert cause_word in finding.cause
    assert len({r.code for r in finding.remedies}) == len(finding.remedies)  # no remedy twice


# -- structural rules ------------------------------------------------------------------------


def vanishing_stack(depth: int, reach: int, **options: object) -> Evidence:
    """``depth`` layers; only the top ``reach`` get at least VANISH_WARNING of the last one's signal."""
    signals = [VANISH_CRITICAL / 10] * (depth - reach) + [1.0] * reach
    return Evidence([LayerEvidence(str(2 * i), "Linear", s) for i, s in enumerate(signals)], **options)


def test_missing_normalization_needs_a_deep_plain_troubled_stack() -> None:
    deep = vanishing_stack(10, 3)
    (finding,) = [f for f in run_rules(deep) if f.kind == "missing_normalization"]
    assert finding.layers == [layer.name for layer in deep.layers]
    assert finding.remedies[0].family == "normalization"
    assert "vanishing_gradient" in finding.evidence
    assert "missing_normalization" not in kinds(run_rules(vanishing_stack(10, 3, normalized=True)))
    assert "missing_normalization" not in kinds(run_rules(vanishing_stack(10, 3, recurrent=["rnn"])))
    assert "missing_normalization" not in kinds(run_rules(vanishing_stack(2, 1)))  # shallow
    assert "missing_normalization" not in kinds(run_rules(chain([1.0] * 10)))  # no trouble


def test_too_deep_when_the_signal_reaches_half_the_stack_or_less() -> None:
    (finding,) = [f for f in run_rules(vanishing_stack(10, 5)) if f.kind == "too_deep"]
    assert finding.layers == ["0", "2", "4", "6", "8"]
    assert finding.numbers == {"reach": 5.0, "depth": 10.0}
    assert finding.remedies[0].family == "shallower" and "5" in finding.remedies[0].name
    assert "too_deep" not in kinds(run_rules(vanishing_stack(10, 6)))  # more than half reached
    assert "too_deep" not in kinds(run_rules(vanishing_stack(10, 5, normalized=True)))
    assert "too_deep" not in kinds(run_rules(vanishing_stack(4, 1)))  # shallow already
    assert "too_deep" not in kinds(run_rules(chain([1.0] * 10)))  # no vanishing


# -- monitored-run rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "top", "stalled"),
    [
        (STALLED_ABSOLUTE * DOWN, 1e-2, True),
        (STALLED_ABSOLUTE, 1e-2, False),  # strictly below the absolute floor
        (STALLED_ABSOLUTE / 2, STALLED_ABSOLUTE / 2 / STALLED_RELATIVE * UP, True),
        (STALLED_ABSOLUTE / 2, STALLED_ABSOLUTE / 2 / STALLED_RELATIVE * DOWN, False),  # nothing moves much
    ],
)
def test_stalled_thresholds(low: float, top: float, stalled: bool) -> None:
    evidence = Evidence(
        [
            LayerEvidence("0", "Linear", 1.0, update_ratio=low),
            LayerEvidence("2", "Linear", 1.0, update_ratio=math.nan),
            LayerEvidence("4", "Linear", 1.0, update_ratio=top),
        ]
    )
    found = rules.rule_stalled(evidence)
    assert bool(found) == stalled
    if stalled:
        assert found[0].kind == "stalled_layers" and found[0].layers == ["0"]
        assert found[0].numbers["top"] == top


@pytest.mark.parametrize(
    ("steps", "gain", "plateau"),
    [
        (PLATEAU_STEPS, PLATEAU_GAIN * DOWN, True),
        (PLATEAU_STEPS, PLATEAU_GAIN * UP, False),
        (PLATEAU_STEPS - 1, 0.0, False),  # too short a run to judge
        (PLATEAU_STEPS * 4, 0.0, True),
        (PLATEAU_STEPS * 4, -0.5, True),  # the loss got worse
    ],
)
def test_plateau_thresholds(steps: int, gain: float, plateau: bool) -> None:
    loss = np.full(steps, 2.0)
    tenth = max(steps // 10, 1)
    loss[-tenth:] = 2.0 * (1 - gain)
    loss = np.concatenate([loss, [np.nan]])  # a non-finite loss is skipped, not counted
    found = rules.rule_plateau(Evidence([], loss=loss))
    assert bool(found) == plateau
    if plateau:
        assert found[0].kind == "loss_plateau"
        assert found[0].remedies[0].family == "optimizer"
        assert found[0].numbers["early"] == pytest.approx(2.0)


def test_non_finite_names_the_first_event() -> None:
    events = [
        NonFiniteEvent(7, "loss", "loss"),
        NonFiniteEvent(3, "signal_rms", "head"),
        NonFiniteEvent(3, "act_mean", "fc2"),
    ]
    evidence = Evidence([LayerEvidence("fc2", "Linear", 1.0)], non_finite=events)
    (finding,) = rules.rule_non_finite(evidence)
    assert finding.severity == Severity.CRITICAL
    assert finding.layers == ["head"]  # the first event of the earliest step
    assert finding.numbers["step"] == 3
    assert "act_mean" in finding.evidence and "signal_rms" in finding.evidence
    assert finding.remedies[0].family == "optimizer" and "learning rate" in finding.remedies[0].name.lower()
    assert health_score(evidence) == 0.0
    assert run_rules(evidence)[0].kind == "non_finite"


@pytest.mark.parametrize(
    ("fraction", "flush", "on_cpu", "fires"),
    [
        (SUBNORMAL_WARNING, False, True, True),
        (SUBNORMAL_WARNING * DOWN, False, True, False),
        (0.5, True, True, False),  # flushed to zero already: no slowdown
        (0.5, False, False, False),  # GPUs flush subnormals
    ],
)
def test_denormal_thresholds(fraction: float, flush: bool, on_cpu: bool, fires: bool) -> None:
    evidence = two_layers(1e-30, activation="sigmoid")
    evidence.subnormal_fraction, evidence.flush_denormal, evidence.on_cpu = fraction, flush, on_cpu
    found = rules.rule_denormal(evidence)
    assert bool(found) == fires
    if fires:
        assert found[0].kind == "denormal_slowdown" and found[0].severity == Severity.WARNING
        assert "set_flush_denormal(True)" in found[0].cause
        assert found[0].numbers["subnormal_fraction"] == fraction


# -- all rules together ----------------------------------------------------------------------


def test_run_rules_is_pure_and_sorted_by_severity() -> None:
    evidence = vanishing_stack(12, 2)
    for layer in evidence.layers:
        layer.activation, layer.gain, layer.saturated = "tanh", 0.5, 0.5
    before = copy.deepcopy(evidence)
    found = run_rules(evidence)
    assert evidence.layers == before.layers  # the evidence is not touched
    assert (evidence.normalized, evidence.recurrent, evidence.non_finite) == (False, [], [])
    assert kinds(found) == kinds(run_rules(evidence))  # and the answer does not change
    severities = [f.severity for f in found]
    assert severities == sorted(severities, reverse=True)
    assert severities[0] == Severity.CRITICAL
    assert {"vanishing_gradient", "saturated_activations", "init_mismatch", "too_deep"} <= set(kinds(found))


def test_a_healthy_chain_has_no_finding_and_full_score() -> None:
    evidence = chain([0.5, 0.8, 1.0], activation="relu", gain=math.sqrt(2), dead=0.05)
    assert run_rules(evidence) == []
    assert health_score(evidence) == pytest.approx(1 - rules.DEAD_WEIGHT * 0.05)


# -- health score ------------------------------------------------------------------------------

decades = st.floats(min_value=0.0, max_value=30.0, allow_nan=False, allow_subnormal=False)
fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_subnormal=False)


@settings(max_examples=60, deadline=None)
@given(a=decades, b=decades, up=st.booleans())
def test_health_score_falls_as_the_ratio_worsens(a: float, b: float, up: bool) -> None:
    """A ratio farther from 1 (in decades, either way) never scores higher."""
    near, far = sorted([a, b])
    sign = 1 if up else -1
    score_near = health_score(two_layers(10.0 ** (sign * near)))
    score_far = health_score(two_layers(10.0 ** (sign * far)))
    assert 0.0 <= score_far <= score_near <= 1.0
    if near > 2.05 and far < 7.95 and far - near > 1e-3:  # strictly between "fine" and "hopeless"
        assert score_far < score_near


@settings(max_examples=40, deadline=None)
@given(s1=fractions, s2=fractions, dead=st.booleans())
def test_health_score_falls_with_saturated_or_dead_units(s1: float, s2: float, dead: bool) -> None:
    low, high = sorted([s1, s2])
    field = "dead" if dead else "saturated"
    score_low = health_score(two_layers(0.5, **{field: low}))
    score_high = health_score(two_layers(0.5, **{field: high}))
    assert 0.0 <= score_high <= score_low <= 1.0
    if high - low > 1e-6:
        assert score_high < score_low


def test_health_score_anchors() -> None:
    assert health_score(two_layers(1.0)) == 1.0
    assert health_score(two_layers(1e-2)) == 1.0
    assert health_score(two_layers(1e-8)) == pytest.approx(0.0)
    assert health_score(two_layers(1e-20)) == 0.0
    assert health_score(two_layers(1e-5)) == pytest.approx(0.5)
    assert health_score(Evidence([])) == 1.0
