"""Op layers: every statistic against plain autograd, the module twin's diagnosis, hooks and modes
removed after errors, training unchanged, and the bad inputs of issue 15."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradmedic
from gradmedic.errors import ConfigError, ModelError
from gradmedic.hooks import count_module_hooks
from gradmedic.monitor import ALL_STATS, Monitor
from gradmedic.op_layers import candidate_leaves
from op_models import (
    CharModel,
    ConvNet,
    EinsumAttention,
    LinearMLP,
    MatmulMLP,
    MixedNet,
    inputs_for,
    module_twin,
)

MODELS = [MatmulMLP, LinearMLP, EinsumAttention, ConvNet, CharModel, MixedNet]
EXPECTED = {
    MatmulMLP: ["W0", "W1", "W2"],
    LinearMLP: ["weights.0", "weights.1", "weights.2"],
    EinsumAttention: ["blocks.0.w_q", "blocks.0.w_k", "blocks.0.w_v", "blocks.0.w_o", "readout"],
    ConvNet: ["c1", "c2", "out"],
    CharModel: ["C", "W1", "W2"],
    MixedNet: ["W_in", "hidden", "W_out"],
}


def no_mode_left() -> bool:
    return torch._C._len_torch_function_stack() == 0


def loss_of(output: Tensor) -> Tensor:
    return F.cross_entropy(output, torch.arange(len(output)) % output.shape[1])


def leaves_of(model: nn.Module) -> dict[str, Tensor]:
    named = dict(model.named_parameters())
    named.update({leaf.name: leaf.tensor for leaf in candidate_leaves(model).values()})
    return named


def reference(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Each layer's output, its gradient retained, after a plain forward/backward pass."""
    keep: dict[str, Tensor] = {}
    for tensor in leaves_of(model).values():
        tensor.grad = None
    loss_of(model(x, keep)).backward()
    return keep


def monitored(model: nn.Module, x: Tensor, **options: object) -> gradmedic.history.History:
    for tensor in leaves_of(model).values():
        tensor.grad = None
    with Monitor(model, **{**ALL_STATS, **options}) as monitor:
        loss = loss_of(model(x))
        loss.backward()
        monitor.step(loss)
    return monitor.history


