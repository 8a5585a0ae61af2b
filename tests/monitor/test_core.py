"""The training monitor: its numbers against plain autograd, and how it behaves around a training loop."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradmedic
from gradmedic.errors import ConfigError, ModelError, UnsupportedError
from gradmedic.hooks import count_module_hooks
from gradmedic.monitor import ALL_STATS, DEFAULT_OPTIONS
from gradmedic.schedules import DenseStart
from models import (
    ZOO,
    Case,
    assert_matches_reference,
    frozen,
    inplace_dropout,
    mlp,
    monitored_step,
    nan_gradient,
    recurrent,
    reference,
    swapped,
    transformer,
    unused,
)


def _names(history: gradmedic.History) -> list[str]:
    return [layer.name for layer in history.layers]


def _row(history: gradmedic.History, metric: str, row: int = -1) -> dict[str, float]:
    columns = history.params if metric == "param_grad_norm" else _names(history)
    return dict(zip(columns, history.array(metric)[1][row].tolist()))


# -- 1. every statistic equals plain autograd ------------------------------------------------


@pytest.mark.parametrize("name", list(ZOO))
def test_every_statistic_equals_plain_autograd(name):
    case = ZOO[name]()
    expected = reference(case)
    history = monitored_step(case)
    assert_matches_reference(history, expected)
    assert history.non_finite == []  # NaN where nothing was observed is not an overflow


@settings(max_examples=15, deadline=None)
@given(
    depth=st.integers(1, 5),
    width=st.integers(1, 7),
    act=st.sampled_from(
        [nn.Tanh, nn.Sigmoid, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Softsign, nn.Hardsigmoid, nn.GELU, nn.ELU]
    ),
    batch=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
def test_random_mlp_equals_plain_autograd(depth, width, act, batch, seed):
    torch.manual_seed(seed)
    case = mlp(depth=depth, width=width, act=act, batch=batch)
    with torch.no_grad():  # scale the weights up so that saturating units show up
        for p in case.model.parameters():
            p.mul_(3.0)
    assert_matches_reference(monitored_step(case, seed=seed), reference(case, seed=seed))


def test_saturated_and_dead_fractions_are_not_trivial():
    """The zoo exercises the fractions with values strictly between 0 and 1."""
    case = mlp(depth=4, width=16, act=nn.Sigmoid, batch=32)
    with torch.no_grad():
        case.model[0].weight.mul_(6.0)
    expected = reference(case)
    history = monitored_step(case)
    assert_matches_reference(history, expected)
    assert 0.05 < _row(history, "act_saturated")["1"] < 0.95
    case = mlp(depth=4, width=16, act=nn.ReLU, batch=4)
    with torch.no_grad():
        case.model[2].bias.sub_(0.2)
    expected = reference(case)
    history = monitored_step(case)
    assert_matches_reference(history, expected)
    assert 0.05 < _row(history, "act_dead")["3"] < 0.95


def test_signal_rms_divides_by_the_size_of_the_output():
    case = mlp(depth=2, width=6, batch=5)
    history = monitored_step(case)
    norm, rms = _row(history, "signal_norm"), _row(history, "signal_rms")
    assert rms["0"] == pytest.approx(norm["0"] / math.sqrt(5 * 6), rel=1e-6)
    assert rms["2"] == pytest.approx(norm["2"] / math.sqrt(5 * 3), rel=1e-6)


def test_inplace_relu_linear_reports_the_gradient_before_the_relu():
    case = inplace_dropout()
    expected = reference(case)
    history = monitored_step(case)
    assert_matches_reference(history, expected)
    signal = _row(history, "signal_norm")
    # the ReLU passes on only the gradient of its positive units: before it, the norm is smaller
    assert signal["0"] < signal["1"] and signal["3"] < signal["4"]
    assert _row(history, "act_dead")["1"] == pytest.approx(expected.values["act_dead"][1])


def test_module_called_three_times_sums_its_calls():
    case = ZOO["shared"]()
    expected = reference(case)
    history = monitored_step(case)
    assert_matches_reference(history, expected)
    # one call only would give a smaller norm and a third of the elements
    block = _names(history).index("block")
    assert expected.values["signal_rms"][block] == pytest.approx(
        expected.values["signal_norm"][block] / math.sqrt(3 * 8 * 6)
    )


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_tuple_outputs_count_every_output_that_gets_a_gradient(kind):
    """(out, h_n) or (out, (h_n, c_n)): the signal covers the outputs the loss depends on."""
    with_state = recurrent(kind, use_state=True)
    out_only = copy.deepcopy(with_state)
    out_only.model.use_state = False
    n_out = 4 * 6 * 5  # batch x time x hidden
    n_state = 2 * 4 * 5 * (2 if kind == "LSTM" else 1)  # layers x batch x hidden, for h (and c)
    for case, n_elements in ((with_state, n_out + n_state), (out_only, n_out)):
        expected = reference(case)
        history = monitored_step(case)
        assert_matches_reference(history, expected)
        norm, rms = _row(history, "signal_norm")["rnn"], _row(history, "signal_rms")["rnn"]
        assert (norm / rms) ** 2 == pytest.approx(n_elements, rel=1e-5)


def test_transformer_out_proj_weight_gradient_without_signal():
    case = transformer()
    expected = reference(case)
    history = monitored_step(case)
    assert_matches_reference(history, expected)
    name = "encoder.layers.0.self_attn.out_proj"
    layer = history.layers[_names(history).index(name)]
    assert layer.type == "NonDynamicallyQuantizableLinear" and layer.forward_index == -1
    assert math.isnan(_row(history, "signal_norm")[name])
    grad = _row(history, "weight_grad_norm")[name]
    assert np.isfinite(grad) and grad > 0
    assert _row(history, "param_grad_norm")[f"{name}.weight"] > 0
    attention = "encoder.layers.1.self_attn"
    assert _row(history, "signal_norm")[attention] > 0  # the tuple (output, None) of attention
    assert _row(history, "act_mean")["encoder.layers.1.activation"] == pytest.approx(
        expected.values["act_mean"][_names(history).index("encoder.layers.1.activation")], abs=1e-6
    )


def test_frozen_parameters_are_not_observed_and_raise_no_event():
    case = frozen()
    optimizer = torch.optim.SGD([p for p in case.model.parameters() if p.requires_grad], lr=0.1)
    with gradmedic.watch(case.model, optimizer, **ALL_STATS) as monitor:
        for _ in range(2):
            optimizer.zero_grad()
            loss = case.loss()
            loss.backward()
            monitor.step(loss)
            optimizer.step()
    history = monitor.history
    assert history.non_finite == []
    params, layers = _row(history, "param_grad_norm"), _row(history, "weight_grad_norm")
    assert all(math.isnan(params[p]) for p in ("0.weight", "0.bias", "4.weight", "4.bias"))
    assert all(params[p] > 0 for p in ("2.weight", "2.bias", "6.weight", "6.bias"))
    assert math.isnan(layers["0"]) and math.isnan(layers["4"]) and layers["2"] > 0
    signal = _row(history, "signal_norm")
    assert math.isnan(signal["0"])  # nothing upstream needs a gradient: the first layer has none
    assert signal["4"] > 0  # a frozen middle layer still passes the signal on
    ratio = _row(history, "update_ratio")
    assert math.isnan(ratio["0"]) and math.isnan(ratio["4"]) and ratio["2"] > 0


def test_parameters_without_gradient_are_nan_not_events():
    case = unused()
    history = monitored_step(case)
    assert history.non_finite == []
    params = _row(history, "param_grad_norm")
    assert math.isnan(params["spare.weight"]) and math.isnan(params["skip.bias"])
    assert params["a.weight"] > 0
    assert math.isnan(_row(history, "signal_norm")["spare"])
    assert math.isnan(_row(history, "act_mean")["skip"])
    case.model.use_skip = True  # now the branch is taken
    expected = reference(case)
    history = monitored_step(case)
    assert_matches_reference(history, expected)
    assert _row(history, "param_grad_norm")["skip.bias"] > 0


def test_layers_and_forward_order():
    case = swapped()
    history = monitored_step(case)
    assert [(layer.name, layer.type, layer.kind) for layer in history.layers] == [
        ("late", "Linear", "param"),
        ("act", "Tanh", "activation"),
        ("early", "Linear", "param"),
    ]
    assert [layer.forward_index for layer in history.layers] == [2, 1, 0]
    assert history.forward_order() == [2, 1, 0]
    assert history.layers[0].params == ["late.weight", "late.bias"]
    assert history.params == ["late.weight", "late.bias", "early.weight", "early.bias"]


# -- update ratio ----------------------------------------------------------------------------


def _ratio_row(model: nn.Module, layers, before: dict[str, torch.Tensor]) -> list[float]:
    params = dict(model.named_parameters())
    row = []
    for layer in layers:
        names = [n for n in layer.params if params[n].requires_grad]
        if not names:
            row.append(math.nan)
            continue
        delta = sum((params[n].detach().double() - before[n].double()).pow(2).sum().item() for n in names)
        weight = sum(before[n].double().pow(2).sum().item() for n in names)
        row.append(math.sqrt(delta / weight))
    return row


def _step_expecting_ratio(case, monitor, optimizer) -> list[float]:
    """One training step closed by ``monitor.step``; the update ratio per layer computed by hand."""
    optimizer.zero_grad()
    loss = case.loss()
    loss.backward()
    monitor.step(loss)
    before = {n: p.detach().clone() for n, p in case.model.named_parameters()}
    optimizer.step()
    return _ratio_row(case.model, monitor.layers, before)


@pytest.mark.parametrize("with_optimizer", [True, False], ids=["optimizer", "step-only"])
@pytest.mark.parametrize("name", ["mlp_tanh", "cnn_bn", "frozen", "lstm"])
def test_update_ratio_equals_relative_weight_change(name, with_optimizer):
    case = ZOO[name]()
    model = case.model
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    monitor = gradmedic.watch(model, optimizer if with_optimizer else None, **ALL_STATS)
    expected = [_step_expecting_ratio(case, monitor, optimizer) for _ in range(3)]
    if not with_optimizer:  # the update after step s is measured at the next step(), labelled s
        assert monitor.history.array("update_ratio")[0].tolist() == [0, 1]
        optimizer.zero_grad()
        case.loss().backward()
        monitor.step()
    monitor.detach()
    steps, values = monitor.history.array("update_ratio")
    assert steps.tolist() == [0, 1, 2]
    np.testing.assert_allclose(values, np.array(expected), rtol=1e-4, equal_nan=True)
    assert np.nanmin(values) > 0


def test_update_ratio_of_all_zero_weights_is_nan_without_event():
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    nn.init.zeros_(model[2].weight)
    nn.init.zeros_(model[2].bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradmedic.watch(model, optimizer, **ALL_STATS) as monitor:
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
    ratio = _row(monitor.history, "update_ratio")
    assert math.isnan(ratio["2"]) and ratio["0"] >= 0
    assert monitor.history.non_finite == []


# -- the loss ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["step-before-optimizer", "step-after-optimizer", "no-optimizer"])
def test_loss_recorded_once_per_step(order):
    """Regression: with an optimizer, step(loss) after optimizer.step() recorded each loss twice."""
    case = mlp()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.1)
    watched = None if order == "no-optimizer" else optimizer
    losses = []
    with gradmedic.watch(case.model, watched, gradients_every=1) as monitor:
        for _ in range(4):
            optimizer.zero_grad()
            loss = case.loss()
            loss.backward()
            if order != "step-after-optimizer":
                monitor.step(loss)
            optimizer.step()
            if order == "step-after-optimizer":
                monitor.step(loss)
            losses.append(loss.item())
    steps, values = monitor.history.array("loss")
    assert steps.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(values[:, 0], losses, rtol=1e-7)
    assert monitor.history.array("signal_norm")[0].tolist() == [0, 1, 2, 3]


def test_loss_after_optimizer_step_with_flush_every_step():
    case = mlp()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.1)
    with gradmedic.watch(case.model, optimizer, flush_every=1) as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            loss = case.loss()
            loss.backward()
            optimizer.step()
            monitor.step(loss.item())  # a Python float is fine too
    steps, values = monitor.history.array("loss")
    assert steps.tolist() == [0, 1, 2]
    assert np.isfinite(values).all()


# -- 2. observing changes nothing -------------------------------------------------------------


def _train(name: str, optimizer_name: str, watched: str, steps: int = 4, options: dict | None = None):
    torch.manual_seed(0)
    case = ZOO[name]()
    model = case.model
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer_name == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(params, lr=0.01)
    monitor = None
    if watched != "plain":
        given = optimizer if watched == "optimizer" else None
        monitor = gradmedic.watch(model, given, **(ALL_STATS if options is None else options))
    torch.manual_seed(1)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = case.loss()
        loss.backward()
        if monitor is not None:
            monitor.step(loss)
        optimizer.step()
        losses.append(loss.detach().clone())
    if monitor is not None:
        monitor.detach()
        history = monitor.history
        assert history.array("signal_norm")[0].tolist() == list(range(steps))
    if monitor is not None and options is None:
        assert history.array("act_mean")[0].tolist() == list(range(steps))
        assert len(history.array("update_ratio")[0]) >= steps - 1
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    return losses, state


@pytest.mark.parametrize("watched", ["optimizer", "step-only"])
@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
@pytest.mark.parametrize("name", ["mlp_tanh", "cnn_bn", "lstm", "inplace_dropout", "transformer"])
def test_observing_changes_nothing(name, optimizer_name, watched):
    plain_losses, plain_state = _train(name, optimizer_name, "plain")
    losses, state = _train(name, optimizer_name, watched)
    assert all(torch.equal(a, b) for a, b in zip(losses, plain_losses)), (losses, plain_losses)
    assert state.keys() == plain_state.keys()
    for key in state:
        assert torch.equal(state[key], plain_state[key]), key
    assert not torch.equal(plain_losses[0], plain_losses[-1])  # it did train


@pytest.mark.parametrize("name", ["mlp_tanh", "cnn_bn", "lstm"])
def test_observing_with_the_default_options_changes_nothing(name):
    """12 steps: activation modules hooked and unhooked, the weights copied on steps 0 and 10."""
    plain_losses, plain_state = _train(name, "adam", "plain", steps=12)
    losses, state = _train(name, "adam", "optimizer", steps=12, options={})
    assert all(torch.equal(a, b) for a, b in zip(losses, plain_losses))
    assert all(torch.equal(state[key], plain_state[key]) for key in state)


# -- 4. bad input gets a clear error -----------------------------------------------------------


@pytest.mark.parametrize("model", [object(), "model", torch.randn(3), nn.Linear])
def test_not_a_module_is_a_model_error(model):
    with pytest.raises(ModelError) as info:
        gradmedic.watch(model)
    message = str(info.value)
    assert "expected a torch.nn.Module" in message and "pass the model itself" in message
    assert isinstance(info.value, TypeError)


def test_model_with_nothing_to_observe_is_a_model_error():
    with pytest.raises(ModelError, match="no parameters and no activation module"):
        gradmedic.watch(nn.Sequential(nn.Identity(), nn.Flatten()))


@pytest.mark.parametrize(
    "option", ["gradients_every", "activations_every", "updates_every", "through_time_every"]
)
@pytest.mark.parametrize("value", [0, -3])
def test_schedule_of_zero_or_less_is_a_config_error(option, value):
    with pytest.raises(ConfigError) as info:
        gradmedic.watch(nn.Linear(2, 2), **{option: value})
    message = str(info.value)
    assert f"{option}={value}" in message
    assert "positive step interval" in message and "None to turn" in message


@pytest.mark.parametrize(("option", "value"), [("flush_every", 0), ("max_rows", -1), ("flush_every", 2.5)])
def test_non_positive_sizes_are_config_errors(option, value):
    with pytest.raises(ConfigError, match=f"{option}={value!r}: give a positive integer"):
        gradmedic.watch(nn.Linear(2, 2), **{option: value})


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("evry", "gradients_every"),
        ("activation_every", "activations_every"),
        ("times_every", "through_time_every"),
        ("log_pth", "log_path"),
        ("max_row", "max_rows"),
    ],
)
def test_unknown_option_suggests_the_known_one(typo, suggestion):
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError) as info:
        gradmedic.watch(model, **{typo: 1})
    message = str(info.value)
    assert f"unknown option {typo!r}" in message
    assert f"did you mean {suggestion!r}?" in message
    assert all(name in message for name in DEFAULT_OPTIONS)
    assert count_module_hooks(model) == 0


def test_unknown_option_without_close_match_lists_the_options():
    with pytest.raises(ConfigError) as info:
        gradmedic.watch(nn.Linear(2, 2), colour="red")
    assert "did you mean" not in str(info.value) and "known options: gradients_every" in str(info.value)


def test_optimizer_of_another_model_is_a_config_error():
    model, other = nn.Linear(2, 2), nn.Linear(2, 2)
    optimizer = torch.optim.Adam(other.parameters())
    with pytest.raises(ConfigError) as info:
        gradmedic.watch(model, optimizer)
    message = str(info.value)
    assert "Adam given does not own any parameter of Linear" in message
    assert "model.parameters()" in message
    assert count_module_hooks(model) == 0 and len(optimizer._optimizer_step_pre_hooks) == 0


def test_optimizer_that_is_not_an_optimizer_is_a_config_error():
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match=r"optimizer must be a torch\.optim\.Optimizer, got list"):
        gradmedic.watch(model, list(model.parameters()))


def test_step_on_a_detached_monitor_is_a_config_error():
    model = nn.Linear(2, 2)
    monitor = gradmedic.watch(model)
    monitor.detach()
    with pytest.raises(ConfigError) as info:
        monitor.step(1.0)
    assert "this monitor is detached" in str(info.value)
    assert "call attach() or use it as a context manager" in str(info.value)


def test_errors_are_one_family():
    for error in (ConfigError, ModelError, UnsupportedError):
        assert issubclass(error, gradmedic.GradmedicError)


# -- 6. torch.compile (more in test_compile.py) ------------------------------------------------

_COMPILE_BACKEND = "aot_eager"  # dynamo decides what happens to hooks; inductor takes ~30 s here


def _dynamo_or_skip() -> None:
    try:
        import torch._dynamo as dynamo
    except ImportError as error:  # pragma: no cover - depends on the torch build
        pytest.skip(f"torch._dynamo cannot be imported: {error}")
    if not dynamo.is_dynamo_supported():  # pragma: no cover
        pytest.skip("torch.compile is not supported on this Python/torch")
    dynamo.reset()


def _history_of(case: Case, inputs: list[torch.Tensor], compiled: bool) -> gradmedic.History:
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.5)
    with gradmedic.watch(case.model, optimizer, **ALL_STATS) as monitor:
        forward = torch.compile(case.model, backend=_COMPILE_BACKEND) if compiled else case.model
        for x in inputs:
            optimizer.zero_grad()
            loss = case.loss_fn(forward(x))
            loss.backward()
            monitor.step(loss)
            optimizer.step()
    return monitor.history


def test_compile_after_watch_gives_the_eager_numbers_or_refuses():
    _dynamo_or_skip()
    case = mlp(depth=3, width=6, batch=8)
    eager_case = copy.deepcopy(case)
    inputs = [torch.randn(8, 5) for _ in range(3)]
    try:
        history = _history_of(case, inputs, compiled=True)
    except UnsupportedError as error:
        assert "torch.compile" in str(error)
        assert count_module_hooks(case.model) == 0
        return
    eager = _history_of(eager_case, inputs, compiled=False)
    for metric in eager.metrics:
        np.testing.assert_array_equal(history.array(metric)[0], eager.array(metric)[0], err_msg=metric)
        np.testing.assert_allclose(
            history.array(metric)[1],
            eager.array(metric)[1],
            rtol=1e-5,
            atol=1e-7,
            equal_nan=True,
            err_msg=metric,
        )
    assert np.isfinite(history.array("signal_norm")[1]).all()
    assert count_module_hooks(case.model) == 0


def test_hooks_refuse_to_run_inside_a_trace(monkeypatch):
    """What dynamo meets when it traces a watched model: an UnsupportedError, never stale numbers."""
    monkeypatch.setattr(gradmedic.monitor.probes, "_is_compiling", lambda: True)
    case = mlp()
    with pytest.raises(UnsupportedError) as info, gradmedic.watch(case.model):
        case.model(*case.inputs)
    assert "torch.compile" in str(info.value) and "Watch the uncompiled model" in str(info.value)
    assert count_module_hooks(case.model) == 0


def test_compile_before_watch_gives_the_eager_numbers_or_refuses():
    _dynamo_or_skip()
    case = mlp(depth=3, width=6, batch=8)
    compiled = torch.compile(case.model, backend=_COMPILE_BACKEND)
    compiled(torch.randn(8, 5)).sum().backward()
    expected = reference(Case(case.model, case.inputs, case.loss_fn))
    try:
        with gradmedic.watch(case.model, **ALL_STATS) as monitor:
            case.model.zero_grad()
            loss = case.loss_fn(compiled(*case.inputs))
            loss.backward()
            monitor.step(loss)
    except UnsupportedError:
        return
    history = monitor.history
    # never a wrong number: what is recorded equals plain autograd ...
    for metric in ("signal_norm", "param_grad_norm", "weight_grad_norm"):
        actual, wanted = history.array(metric)[1][-1], expected.values[metric]
        seen = ~np.isnan(actual)
        np.testing.assert_allclose(actual[seen], wanted[seen], rtol=1e-4)
    # ... but the backprop signal must not go missing silently
    assert np.isfinite(history.array("signal_norm")[1]).all()


# -- 7. non-finite values ----------------------------------------------------------------------


def _events(history: gradmedic.History) -> dict[str, tuple[int, str]]:
    events = {}
    for event in history.non_finite:
        assert event.metric not in events, f"two events for {event.metric} at one step"
        events[event.metric] = (event.step, event.layer)
    return events


def _steps(case: Case, monitor: gradmedic.Monitor, n: int, before_step=None) -> None:
    for step in range(n):
        if before_step is not None:
            before_step(step)
        case.model.zero_grad()
        loss = case.loss()
        loss.backward()
        monitor.step(loss)


def test_inf_weight_names_the_layer_in_forward_order_and_closest_to_output():
    case = mlp(depth=3, width=6)  # "0" Linear, "1" Tanh, "2" Linear, "3" Tanh, "4" Linear

    def poison(step: int) -> None:
        if step == 1:
            with torch.no_grad():
                case.model[2].weight.fill_(math.inf)

    with gradmedic.watch(case.model, **ALL_STATS) as monitor:
        _steps(case, monitor, 2, poison)
    events = _events(monitor.history)
    assert events == {
        "act_mean": (1, "2"),  # the first layer whose output is not finite, going forward
        "act_std": (1, "2"),
        "signal_norm": (1, "4"),  # the first one going backward: all gradients are NaN
        "signal_rms": (1, "4"),
        "weight_grad_norm": (1, "4"),
        "param_grad_norm": (1, "4.weight"),
        "loss": (1, "loss"),
    }


def test_inf_weight_in_a_model_registered_out_of_call_order():
    case = swapped()  # modules registered late, act, early; called early, act, late
    with torch.no_grad():
        case.model.early.weight.fill_(math.inf)
    with gradmedic.watch(case.model, **ALL_STATS) as monitor:
        _steps(case, monitor, 1)
    events = _events(monitor.history)
    assert events["act_mean"] == (0, "early")
    assert events["signal_norm"] == (0, "late")
    assert events["param_grad_norm"] == (0, "late.weight")


def test_nan_gradient_names_the_layer_where_the_backward_pass_broke():
    case = nan_gradient()  # "0" Linear, "1" Tanh, (NaN gradient), "3" Linear, "4" Tanh, "5" Linear
    with gradmedic.watch(case.model, **ALL_STATS) as monitor:
        _steps(case, monitor, 2)
    events = [(e.step, e.metric, e.layer) for e in monitor.history.non_finite]
    for step in (0, 1):
        assert (step, "signal_norm", "1") in events
        assert (step, "signal_rms", "1") in events
        assert (step, "weight_grad_norm", "0") in events
        assert (step, "param_grad_norm", "0.weight") in events
    assert {metric for _, metric, _ in events} == {
        "signal_norm",
        "signal_rms",
        "weight_grad_norm",
        "param_grad_norm",
    }
    signal = _row(monitor.history, "signal_norm")
    assert np.isfinite([signal["3"], signal["4"], signal["5"]]).all()
    assert math.isnan(signal["0"]) and math.isnan(signal["1"])


# -- 9. schedules and flushing -----------------------------------------------------------------


def _run(case: Case, n: int, optimizer: torch.optim.Optimizer | None = None, **options) -> gradmedic.History:
    sgd = optimizer or torch.optim.SGD(case.model.parameters(), lr=0.05)
    with gradmedic.watch(case.model, optimizer, **options) as monitor:
        for _ in range(n):
            sgd.zero_grad()
            loss = case.loss()
            loss.backward()
            monitor.step(loss)
            sgd.step()
    return monitor.history


@pytest.mark.parametrize("with_optimizer", [True, False], ids=["optimizer", "step-only"])
def test_monitor_records_exactly_the_scheduled_steps(with_optimizer):
    case = mlp()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.05) if with_optimizer else None
    history = _run(case, 10, optimizer, gradients_every=3, activations_every=2, updates_every=4)
    for metric in ("signal_norm", "signal_rms", "weight_grad_norm", "param_grad_norm", "loss"):
        assert history.array(metric)[0].tolist() == [0, 3, 6, 9], metric
    for metric in ("act_mean", "act_std", "act_saturated", "act_dead"):
        assert history.array(metric)[0].tolist() == [0, 2, 4, 6, 8], metric
    assert history.array("update_ratio")[0].tolist() == [0, 4, 8]
    # activation modules follow the activation schedule for their signal too
    signal = history.array("signal_norm")[1]
    activations = [i for i, layer in enumerate(history.layers) if layer.kind == "activation"]
    params = [i for i, layer in enumerate(history.layers) if layer.kind == "param"]
    assert np.isfinite(signal[[0, 2]][:, activations]).all()  # steps 0 and 6
    assert np.isnan(signal[[1, 3]][:, activations]).all()  # steps 3 and 9
    assert np.isfinite(signal[:, params]).all()


def test_log_and_callable_schedules_and_none():
    history = _run(
        mlp(), 12, gradients_every="log", activations_every=lambda s: s in (1, 4, 11), updates_every=None
    )
    assert history.array("signal_norm")[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 10]
    assert history.array("act_mean")[0].tolist() == [1, 4, 11]
    assert "update_ratio" not in history.metrics
    history = _run(mlp(), 3, gradients_every=None, activations_every=None, updates_every=None)
    assert history.metrics == []


def test_defaults_record_the_signal_densely_then_every_twenty_and_the_rest_more_sparsely():
    assert DEFAULT_OPTIONS["gradients_every"] == DenseStart(n=20, dense=50)
    assert DEFAULT_OPTIONS["activations_every"] == DEFAULT_OPTIONS["updates_every"] == 100
    assert DEFAULT_OPTIONS["through_time_every"] == 200  # the replay through time costs about a step
    assert ALL_STATS == {
        "gradients_every": 1,
        "activations_every": 1,
        "updates_every": 1,
        "through_time_every": 1,
    }
    case = mlp()
    history = _run(case, 130, torch.optim.SGD(case.model.parameters(), lr=0.05))
    assert history.array("signal_norm")[0].tolist() == [*range(50), 60, 80, 100, 120]
    assert history.array("act_mean")[0].tolist() == [0, 100]
    assert history.array("update_ratio")[0].tolist() == [0, 100]


@pytest.mark.parametrize("with_optimizer", [True, False], ids=["optimizer", "step-only"])
def test_values_stay_on_device_until_flush(with_optimizer):
    """flush_every counts steps (a step-only update ratio used to count as one more)."""
    case = mlp()
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.05)
    watched = optimizer if with_optimizer else None
    with gradmedic.watch(case.model, watched, **ALL_STATS, flush_every=4) as monitor:
        for step in range(6):
            optimizer.zero_grad()
            loss = case.loss()
            loss.backward()
            monitor.step(loss)
            optimizer.step()
            if step < 3:
                assert [r.step for r in monitor._pending] == list(range(step + 1))
                assert monitor._history.metrics == []  # nothing copied to the host yet
                assert isinstance(monitor._pending[-1].values["signal_norm"], torch.Tensor)
            elif step == 3:
                assert monitor._pending == []
                assert monitor._history.array("signal_norm")[0].tolist() == [0, 1, 2, 3]
        # step-only: the update ratio of step 3 is measured at step 4, after step 3 was flushed
        assert [r.step for r in monitor._pending] == ([4, 5] if with_optimizer else [3, 4, 5])
        assert monitor.history.array("signal_norm")[0].tolist() == list(range(6))  # reading flushes
        assert monitor._pending == []
        assert monitor.history.array("update_ratio")[0].tolist() == list(range(6 if with_optimizer else 5))
    assert monitor.step_index == 6
    assert "step 6, detached" in repr(monitor)


def test_no_grad_forward_is_not_observed():
    case = mlp()
    with gradmedic.watch(case.model, **ALL_STATS) as monitor:
        with torch.no_grad():
            case.model(*case.inputs)
        monitor.step()
        case.model.zero_grad()
        loss = case.loss()
        loss.backward()
        monitor.step(loss)
    assert monitor.history.array("act_mean")[0].tolist() == [1]
    assert monitor.history.array("signal_norm")[0].tolist() == [0, 1]
    assert np.isnan(monitor.history.array("signal_norm")[1][0]).all()


class _Prompt(nn.Module):
    """Returns its parameter as is: the layer's output is a leaf tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(-1.0, 1.0, 6).reshape(2, 3))

    def forward(self) -> torch.Tensor:
        return self.weight


