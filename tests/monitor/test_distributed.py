"""DDP: statistics reduced over 2 gloo ranks, only rank 0 writes, no deadlock when a rank skips a step;
FSDP1 refused with a message that says what is supported (FSDP2: tests/monitor/test_fsdp.py)."""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradmedic
from gradmedic.errors import ConfigError, UnsupportedError
from gradmedic.integrations.distributed import REDUCTIONS, combine, refuse_sharded, wants_reduction
from gradmedic.sinks import CSVSink, read_csv

STEPS = 9
SKIP_OPTIMIZER = 5  # rank 1 does not call optimizer.step() on this iteration (mid-run)
UNRECORDED = 1  # rank 1 records nothing on this step (its schedule says no)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _train(rank, Path(out))
        _refusals(rank, Path(out))
    finally:
        dist.destroy_process_group()


def _train(rank: int, out: Path) -> None:
    ddp = nn.parallel.DistributedDataParallel(_model())
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    every = (lambda s: s != UNRECORDED) if rank == 1 else 1
    local = gradmedic.watch(ddp, opt, distributed=False, activations_every=1, flush_every=100)
    monitor = gradmedic.watch(
        ddp,
        opt,
        gradients_every=every,
        activations_every=every,
        flush_every=2,
        log_path=out / f"run{rank}.jsonl",
        sinks=[CSVSink(out / f"series{rank}.csv")],
    )
    assert monitor._reducer is not None and local._reducer is None
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    for step in range(STEPS):
        x, y = torch.randn(16, 6, generator=gen), torch.randn(16, 2, generator=gen)
        opt.zero_grad()
        loss = nn.functional.mse_loss(ddp(x), y) * (1 + rank)
        loss.backward()
        if not (rank == 1 and step == SKIP_OPTIMIZER):
            opt.step()
        monitor.step(loss)
        local.step(loss)
    report = monitor.diagnose() if rank == 0 else None
    monitor.detach()  # a collective: both ranks
    local.detach()
    monitor.history.save(out / f"reduced{rank}.jsonl")
    local.history.save(out / f"local{rank}.jsonl")
    if report is not None:
        report.to_json(out / "report.json")


def _refusals(rank: int, out: Path) -> None:
    from torch.distributed.fsdp import FullyShardedDataParallel

    messages = []
    try:
        gradmedic.watch(FullyShardedDataParallel(_model(), device_id=torch.device("cpu")))
    except UnsupportedError as error:
        messages.append(str(error))
    (out / f"refusals{rank}.txt").write_text("\n".join(messages))


def _spawn(tmp_path: Path, timeout: float = 120.0) -> None:
    context = mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the ranks did not finish in {timeout:.0f} s: deadlock")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    _spawn(out)
    return out


def _rows(history: gradmedic.History, metric: str) -> dict[int, np.ndarray]:
    steps, values = history.array(metric)
    return dict(zip(steps.tolist(), values))


def test_ranks_finish_although_one_skips_optimizer_steps_and_records(ddp_run):
    reduced = [gradmedic.History.load(ddp_run / f"reduced{r}.jsonl") for r in range(2)]
    for metric in ("signal_norm", "weight_grad_norm", "act_dead", "loss"):
        a, b = reduced[0].array(metric), reduced[1].array(metric)
        np.testing.assert_array_equal(a[0], b[0])  # every rank holds the same reduced History
        np.testing.assert_allclose(a[1], b[1], equal_nan=True)
    # rank 0 closed STEPS steps, rank 1 one fewer: every step of rank 0 arrives
    assert reduced[0].array("signal_norm")[0].tolist() == list(range(STEPS))