@pytest.mark.parametrize("make", MODELS, ids=lambda m: m.__name__)
def test_every_statistic_of_an_op_layer_equals_plain_autograd(make: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = make()
    x = inputs_for(model)
    keep = reference(model, x)
    expected_grads = {name: t.grad.clone() for name, t in leaves_of(model).items() if t.grad is not None}
    history = monitored(model, x)
    names = [layer.name for layer in history.layers]
    order = [names[i] for i in history.forward_order() if history.layers[i].kind == "param"]
    assert order == EXPECTED[make]
    for metric in ("signal_norm", "signal_rms", "weight_grad_norm", "act_mean", "act_std"):
        row = history.array(metric)[1][0]
        for name, out in keep.items():
            layer = history.layers[names.index(name)]
            if metric == "signal_norm":
                want = out.grad.norm().item()
            elif metric == "signal_rms":
                want = out.grad.norm().item() / math.sqrt(out.numel())
            elif metric == "weight_grad_norm":
                want = math.sqrt(sum(expected_grads[p].pow(2).sum().item() for p in layer.params))
            elif metric == "act_mean":
                want = out.detach().mean().item()
            else:
                want = out.detach().std(unbiased=False).item()
            assert row[names.index(name)] == pytest.approx(want, rel=1e-5, abs=1e-7), (metric, name)
    params = history.array("param_grad_norm")[1][0]
    for column, name in enumerate(history.params):
        assert params[column] == pytest.approx(expected_grads[name].norm().item(), rel=1e-5), name


def test_the_update_ratio_of_an_op_layer_equals_the_update_made() -> None:
    torch.manual_seed(1)
    model = MatmulMLP()
    x = inputs_for(model)
    before = {name: t.detach().clone() for name, t in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with gradmedic.watch(model, optimizer, **ALL_STATS) as monitor:
        optimizer.zero_grad()
        loss_of(model(x)).backward()
        optimizer.step()
    history = monitor.history
    row = history.array("update_ratio")[1][0]
    for column, layer in enumerate(history.layers):
        delta = sum(
            (dict(model.named_parameters())[p].detach() - before[p]).pow(2).sum() for p in layer.params
        )
        weight = sum(before[p].pow(2).sum() for p in layer.params)
        assert row[column] == pytest.approx(math.sqrt(delta / weight), rel=1e-5)


def test_a_layer_called_several_times_adds_its_calls_up_and_watch_keeps_its_layers_across_steps() -> None:
    torch.manual_seed(2)

    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.W_x = nn.Parameter(torch.randn(4, 8) / 2)
            self.W_h = nn.Parameter(torch.randn(8, 8) / 3)

        def forward(self, x: Tensor, keep: dict[str, list[Tensor]] | None = None) -> Tensor:
            h = torch.zeros(len(x), 8)
            for t in range(x.shape[1]):
                pre = h @ self.W_h
                if keep is not None:
                    pre.retain_grad()
                    keep.setdefault("W_h", []).append(pre)
                h = torch.tanh(x[:, t] @ self.W_x + pre)
            return h

    model = Recurrent()
    x = torch.randn(5, 3, 4)
    keep: dict[str, list[Tensor]] = {}
    model(x, keep).pow(2).mean().backward()
    want = math.sqrt(sum(t.grad.pow(2).sum().item() for t in keep["W_h"]))
    model.zero_grad()
    with gradmedic.watch(model, **ALL_STATS) as monitor:
        for _ in range(3):
            model.zero_grad()
            model(x).pow(2).mean().backward()
            monitor.step()
    history = monitor.history
    assert [layer.name for layer in history.layers] == ["W_h", "W_x"]  # h @ W_h comes first
    rows = history.array("signal_norm")[1]
    assert rows.shape == (3, 2)
    assert rows[0, 1] == pytest.approx(want, rel=1e-5)


def test_a_layer_whose_op_is_not_called_on_a_step_is_missing_for_that_step() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.A = nn.Parameter(torch.randn(3, 3))
            self.B = nn.Parameter(torch.randn(3, 3))

        def forward(self, x: Tensor, use_b: bool = True) -> Tensor:
            x = x @ self.A
            return x @ self.B if use_b else x

    model = Branchy()
    with gradmedic.watch(model, **ALL_STATS) as monitor:
        for use_b in (True, False):
            model(torch.randn(2, 3), use_b).sum().backward()
            monitor.step()
    rows = monitor.history.array("signal_norm")[1]
    assert np.isfinite(rows[0]).all()
    assert np.isfinite(rows[1, 0]) and np.isnan(rows[1, 1])


def summary(report: gradmedic.Report) -> tuple[bool, list[str], list[tuple[str, list[int]]]]:
    """A report with layer names replaced by positions, for comparing two spellings of a model."""
    names = [layer.name for layer in report.layers]
    findings = [(f.kind, sorted(names.index(n) for n in f.layers if n in names)) for f in report.findings]
    return report.healthy, [layer.type in ("Linear", "matmul") for layer in report.layers], findings


@pytest.mark.parametrize(
    ("activation", "gain", "verdict"),
    [
        ("sigmoid", 1.0, "vanishing_gradient"),
        ("tanh", 6.0, "saturated_activations"),
        ("relu", math.sqrt(2), None),
    ],
)
def test_the_diagnosis_is_the_same_as_for_the_module_written_twin(
    activation: str, gain: float, verdict: str | None
) -> None:
    torch.manual_seed(3)
    torch.set_flush_denormal(True)
    model = MatmulMLP((32,) + (32,) * 12 + (10,), activation=activation, gain=gain)
    twin = module_twin(model)
    x, y = torch.randn(128, 32), torch.randint(0, 10, (128,))
    functional, modular = gradmedic.checkup(model, x, y), gradmedic.checkup(twin, x, y)
    assert [layer.name for layer in functional.layers] == [f"W{i}" for i in range(13)]
    assert summary(functional) == summary(modular)
    kinds = [f.kind for f in functional.findings]
    assert (verdict in kinds) if verdict else functional.healthy
    assert [layer.activation for layer in functional.layers] == [layer.activation for layer in modular.layers]


def test_checkup_of_a_plain_function_leaves_its_tensors_as_found() -> None:
    torch.manual_seed(4)
    W1 = torch.randn(8, 16, requires_grad=True)
    W2 = torch.randn(16, 3, requires_grad=True)
    W2.grad = torch.ones(16, 3)
    values = (W1.detach().clone(), W2.detach().clone())

    def net(x: Tensor) -> Tensor:
        return torch.tanh(x @ W1) @ W2

    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    report = gradmedic.checkup(net, x, y, params={"W1": W1, "W2": W2})
    assert [layer.name for layer in report.layers] == ["W1", "W2"]
    assert report.layers[0].activation == "tanh"
    assert W1.grad is None and torch.equal(W2.grad, torch.ones(16, 3))
    assert torch.equal(W1, values[0]) and torch.equal(W2, values[1])
    keep_w1 = x @ W1
    keep_w1.retain_grad()
    F.cross_entropy(torch.tanh(keep_w1) @ W2, y).backward()
    assert report.layers[0].signal_rms == pytest.approx(
        keep_w1.grad.norm().item() / math.sqrt(keep_w1.numel()), rel=1e-5
    )


def test_a_plain_function_without_params_is_refused_with_advice() -> None:
    with pytest.raises(ModelError, match="params="):
        gradmedic.checkup(lambda x: x, torch.randn(2, 2))
    with pytest.raises(ConfigError, match="params\\['W'\\]"):
        gradmedic.checkup(lambda x: x, torch.randn(2, 2), params={"W": torch.randn(2, 2)})


class Exploding(nn.Module):
    """A bare-weight layer whose forward (or backward) raises when asked to."""

    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(3, 3))
        self.fail_forward = False

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(x @ self.W)
        if self.fail_forward:
            raise RuntimeError("boom in forward")
        return h


class _FailBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        raise RuntimeError("boom in backward")


def test_hooks_and_the_function_mode_are_removed_after_errors_in_forward_and_backward() -> None:
    model = Exploding()
    with pytest.raises(RuntimeError, match="boom in forward"), gradmedic.watch(model) as monitor:
        model(torch.randn(2, 3)).sum().backward()  # discovers W
        monitor.step()
        model.fail_forward = True
        model(torch.randn(2, 3))
    assert no_mode_left() and count_module_hooks(model) == 0
    model.fail_forward = False
    with pytest.raises(RuntimeError, match="boom in backward"), gradmedic.watch(model):
        _FailBackward.apply(model(torch.randn(2, 3))).sum().backward()
    assert no_mode_left() and count_module_hooks(model) == 0
    model.fail_forward, model.W.grad = True, None
    with pytest.raises(RuntimeError, match="boom in forward"):
        gradmedic.checkup(model, torch.randn(2, 3))
    assert no_mode_left() and count_module_hooks(model) == 0 and model.W.grad is None


@pytest.mark.parametrize("make", [MatmulMLP, ConvNet, CharModel], ids=lambda m: m.__name__)
def test_training_is_bit_identical_with_and_without_the_monitor(make: type[nn.Module]) -> None:
    def train(watched: bool) -> tuple[list[float], list[Tensor]]:
        torch.manual_seed(5)
        model = make()
        weights = list(leaves_of(model).values())
        optimizer = torch.optim.Adam(weights, lr=1e-2)
        losses = []
        monitor = (
            gradmedic.watch(model, gradients_every=1, activations_every=2, updates_every=2)
            if watched
            else None
        )
        for _ in range(4):
            optimizer.zero_grad()
            out = F.dropout(model(inputs_for(model)), 0.2)  # the RNG state must be left alone too
            loss = loss_of(out)
            loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.step(loss)
            losses.append(loss.item())
        if monitor is not None:
            monitor.detach()
        return losses, [w.detach().clone() for w in weights]

    plain, watched = train(False), train(True)
    assert plain[0] == watched[0]
    assert all(torch.equal(a, b) for a, b in zip(plain[1], watched[1]))


def test_ops_under_no_grad_in_place_ops_and_unknown_leaves_are_measured_or_left_out_with_a_note() -> None:
    torch.manual_seed(6)
    stray = torch.randn(8, 8, requires_grad=True)

    class Awkward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frozen = nn.Parameter(torch.randn(4, 4))
            self.W1 = nn.Parameter(torch.randn(4, 8))
            self.b1 = nn.Parameter(torch.zeros(8))
            self.W2 = nn.Parameter(torch.randn(8, 2))

        def forward(self, x: Tensor, keep: dict[str, Tensor] | None = None) -> Tensor:
            with torch.no_grad():
                x = x @ self.frozen  # not part of the backward pass
            h = x @ self.W1 + self.b1
            if keep is not None:
                h.retain_grad()
                keep["W1"] = h
                h = h.relu()
            else:
                h.relu_()  # in place on the op output: its gradient is the one before the ReLU
            h = h @ stray  # a leaf the model does not hold: left out, with a note
            return h @ self.W2

    model = Awkward()
    x = torch.randn(6, 4)
    keep: dict[str, Tensor] = {}
    model(x, keep).pow(2).mean().backward()
    want = keep["W1"].grad.norm().item()
    model.zero_grad()
    with gradmedic.watch(model, **ALL_STATS) as monitor:
        model(x).pow(2).mean().backward()
        monitor.step()
    history = monitor.history
    names = [layer.name for layer in history.layers]
    assert "W1" in names and "W2" in names and "frozen" not in names
    assert history.array("signal_norm")[1][0, names.index("W1")] == pytest.approx(want, rel=1e-5)
    assert history.array("act_mean")[1][0, names.index("W1")] == pytest.approx(
        keep["W1"].mean().item(), rel=1e-5
    )
    assert any("not an attribute of the model" in note for note in history.meta["op_layer_notes"])


def test_a_hand_written_linear_module_stays_one_module_layer() -> None:
    class MyLinear(nn.Module):
        def __init__(self, n_in: int, n_out: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_out, n_in))
            self.bias = nn.Parameter(torch.zeros(n_out))

        def forward(self, x: Tensor) -> Tensor:
            return F.linear(x, self.weight, self.bias)

    model = nn.Sequential(MyLinear(4, 3), nn.Tanh(), MyLinear(3, 3))
    history = monitored(model, torch.randn(5, 4))
    assert [layer.name for layer in history.layers] == ["0", "1", "2"]
    assert np.isfinite(history.array("signal_norm")[1][0]).all()


