"""Mixed precision: gradients recorded unscaled under a GradScaler, steps it skips left out, the
precision_underflow statistic against a float16 cast, its rule; no host sync on unrecorded GPU steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradmedic
from gradmedic import stats
from gradmedic.diagnosis import rules
from gradmedic.diagnosis.evidence import Evidence, LayerEvidence

GRAD_METRICS = ("signal_norm", "signal_rms", "weight_grad_norm", "param_grad_norm")
TINY16 = torch.finfo(torch.float16).tiny


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    return [(torch.randn(32, 6, generator=gen), torch.randn(32, 3, generator=gen)) for _ in range(n)]


def _run(
    mode: str,
    steps: int = 3,
    loss_factor: float = 1.0,
    autocast: torch.dtype | None = None,
    scale: float = 2.0**12,
    **options,
) -> gradmedic.Monitor:
    """Train with the scaler used the way ``mode`` says; without one for ``mode="plain"``."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale, growth_interval=10**6) if mode != "plain" else None
    given = opt if mode != "no-optimizer" else None
    with gradmedic.watch(
        model, given, scaler=scaler, updates_every=1, activations_every=1, **options
    ) as monitor:
        for x, y in _batches(steps):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                loss = nn.functional.mse_loss(model(x).float(), y) * loss_factor
            if scaler is None:
                loss.backward()
                opt.step()
            elif mode == "no-optimizer":
                scaler.scale(loss).backward()
                monitor.step(loss)  # right after backward: the gradients are still scaled
                scaler.step(opt)
                scaler.update()
                continue
            else:
                scaler.scale(loss).backward()
                if mode == "unscale-then-clip":
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), 1e9)
                scaler.step(opt)
                scaler.update()
            monitor.step(loss)
    return monitor


@pytest.mark.parametrize("mode", ["scaler-step", "unscale-then-clip", "no-optimizer"])
def test_gradient_norms_are_recorded_unscaled(mode):
    plain = _run("plain").history
    scaled = _run(mode).history
    for metric in GRAD_METRICS:
        np.testing.assert_allclose(
            scaled.array(metric)[1], plain.array(metric)[1], rtol=1e-5, equal_nan=True, err_msg=metric
        )
    ratios, expected = scaled.array("update_ratio")[1], plain.array("update_ratio")[1]
    assert len(ratios) >= 2  # without an optimizer, the last update is measured at no later step
    np.testing.assert_allclose(ratios, expected[: len(ratios)], rtol=1e-4, equal_nan=True)


def test_steps_the_scaler_skips_are_left_out():
    """A scale so large that the gradients overflow: the scaler skips that step; it is no NaN event."""
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, backoff_factor=2.0**-100)
    batches = _batches(4)
    with gradmedic.watch(model, opt, scaler=scaler) as monitor:
        for x, y in batches:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y) * 4  # times 2**127: inf
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            monitor.step(loss)
    history = monitor.history
    assert history.meta["scaler_skipped_steps"] == 1
    assert history.non_finite == []  # the overflow was the scaler's, handled by it
    assert len(history.array("signal_norm")[0]) == len(batches) - 1
    assert not np.isinf(history.array("signal_norm")[1]).any()
    assert "non_finite" not in monitor.diagnose().kinds


def _reference_underflow(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, factor: float
) -> dict[str, float]:
    """Per Linear: cast its fp32 weight gradients to float16 and count zeros and subnormals."""
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = nn.functional.mse_loss(model(x).float(), y) * factor
    loss.backward()
    out = {}
    for name, module in model.named_children():
        grads = (
            torch.cat([p.grad.reshape(-1) for p in module.parameters()])
            if list(module.parameters())
            else None
        )
        if grads is None:
            continue
        nonzero = grads[grads != 0]
        half = nonzero.to(torch.float16)
        lost = (half == 0) | (half.abs() < TINY16)
        out[name] = lost.float().mean().item()
    model.zero_grad()
    return out