@pytest.mark.parametrize("metric", sorted(REDUCTIONS.keys() - {"grad_underflow"}))
def test_each_statistic_is_the_documented_reduction_of_the_ranks_values(ddp_run, metric):
    reduced = _rows(gradmedic.History.load(ddp_run / "reduced0.jsonl"), metric)
    local = [_rows(gradmedic.History.load(ddp_run / f"local{r}.jsonl"), metric) for r in range(2)]
    steps = [step for step in local[0] if step < SKIP_OPTIMIZER]  # the same iteration on both ranks
    assert steps and all(step in reduced for step in steps)
    for step in steps:
        ranks = [local[r][step] for r in range(2) if not (r == 1 and step == UNRECORDED)]
        stacked = np.stack(ranks)
        counts = np.isfinite(stacked).sum(axis=0).astype(float)
        sums = np.nansum(stacked**2 if REDUCTIONS[metric] == "rms" else stacked, axis=0)
        expected = combine(sums, counts, REDUCTIONS[metric])
        np.testing.assert_allclose(reduced[step], expected, rtol=1e-6, equal_nan=True, err_msg=f"step {step}")


def test_norms_are_the_root_mean_square_and_weight_gradients_agree(ddp_run):
    local = [gradmedic.History.load(ddp_run / f"local{r}.jsonl") for r in range(2)]
    reduced = gradmedic.History.load(ddp_run / "reduced0.jsonl")
    step = 3
    signal = [_rows(h, "signal_norm")[step] for h in local]
    assert not np.allclose(signal[0], signal[1])  # the ranks saw different data
    np.testing.assert_allclose(
        _rows(reduced, "signal_norm")[step], np.sqrt((signal[0] ** 2 + signal[1] ** 2) / 2)
    )
    grads = [_rows(h, "weight_grad_norm")[step] for h in local]  # DDP all-reduced the gradients
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
    losses = [_rows(h, "loss")[step][0] for h in local]
    assert math.isclose(_rows(reduced, "loss")[step][0], sum(losses) / 2, rel_tol=1e-6)


def test_only_rank_zero_writes_and_reports(ddp_run):
    assert (ddp_run / "run0.jsonl").exists() and not (ddp_run / "run1.jsonl").exists()
    assert (ddp_run / "series0.csv").exists() and not (ddp_run / "series1.csv").exists()
    series = read_csv(ddp_run / "series0.csv")
    assert series["signal_first"][0] == list(range(STEPS))
    streamed = gradmedic.History.load(ddp_run / "run0.jsonl")
    np.testing.assert_allclose(
        streamed.array("signal_rms")[1],
        gradmedic.History.load(ddp_run / "reduced0.jsonl").array("signal_rms")[1],
    )
    assert gradmedic.Report.from_json((ddp_run / "report.json").read_text()).source == "monitor"


def test_fsdp1_is_refused_with_what_is_supported(ddp_run):
    for rank in range(2):
        messages = (ddp_run / f"refusals{rank}.txt").read_text().splitlines()
        assert len(messages) == 1, messages
        for message in messages:
            assert "FSDP1" in message and "fully_shard" in message and "DistributedDataParallel" in message


def test_fsdp1_is_recognised_by_class_name():
    class FullyShardedDataParallel(nn.Module):  # the check is by class name, no process group needed
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(2, 2)

    with pytest.raises(UnsupportedError, match="FSDP"):
        refuse_sharded(nn.Sequential(FullyShardedDataParallel()))
    with pytest.raises(UnsupportedError, match="module '0' of Sequential is a FullyShardedDataParallel"):
        gradmedic.watch(nn.Sequential(FullyShardedDataParallel()))
    refuse_sharded(nn.Sequential(nn.Linear(2, 2)))  # a plain model passes


def test_distributed_option_is_checked_without_a_process_group():
    model = nn.Linear(2, 2)
    assert not wants_reduction(model, "auto") and not wants_reduction(model, False)
    with pytest.raises(ConfigError, match="init_process_group"):
        gradmedic.watch(model, distributed=True)
    with pytest.raises(ConfigError, match="'auto', True or False"):
        gradmedic.watch(model, distributed="yes")


def test_combine_rms_and_mean_leave_unobserved_values_missing():
    np.testing.assert_allclose(
        combine(np.array([9.0 + 16.0, 4.0, 0.0]), np.array([2, 1, 0]), "rms"),
        [math.sqrt(12.5), 2.0, math.nan],
    )
    assert combine(np.array([math.inf]), np.array([2.0]), "mean")[0] == math.inf  # non-finite wins