def test_reinit_initialises_bare_weights_by_their_fan_in_and_the_activation_that_follows() -> None:
    torch.manual_seed(7)
    model = MatmulMLP((40, 200, 100, 3), activation="relu", gain=5.0)
    twin = module_twin(model)
    x = torch.randn(64, 40)
    functional = gradmedic.reinit(model, "kaiming_uniform", data=x)
    modular = gradmedic.reinit(twin, "kaiming_uniform", data=x)
    assert [(c.action, c.skipped) for c in functional] == [(c.action, c.skipped) for c in modular]
    assert [c.layer for c in functional] == ["W0", "W1", "W2"]
    for i, fan_in in enumerate((40, 200, 100)):
        weight = getattr(model, f"W{i}").detach()
        bound = nn.init.calculate_gain("relu" if i < 2 else "linear") * math.sqrt(3 / fan_in)
        assert weight.abs().max() <= bound and weight.abs().max() > 0.95 * bound, i
        assert not getattr(model, f"b{i}").detach().any()


def test_reinit_without_data_leaves_bare_weights_as_they_were_and_says_why() -> None:
    model = MatmulMLP()
    before = [p.detach().clone() for p in model.parameters()]
    changes = gradmedic.reinit(model)
    assert all(c.skipped for c in changes) and "pass data=" in changes[0].action
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_treat_heals_a_bare_sigmoid_stack_as_its_twin_and_skips_what_it_cannot_change() -> None:
    torch.manual_seed(3)
    torch.set_flush_denormal(True)
    model = MatmulMLP((32,) + (32,) * 12 + (10,), activation="sigmoid")
    x, y = torch.randn(128, 32), torch.randint(0, 10, (128,))
    functional = gradmedic.treat(model, x, y, suggest_lr=False)
    modular = gradmedic.treat(module_twin(model), x, y, suggest_lr=False)
    assert not functional.before.healthy
    assert functional.after.healthy == modular.after.healthy
    assert functional.after.score == pytest.approx(modular.after.score, abs=0.05)
    centred = [c for c in functional.changes if "centred" in c.action and not c.skipped]
    assert len(centred) == 12
    for family in ("activation", "normalization"):
        model = MatmulMLP((32,) + (32,) * 12 + (10,), activation="sigmoid")
        changes = gradmedic.treat(model, x, y, allow=[family], suggest_lr=False).changes
        assert changes and all(c.skipped for c in changes), family
        assert any("forward()" in c.action for c in changes), family