def test_underflow_fraction_matches_a_float16_cast_and_is_diagnosed():
    factor = 1e-5  # gradients around 1e-6: float16 holds them as subnormals or zero
    monitor = _run("plain", steps=1, loss_factor=factor, autocast=torch.float16)
    history = monitor.history
    assert history.meta["low_precision"] == "float16"
    x, y = _batches(1)[0]
    expected = _reference_underflow(_mlp(), x, y, factor)
    got = dict(zip([layer.name for layer in history.layers], history.array("grad_underflow")[1][0]))
    assert set(expected) == {name for name, v in got.items() if np.isfinite(v)}
    for name, fraction in expected.items():
        assert got[name] == pytest.approx(fraction, abs=0.01), name
    assert max(expected.values()) > 0.5
    finding = monitor.diagnose().get("precision_underflow")
    assert finding is not None and finding.severity.label == "critical"
    assert [r.family for r in finding.remedies] == ["precision", "precision"]
    assert "GradScaler" in finding.remedies[0].code


def test_loss_scaling_removes_the_underflow():
    scaled = _run("scaler-step", steps=1, loss_factor=1e-5, autocast=torch.float16, scale=2.0**16)
    values = scaled.history.array("grad_underflow")[1]
    assert np.nanmax(values) < rules.UNDERFLOW_WARNING
    assert "precision_underflow" not in scaled.diagnose().kinds


def test_bfloat16_autocast_is_recorded_without_underflow():
    monitor = _run("plain", steps=2, autocast=torch.bfloat16)
    history = monitor.history
    assert history.meta["low_precision"] == "bfloat16"
    assert np.nanmax(history.array("grad_underflow")[1]) == 0.0
    assert np.isfinite(history.array("signal_norm")[1]).all()
    assert "precision_underflow" not in monitor.diagnose().kinds


def test_full_precision_records_no_underflow_statistic():
    assert "grad_underflow" not in _run("plain", steps=1).history.metrics


def test_underflow_counts_against_a_float16_cast():
    gen = torch.Generator().manual_seed(0)
    values = (
        torch.exp(torch.empty(10_000).uniform_(-25, 2, generator=gen))
        * torch.randn(10_000, generator=gen).sign()
    )
    values[::50] = 0.0
    under, nonzero = stats.underflow_counts([values], TINY16)
    half = values[values != 0].to(torch.float16)
    reference = ((half == 0) | (half.abs() < TINY16)).sum().item()
    assert nonzero.item() == (values != 0).sum().item()
    assert abs(under.item() - reference) <= 5  # values a rounding step below 6.1e-5 round up to it


def test_precision_rule_thresholds_and_remedies():
    def found(fraction: float, dtype: str = "float16"):
        layers = [
            LayerEvidence("0", "Linear", underflow=fraction),
            LayerEvidence("1", "Linear", underflow=0.0),
        ]
        return rules.rule_precision_underflow(Evidence(layers, low_precision=dtype))

    assert found(rules.UNDERFLOW_WARNING * 0.9) == []
    assert found(rules.UNDERFLOW_WARNING)[0].severity.label == "warning"
    assert found(rules.UNDERFLOW_CRITICAL)[0].severity.label == "critical"
    assert found(0.2)[0].layers == ["0"]
    assert "bfloat16" in found(0.2)[0].remedies[1].name
    assert found(0.2, "bfloat16")[0].remedies[0].family != "precision"  # bf16 has fp32's range
    assert found(float("nan")) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_synchronisation_on_unrecorded_steps():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda")
    x, y = torch.randn(64, 32, device="cuda"), torch.randn(64, 4, device="cuda")
    monitor = gradmedic.watch(
        model, opt, scaler=scaler, gradients_every=4, activations_every=8, updates_every=8, flush_every=64
    )
    for step in range(12):
        recorded = step % 4 == 0
        if not recorded:
            torch.cuda.set_sync_debug_mode("error")
        try:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16):
                loss = nn.functional.mse_loss(model(x).float(), y)
            scaler.scale(loss).backward()
            opt.step()  # not scaler.step: its inf check synchronises by design
            monitor.step(loss)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    monitor.detach()
    assert monitor.history.array("signal_norm")[0].tolist() == [0, 4, 8]
