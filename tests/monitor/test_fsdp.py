"""FSDP2 (``fully_shard``) on 2 gloo ranks: per-layer weight-gradient norms and update ratios equal
an unsharded single-process run's (and plain autograd's on the full gradients) at every step,
training unchanged by watching, hooks removed at detach, a NaN in one rank's shard reported by
all; FSDP1 refused before anything is touched."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradmedic
from gradmedic.errors import ConfigError, UnsupportedError

STEPS = 4
OPTIONS: dict[str, Any] = dict(gradients_every=1, activations_every=1, updates_every=1, flush_every=3)
NAN_STEP = 2  # the guard run: rank 1 alone puts a NaN in its shard of a gradient on this (unrecorded) step
NAN_PARAM = "0.weight"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model() -> nn.Sequential:
    """Uneven shards on 2 ranks: 7 rows (4 + 3), 5 rows (3 + 2), 1 row (1 + an empty shard)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 1))


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same batch on every rank (and in the single-process run)."""
    gen = torch.Generator().manual_seed(1000 + step)
    return torch.randn(8, 6, generator=gen), torch.randn(8, 1, generator=gen)


def _shard(model: nn.Sequential, **kwargs: Any) -> nn.Sequential:
    from torch.distributed.fsdp import fully_shard

    for block in (model[0], model[2], model[4]):
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def _hooks(model: nn.Module, opt: torch.optim.Optimizer) -> list[tuple[str, str, tuple[int, ...]]]:
    """Every hook dict of every module (and the optimizer's step hooks), by key."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    found = [(name, kind, tuple(getattr(m, kind))) for name, m in model.named_modules() for kind in kinds]
    found += [
        ("opt", k, tuple(getattr(opt, k)))
        for k in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks")
    ]
    return found


def _train(
    model: nn.Module,
    watch: dict[str, Any] | None,
    steps: int = STEPS,
    before_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """SGD with momentum on the fixed batches, watched with the options ``watch`` if given."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    hooks = _hooks(model, opt)
    monitor = gradmedic.watch(model, opt, **watch) if watch is not None else None
    losses, ref_grads, ref_ratios = [], [], []
    for step in range(steps):
        x, y = _batch(step)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x).float(), y)
        loss.backward()
        if before_step is not None:
            before_step(step)
        ref_grads.append(_full_norms(model, grads=True))
        before = _full_params(model)
        opt.step()
        ref_ratios.append(_ratios(before, _full_params(model), model))
        if monitor is not None:
            monitor.step(loss)
        losses.append(loss.item())
    out: dict[str, Any] = {"losses": losses, "ref_grads": ref_grads, "ref_ratios": ref_ratios}
    if monitor is not None:
        monitor.detach()
        out["history"] = monitor.history
        out["hooks_left"] = _hooks(model, opt) != hooks
    out["params"] = {name: t.tolist() for name, t in _full_params(model).items()}
    return out


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (gathered from the ranks for a DTensor: the plain reference computation)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t  # type: ignore[no-any-return]


def _full_params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: _full(p.detach()).clone() for name, p in model.named_parameters()}


def _full_norms(model: nn.Module, grads: bool) -> dict[str, float]:
    """Per layer (module), the norm of its parameters' gradients, from the full tensors."""
    sums: dict[str, float] = {}
    for name, p in model.named_parameters():
        layer = name.rsplit(".", 1)[0]
        sums[layer] = sums.get(layer, 0.0) + float(_full(p.grad).double().pow(2).sum())
    return {layer: s**0.5 for layer, s in sums.items()}


def _ratios(
    before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, float]:
    weight: dict[str, float] = {}
    delta: dict[str, float] = {}
    for name in before:
        layer = name.rsplit(".", 1)[0]
        weight[layer] = weight.get(layer, 0.0) + float(before[name].double().pow(2).sum())
        delta[layer] = delta.get(layer, 0.0) + float((after[name] - before[name]).double().pow(2).sum())
    return {layer: (delta[layer] / weight[layer]) ** 0.5 for layer in weight}


def _save(out: Path, tag: str, result: dict[str, Any]) -> None:
    history = result.pop("history", None)
    if history is not None:
        history.save(out / f"{tag}.jsonl")
    (out / f"{tag}.json").write_text(json.dumps(result))


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    out = Path(out_dir)
    try:
        _save(out, f"watched{rank}", _train(_shard(_model()), OPTIONS))
        _save(out, f"plain{rank}", _train(_shard(_model()), None))
        _mixed_precision(out, rank)
        _nan_in_one_shard(out, rank)
        _bare_weight_and_recurrent_layer(out, rank)
        _refusals(out, rank)
    finally:
        dist.destroy_process_group()


def _mixed_precision(out: Path, rank: int) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16)
    _save(out, f"mixed{rank}", _train(_shard(_model(), mp_policy=policy), OPTIONS))
    _save(out, f"mixed_plain{rank}", _train(_shard(_model(), mp_policy=policy), None))


def _nan_in_one_shard(out: Path, rank: int) -> None:
    model = _shard(_model())
    params = dict(model.named_parameters())

    def poison(step: int) -> None:
        if step == NAN_STEP and rank == 1:
            params[NAN_PARAM].grad.to_local()[0, 0] = float("nan")  # type: ignore[union-attr]

    watch = dict(
        gradients_every=lambda s: s == 0, activations_every=None, updates_every=None, flush_every=100
    )
    result = _train(model, watch, steps=NAN_STEP + 2, before_step=poison)
    _save(out, f"nan{rank}", {"events": [e.to_dict() for e in result["history"].non_finite]})


class _Net(nn.Module):
    """A GRU and a bare weight used by ``@``: module layers under FSDP (op layers need unsharded weights)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gru = nn.GRU(3, 5, batch_first=True)
        self.head = nn.Parameter(torch.randn(5, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return out[:, -1] @ self.head


def _bare_weight_and_recurrent_layer(out: Path, rank: int) -> None:
    from torch.distributed.fsdp import fully_shard

    model = _Net()
    fully_shard(model.gru)
    fully_shard(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = []
    with gradmedic.watch(model, opt, gradients_every=1, through_time_every=1) as monitor:
        for step in range(2):
            gen = torch.Generator().manual_seed(step)
            x, y = torch.randn(4, 7, 3, generator=gen), torch.randn(4, 1, generator=gen)
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            reference.append(_full_norms(model, grads=True))
            opt.step()
    monitor.history.save(out / f"net{rank}.jsonl")
    (out / f"net{rank}.json").write_text(json.dumps({"ref_grads": reference}))


def _refusals(out: Path, rank: int) -> None:
    from torch.distributed.fsdp import FullyShardedDataParallel

    messages = {}
    fsdp1 = FullyShardedDataParallel(_model(), device_id=torch.device("cpu"))
    for name, call in {
        "fsdp1": lambda: gradmedic.watch(fsdp1),
        "local": lambda: gradmedic.watch(_shard(_model()), distributed=False),
    }.items():
        hooks = _hooks(fsdp1, torch.optim.SGD(fsdp1.parameters(), lr=0.1))
        try:
            call()
            messages[name] = "accepted"
        except (UnsupportedError, ConfigError) as error:
            messages[name] = f"{type(error).__name__}: {error}"
        if name == "fsdp1":
            messages["fsdp1_untouched"] = str(
                hooks == _hooks(fsdp1, torch.optim.SGD(fsdp1.parameters(), lr=0.1))
            )
    (out / f"refusals{rank}.json").write_text(json.dumps(messages))


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fsdp")
    context = mp.start_processes(
        _worker, args=(2, _free_port(), str(out)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120.0
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the ranks did not finish in 120 s: deadlock")
    return out


@pytest.fixture(scope="module")
def single_process() -> dict[str, Any]:
    """The same training, unsharded, in this process, watched with the same options."""
    return _train(_model(), OPTIONS)


def _load(out: Path, tag: str) -> tuple[dict[str, Any], gradmedic.History | None]:
    data = json.loads((out / f"{tag}.json").read_text())
    path = out / f"{tag}.jsonl"
    return data, gradmedic.History.load(path) if path.exists() else None


def _by_layer(history: gradmedic.History, metric: str) -> list[dict[str, float]]:
    steps, values = history.array(metric)
    assert steps.tolist() == list(range(STEPS)), metric
    names = [layer.name for layer in history.layers]
    return [{name: float(v) for name, v in zip(names, row) if np.isfinite(v)} for row in values]


def _assert_close(got: list[dict[str, float]], want: list[dict[str, float]], what: str) -> None:
    for step, (g, w) in enumerate(zip(got, want)):
        assert set(w) <= set(g), (what, step, g, w)
        for layer, value in w.items():
            assert g[layer] == pytest.approx(value, rel=1e-5), (what, step, layer)


@pytest.mark.parametrize("rank", [0, 1])
def test_weight_gradient_norms_and_update_ratios_equal_the_unsharded_run_every_step(
    fsdp_run, single_process, rank
):
    _, history = _load(fsdp_run, f"watched{rank}")
    reference = single_process["history"]
    assert history is not None
    assert [(lay.name, lay.type) for lay in history.layers] == [
        (lay.name, lay.type) for lay in reference.layers
    ]
    assert history.params == reference.params
    for metric in ("weight_grad_norm", "update_ratio", "signal_norm", "act_std", "act_dead"):
        _assert_close(_by_layer(history, metric), _by_layer(reference, metric), metric)
    _assert_close(_by_layer(history, "weight_grad_norm"), single_process["ref_grads"], "plain autograd")
    _assert_close(_by_layer(history, "update_ratio"), single_process["ref_ratios"], "plain update ratio")
    _, per_param = history.array("param_grad_norm")
    np.testing.assert_allclose(per_param, reference.array("param_grad_norm")[1], rtol=1e-5)


def test_every_rank_matches_the_full_gradients_of_its_own_run(fsdp_run):
    for rank in range(2):
        data, history = _load(fsdp_run, f"watched{rank}")
        assert history is not None
        _assert_close(_by_layer(history, "weight_grad_norm"), data["ref_grads"], "full gradients")
        _assert_close(_by_layer(history, "update_ratio"), data["ref_ratios"], "full update")


def test_training_is_unchanged_by_watching_and_hooks_are_removed(fsdp_run):
    for rank in range(2):
        for watched, plain in (("watched", "plain"), ("mixed", "mixed_plain")):
            a, _ = _load(fsdp_run, f"{watched}{rank}")
            b, _ = _load(fsdp_run, f"{plain}{rank}")
            assert a["losses"] == b["losses"] and a["params"] == b["params"]  # bit-identical
            assert a["hooks_left"] is False


def test_mixed_precision_norms_equal_the_full_gradients(fsdp_run):
    for rank in range(2):
        data, history = _load(fsdp_run, f"mixed{rank}")
        assert history is not None and history.meta.get("low_precision") == "bfloat16"
        _assert_close(_by_layer(history, "weight_grad_norm"), data["ref_grads"], "bf16 gradients")
        _assert_close(_by_layer(history, "update_ratio"), data["ref_ratios"], "bf16 update")


def test_a_nan_in_one_ranks_shard_is_reported_by_every_rank(fsdp_run):
    for rank in range(2):
        events = json.loads((fsdp_run / f"nan{rank}.json").read_text())["events"]
        guard = [e for e in events if e["metric"] == "param_grad_norm"]
        assert guard and guard[0]["step"] == NAN_STEP and guard[0]["layer"] == NAN_PARAM, events


def test_bare_weights_and_recurrent_layers_are_measured_as_module_layers(fsdp_run):
    for rank in range(2):
        data, history = _load(fsdp_run, f"net{rank}")
        assert history is not None
        assert [(lay.name, lay.type, lay.params) for lay in history.layers] == [
            ("", "_Net", ["head"]),
            ("gru", "GRU", ["gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0"]),
        ]
        assert "time_signal" not in history.metrics  # the replay through time needs the full weights
        steps, values = history.array("weight_grad_norm")
        assert steps.tolist() == [0, 1]
        for row, want in zip(values, data["ref_grads"]):
            got = dict(zip([lay.name for lay in history.layers], row.tolist()))
            assert got["gru"] == pytest.approx(want["gru"], rel=1e-5)
            assert got[""] == pytest.approx(want["head"], rel=1e-5)  # _full_norms names it by its prefix


def test_fsdp1_and_unreduced_sharded_runs_are_refused_with_the_fix(fsdp_run):
    for rank in range(2):
        messages = json.loads((fsdp_run / f"refusals{rank}.json").read_text())
        assert messages["fsdp1"].startswith("UnsupportedError") and "fully_shard" in messages["fsdp1"]
        assert messages["fsdp1_untouched"] == "True"
        assert messages["local"].startswith("ConfigError") and "distributed" in messages["local"]


def test_a_partly_sharded_model_is_refused_without_a_process_group():
    class DTensor(torch.Tensor):  # recognised by class name, as torch's DTensor is
        pass

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].weight = nn.Parameter(model[0].weight.detach().as_subclass(DTensor))
    with pytest.raises(
        UnsupportedError, match=r"parameter '0.bias' of Sequential is not sharded.*fully_shard"
    ):
        gradmedic.watch(model)