def test_the_html_report_and_plots_show_op_layers(tmp_path: object) -> None:
    pytest.importorskip("matplotlib")
    from pathlib import Path

    from gradmedic import plots

    torch.manual_seed(8)
    model = MixedNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradmedic.watch(model, optimizer, **ALL_STATS) as monitor:
        for _ in range(3):
            optimizer.zero_grad()
            loss = loss_of(model(inputs_for(model)))
            loss.backward()
            optimizer.step()
            monitor.step(loss)
    history = monitor.history
    report = monitor.diagnose()
    assert [layer.name for layer in report.layers] == ["W_in", "hidden", "W_out"]
    page = report.save_html(Path(str(tmp_path)) / "report.html", history).read_text(encoding="utf-8")
    assert "W_in" in page and "W_out" in page
    figure = plots.flow(history)
    labels = [
        tick.get_text() for axis in figure.axes for tick in [*axis.get_xticklabels(), *axis.get_yticklabels()]
    ]
    assert "W_in" in " ".join(labels) and "W_out" in " ".join(labels)
    assert plots.activations(history).axes and plots.update_ratios(history).axes
    saved = Path(str(tmp_path)) / "run.jsonl"
    history.save(saved)
    loaded = gradmedic.History.load(saved)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in history.layers]
    assert loaded.meta["op_layers"]["W_in"]["type"] == "matmul"
    assert gradmedic.diagnose(loaded).kinds == report.kinds