class _Prompted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.prompt = _Prompt()
        self.head = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(x + self.prompt().sum(0)))


def test_layer_returning_a_parameter_is_hooked_once_per_step_and_unhooked():
    """Regression: each forward added a tensor hook to the parameter that was never removed, so
    step k counted the signal k times, and the hooks outlived detach()."""
    model = _Prompted()
    case = Case(model, (torch.randn(4, 3),), lambda out: out.pow(2).mean())
    monitor = gradmedic.Monitor(model, **ALL_STATS)
    for _ in range(3):
        expected = reference(case)  # while detached, or the monitor would see this pass too
        with monitor:
            model.zero_grad()
            loss = case.loss()
            loss.backward()
            monitor.step(loss)
            assert not model.prompt.weight._backward_hooks  # removed when the step closed
        assert_matches_reference(monitor.history, expected)
        with torch.no_grad():
            model.prompt.weight.mul_(1.5)
    np.testing.assert_allclose(
        monitor.history.array("signal_norm")[1][:, 0],
        monitor.history.array("param_grad_norm")[1][:, 0],
        rtol=1e-6,  # two float32 norm kernels
    )
    assert not model.prompt.weight._backward_hooks


# -- 10. what a step costs: hooks only where needed, buffers reused -----------------------------


def test_activation_modules_are_hooked_only_on_the_steps_that_observe_them():
    case = mlp(depth=3)  # "0" Linear, "1" Tanh, "2" Linear, "3" Tanh, "4" Linear
    optimizer = torch.optim.SGD(case.model.parameters(), lr=0.05)
    counts = []
    with gradmedic.watch(case.model, optimizer, activations_every=3) as monitor:
        for _ in range(4):
            counts.append(count_module_hooks(case.model))
            optimizer.zero_grad()
            case.loss().backward()
            optimizer.step()
        assert count_module_hooks(case.model) == 3  # step 4 does not observe them
    assert counts == [5, 3, 3, 5] and count_module_hooks(case.model) == 0
    assert monitor.history.array("act_mean")[0].tolist() == [0, 3]
    signal = monitor.history.array("signal_norm")[1]
    assert np.isfinite(signal[[0, 3]]).all() and np.isnan(signal[[1, 2]][:, [1, 3]]).all()


