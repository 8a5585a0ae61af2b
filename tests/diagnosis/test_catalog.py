"""Unit tests of :mod:`gradmedic.diagnosis.catalog`: every remedy's code is code a user can run,
and it does what the remedy says (checked against the definitions: variances, orthogonality,
norms, gate biases)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

import gradmedic
from gradmedic.diagnosis import catalog
from gradmedic.diagnosis.findings import Remedy


def run(code: str, **names: Any) -> dict[str, Any]:
    """Execute a remedy's code with torch, nn, gradmedic and ``names`` defined; return the names."""
    space: dict[str, Any] = {"torch": torch, "nn": nn, "gradmedic": gradmedic, **names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CUDA-only helpers on a CPU machine
        exec(compile(code, "<remedy>", "exec"), space)
    return space


def evaluate(code: str, **names: Any) -> Any:
    return eval(code.split("#")[0], {"torch": torch, "nn": nn, **names})


def every_remedy() -> list[Remedy]:
    return [
        catalog.non_saturating_activation("sigmoid"), catalog.leaky_activation(), catalog.he_init(),
        catalog.xavier_or_orthogonal_init(False), catalog.xavier_or_orthogonal_init(True),
        catalog.lecun_init(), catalog.batch_norm(), catalog.residual(), catalog.clipping(),
        catalog.gated_recurrent(), catalog.adaptive_optimizer(), catalog.lower_learning_rate(),
        catalog.layer_norm(), catalog.shallower(3), catalog.loss_scaling(), catalog.bfloat16(),
        catalog.forget_gate_bias(50), catalog.recurrent_init(),
    ]  # fmt: skip


@pytest.mark.parametrize("remedy", every_remedy(), ids=lambda r: r.name)
def test_every_remedy_has_a_name_a_reason_and_code_that_compiles(remedy: Remedy) -> None:
    assert remedy.name and remedy.why and remedy.code
    compile(remedy.code, "<remedy>", "exec")


def test_automatic_follows_the_families_treat_applies() -> None:
    import gradmedic.remedies  # noqa: F401 - fills AUTOMATIC_FAMILIES

    for remedy in every_remedy():
        assert remedy.automatic == (remedy.family in catalog.AUTOMATIC_FAMILIES)
    assert catalog.he_init().automatic  # treat re-initialises by itself


def test_activation_remedies_build_the_modules_they_name() -> None:
    assert type(evaluate(catalog.non_saturating_activation().code)) is nn.SiLU
    leaky = evaluate(catalog.leaky_activation().code)
    assert type(leaky) is nn.LeakyReLU and leaky.negative_slope == 0.01
    assert "instead of tanh" in catalog.non_saturating_activation("tanh").why
    assert "instead of" not in catalog.non_saturating_activation().why


def weight_after(code: str, fan_in: int = 400, fan_out: int = 300) -> torch.Tensor:
    layer = nn.Linear(fan_in, fan_out)
    run(code, layer=layer)
    return layer.weight.detach().double()


def test_he_init_gives_variance_two_over_fan_in_and_zero_bias() -> None:
    layer = nn.Linear(400, 300)
    run(catalog.he_init().code, layer=layer)
    assert layer.weight.double().var().item() == pytest.approx(2 / 400, rel=0.03)
    assert torch.count_nonzero(layer.bias) == 0


def test_xavier_init_gives_glorot_variance_with_the_tanh_gain() -> None:
    weight = weight_after(catalog.xavier_or_orthogonal_init(False, "tanh").code)
    assert weight.var().item() == pytest.approx((5 / 3) ** 2 * 2 / (400 + 300), rel=0.03)


def test_orthogonal_init_for_deep_stacks_is_orthogonal() -> None:
    weight = weight_after(catalog.xavier_or_orthogonal_init(True).code, fan_in=64, fan_out=64)
    torch.testing.assert_close(weight @ weight.T, torch.eye(64, dtype=torch.float64), atol=1e-5, rtol=0)


def test_lecun_init_gives_variance_one_over_fan_in() -> None:
    assert weight_after(catalog.lecun_init().code).var().item() == pytest.approx(1 / 400, rel=0.03)


def test_normalization_and_recurrent_remedies_build_their_modules() -> None:
    block = evaluate(catalog.batch_norm().code, n=8)
    assert [type(m) for m in block] == [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    assert type(evaluate(catalog.layer_norm().code, hidden_size=8)) is nn.LayerNorm
    lstm = evaluate(catalog.gated_recurrent().code, input_size=3, hidden_size=5)
    assert type(lstm) is nn.LSTM and lstm.batch_first


def test_residual_forward_adds_the_input() -> None:
    forward = run(catalog.residual().code)["forward"]

    class Block:
        alpha = 0.5

        @staticmethod
        def block(x: torch.Tensor) -> torch.Tensor:
            return 3 * x

    x = torch.randn(4)
    torch.testing.assert_close(forward(Block(), x), x + 1.5 * x)


@pytest.mark.parametrize("max_norm", [1.0, 0.25])
def test_clipping_bounds_the_total_gradient_norm(max_norm: float) -> None:
    model = nn.Linear(10, 10)
    (100 * model(torch.randn(4, 10))).pow(2).sum().backward()
    assert torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])) > max_norm
    run(catalog.clipping(max_norm).code, model=model)
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item()
    assert total == pytest.approx(max_norm, rel=1e-4)


def test_optimizer_remedies() -> None:
    model = nn.Linear(2, 2)
    opt = run("opt = " + catalog.adaptive_optimizer().code, model=model)["opt"]
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 1e-3
    run(catalog.lower_learning_rate().code, optimizer=opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_shallower_names_the_depth() -> None:
    remedy = catalog.shallower(5)
    assert "5" in remedy.name
    assert run(remedy.code, build_model=lambda depth: depth)["model"] == 5


def test_precision_remedies_run() -> None:
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.ones(2, 3)).sum()
    before = model.weight.detach().clone()
    run(catalog.loss_scaling().code, loss=loss, optimizer=optimizer)
    # one plain SGD step (scaled then unscaled where CUDA runs it; passed through on CPU)
    torch.testing.assert_close(model.weight, before - 0.1 * 2 * torch.ones(1, 3))
    space = run(
        catalog.bfloat16().code,
        model=model,
        loss_fn=nn.functional.mse_loss,
        x=torch.ones(2, 3),
        y=torch.zeros(2, 1),
    )
    assert torch.isfinite(space["loss"])


def test_forget_gate_bias_sets_the_forget_gate_and_names_the_length() -> None:
    model = nn.LSTM(3, 4)
    remedy = catalog.forget_gate_bias(50)
    assert "max_len=50" in remedy.code and "max_len=T" in catalog.forget_gate_bias().code
    run(remedy.code, model=model)
    # PyTorch's gate order is input, forget, cell, output: the forget rows of b_ih + b_hh sum to 1
    forget = (model.bias_ih_l0 + model.bias_hh_l0)[4:8]
    torch.testing.assert_close(forget, torch.ones(4))
    assert "73 %" in remedy.why and round(100 * torch.sigmoid(torch.tensor(1.0)).item()) == 73


def test_recurrent_init_makes_the_recurrent_weights_orthogonal() -> None:
    model = nn.RNN(3, 6)
    run(catalog.recurrent_init().code, model=model)
    w = model.weight_hh_l0.detach().double()
    torch.testing.assert_close(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-5, rtol=0)