def test_an_op_layer_called_at_every_time_step_gets_its_signal_through_time() -> None:
    torch.manual_seed(9)

    class HandRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.W_x = nn.Parameter(torch.randn(3, 16) / 3**0.5)
            self.W_h = nn.Parameter(torch.randn(16, 16) / 16**0.5)
            self.b_h = nn.Parameter(torch.randn(16) * 0.1)
            self.W_y = nn.Parameter(torch.randn(16, 2) / 4)

        def forward(self, x: Tensor, keep: list[Tensor] | None = None) -> Tensor:
            h = torch.zeros(len(x), 16)
            for t in range(x.shape[1]):
                pre = h @ self.W_h
                if keep is not None:
                    pre.retain_grad()
                    keep.append(pre)
                h = torch.tanh(x[:, t] @ self.W_x + pre + self.b_h)
            return h @ self.W_y

    model = HandRNN()
    x = torch.randn(8, 12, 3)
    keep: list[Tensor] = []
    loss_of(model(x, keep)).backward()
    want = [t.grad.norm().item() for t in reversed(keep)]  # steps back from the last
    input_grad = math.sqrt(model.W_x.grad.pow(2).sum() + model.b_h.grad.pow(2).sum())
    model.zero_grad()
    history = monitored(model, x)
    names = [layer.name for layer in history.layers]
    # no layer "" for the root; the bias goes with the op called last before it is added (W_x)
    assert [layer.params for layer in history.layers] == [["W_h"], ["W_x", "b_h"], ["W_y"]]
    assert history.array("weight_grad_norm")[1][0, names.index("W_x")] == pytest.approx(input_grad, rel=1e-5)
    assert [history.layers[i].name for i in history.time_layers] == ["W_h"]  # W_x reads the input only
    _, rows = history.time_rows("W_h")
    assert rows.shape == (1, 12)
    assert rows[0] == pytest.approx(want, rel=1e-5)
    assert history.array("time_length")[1][0, history.time_layers[0]] == 12


def test_the_readme_snippet_for_bare_weights_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Models written with bare weights") :]
    code = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 10)], flags=re.DOTALL)
    assert len(code) == 1
    exec(compile(code[0], "README.md: bare weights", "exec"), {"__name__": "readme_snippet"})
    printed = capsys.readouterr().out
    assert "['W1', 'W2']" in printed and "gradmedic" in printed


def test_watching_a_function_model_whose_function_is_called_directly_says_what_to_do() -> None:
    from gradmedic.op_layers import FunctionModel

    W = torch.randn(3, 2, requires_grad=True)

    def fn(x: Tensor) -> Tensor:
        return x @ W

    optimizer, net = torch.optim.SGD([W], lr=0.1), FunctionModel(fn, {"W": W})
    with gradmedic.watch(net, optimizer) as monitor:
        fn(torch.randn(4, 3)).sum().backward()
        with pytest.raises(ModelError, match="call the model"):
            optimizer.step()
    assert monitor.history.layers == []