def test_activation_modules_get_their_forward_order_without_activation_statistics():
    case = swapped()  # "late" Linear, "act" Tanh, "early" Linear; called early, act, late
    with gradmedic.watch(case.model, activations_every=None) as monitor:
        for _ in range(2):
            case.model.zero_grad()
            case.loss().backward()
            monitor.step()
        assert count_module_hooks(case.model) == 2  # seen once at step 0: no hook from step 1 on
    assert [layer.forward_index for layer in monitor.history.layers] == [2, 1, 0]
    assert "act_mean" not in monitor.history.metrics


@pytest.mark.parametrize("with_optimizer", [True, False], ids=["optimizer", "step-only"])
def test_update_ratio_follows_parameters_frozen_or_thawed_between_steps(with_optimizer):
    case = mlp(depth=3)
    model = case.model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = []
    with gradmedic.watch(model, optimizer if with_optimizer else None, updates_every=1) as monitor:
        for step in range(4):
            model[2].weight.requires_grad_(step % 2 == 0)  # the copy of the weights changes layout
            expected.append(_step_expecting_ratio(case, monitor, optimizer))
        if not with_optimizer:  # the update of the last step is measured at the next step()
            case.loss().backward()
            monitor.step()
    steps, values = monitor.history.array("update_ratio")
    assert steps.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(values, np.array(expected), rtol=1e-4, equal_nan=True)


def test_batches_of_different_sizes_each_get_their_own_rms():
    case = mlp(depth=2, width=6)
    monitor = gradmedic.watch(case.model, **ALL_STATS)
    for batch in (5, 9, 5, 2):
        x, target = torch.randn(batch, 5), torch.randn(batch, 3)
        resized = Case(case.model, (x,), lambda out, target=target: (out - target).pow(2).mean())
        monitor.detach()
        expected = reference(resized)
        monitor.attach()
        case.model.zero_grad()
        loss = resized.loss()
        loss.backward()
        monitor.step(loss)
        assert_matches_reference(monitor.history, expected)
    monitor.detach()