def test_tensors_in_lists_addmm_and_weights_on_the_left_are_op_layers_measured_exactly() -> None:
    torch.manual_seed(10)

    class ListNet(nn.Module):
        """Weights in Python lists; ``addmm`` with the bias first; ``W @ h.T`` (columns as samples)."""

        def __init__(self) -> None:
            super().__init__()
            self.Ws = [torch.randn(6, 12, requires_grad=True), torch.randn(4, 12, requires_grad=True)]
            self.bs = [torch.zeros(12, requires_grad=True), torch.randn(4, requires_grad=True)]

        def forward(self, x: Tensor, keep: dict[str, Tensor] | None = None) -> Tensor:
            h = torch.relu(kept(keep, "Ws.0", torch.addmm(self.bs[0], x, self.Ws[0])))
            out = kept(keep, "Ws.1", self.Ws[1] @ h.T + self.bs[1][:, None])
            return out.T

    from op_models import kept

    model = ListNet()
    x = torch.randn(9, 6)
    keep = reference(model, x)
    grads = {name: t.grad.clone() for name, t in leaves_of(model).items()}
    history = monitored(model, x)
    assert [(layer.name, layer.type, layer.params) for layer in history.layers] == [
        ("Ws.0", "addmm", ["Ws.0", "bs.0"]),
        ("Ws.1", "matmul", ["Ws.1", "bs.1"]),
    ]
    assert history.meta["op_layers"]["Ws.1"]["fan_in"] == 12
    signal, weight_grad = history.array("signal_norm")[1][0], history.array("weight_grad_norm")[1][0]
    for column, name in enumerate(["Ws.0", "Ws.1"]):
        assert signal[column] == pytest.approx(keep[name].grad.norm().item(), rel=1e-5)
        params = history.layers[column].params
        assert weight_grad[column] == pytest.approx(
            math.sqrt(sum(grads[p].pow(2).sum() for p in params)), rel=1e-5
        )


@pytest.mark.parametrize("left", [False, True])
def test_lsuv_on_op_layers_centres_each_unit_and_gives_unit_variance(left: bool) -> None:
    torch.manual_seed(11)

    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.W = nn.Parameter(torch.randn(16, 24) * 3)
            self.b = nn.Parameter(torch.randn(24))

        def forward(self, x: Tensor) -> Tensor:  # rows as samples (x @ W + b) or columns (W.T @ x.T + b)
            return (self.W.T @ x.T + self.b[:, None]).T if left else x @ self.W + self.b

    from gradmedic.op_layers import discover_on
    from gradmedic.remedies.lsuv import rescale_op_layers

    model, x = Bare(), torch.rand(512, 16)  # inputs averaging 0.5, as after a sigmoid
    changes = rescale_op_layers(model, x, discover_on(model, x).layers, center=True)
    assert [c.action for c in changes] == ["lsuv: each unit centred, scaled to unit output variance"]
    with torch.no_grad():
        out = model(x)
    assert out.mean(dim=0).abs().max() < 1e-4
    assert out.var().item() == pytest.approx(1.0, rel=1e-3)


def test_a_conv1d_style_module_returning_a_view_of_its_addmm_stays_one_module_layer() -> None:
    class Conv1D(nn.Module):  # as GPT-2 in transformers writes its projections
        def __init__(self, nf: int, nx: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
            self.bias = nn.Parameter(torch.zeros(nf))

        def forward(self, x: Tensor) -> Tensor:
            out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
            return out.view(*x.shape[:-1], -1)

    model = nn.Sequential(Conv1D(8, 4), nn.Tanh(), Conv1D(2, 8))
    history = monitored(model, torch.randn(3, 5, 4).reshape(15, 4))
    assert [layer.name for layer in history.layers] == ["0", "1", "2"]


def test_a_forward_that_fails_at_the_first_call_leaves_no_hook_and_no_mode() -> None:
    model = Exploding()
    model.fail_forward = True
    with pytest.raises(RuntimeError, match="boom in forward"), gradmedic.watch(model):
        model(torch.randn(2, 3))
    assert no_mode_left() and count_module_hooks(model) == 0
    model.fail_forward = False
    with gradmedic.watch(model, **ALL_STATS) as monitor:  # and it works once the forward does
        model(torch.randn(2, 3)).sum().backward()
        monitor.step()
    assert [layer.name for layer in monitor.history.layers] == ["W"]


def test_non_finite_values_are_traced_to_the_first_op_layer_where_they_appear() -> None:
    model = MatmulMLP((4, 8, 8, 2))
    with torch.no_grad():
        model.W1.fill_(1e38)  # the second layer overflows
    history = monitored(model, torch.randn(5, 4))
    firsts = {event.metric: event.layer for event in history.non_finite}
    assert firsts["act_mean"] == "W1"
