"""Overhead of gradient monitors on training steps (CPU or CUDA), measured as ratios in one run.

Each workload (a model, an optimizer, one fixed batch, a loss) is trained plainly and under
each monitoring configuration, A/B interleaved. Every configuration gets its own replica of
the workload (same seed, same weights, same batch). A block attaches every configuration to
its replica, runs ``--warmup`` untimed steps, then ``--steps`` timed steps round-robin: step k
of every configuration, in an order that rotates, before step k+1 of any. A burst of load from
other processes therefore slows every configuration of the block alike. Each configuration's
time in a block is divided by the plain loop's time in the same block; the table shows, per
workload, the median plain step time and, per configuration, the median ratio over the
blocks with its interquartile range.

Not timed: resetting the replica, attaching, the warm-up steps, detaching (torchmortem runs its
analysis there). Timed: the steps and the work a monitor still owes for them at the end of the
block (gradmedic's final ``flush()``, which copies pending values to the host). After every
block the benchmark checks that each monitor really recorded data, so a ratio near 1 cannot
come from a monitor that did nothing.

With ``--device cuda`` the workloads run on the GPU and nothing synchronises inside a block: each
step is timed by a pair of CUDA events recorded around it (the time the GPU spends on the step,
gaps waiting for the host's launches included), read once the block is over; the final flush
is timed on the host between two synchronisations (the timing boundaries).

Run ``python benchmarks/overhead.py --help`` for the options; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

import gradmedic
from gradmedic.monitor import ALL_STATS, DEFAULT_OPTIONS
from gradmedic.schedules import DenseStart, Every, as_schedule

SEED = 0
THREADS = 1  # intra-op threads, the default of --threads: two spin-waiting threads thrash on shared cores

# -- workloads ---------------------------------------------------------------------------------


@dataclass
class Workload:
    """A model, its optimizer, one fixed batch and a loss; resettable to its initial state."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    inputs: Tensor
    targets: Tensor
    loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.cross_entropy
    _initial: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._initial = {
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def reset(self) -> None:
        """Initial weights, optimizer state and random seed (dropout draws the same masks)."""
        self.model.load_state_dict(self._initial["model"])
        self.optimizer.load_state_dict(self._initial["optimizer"])
        torch.manual_seed(SEED)

    def to(self, device: torch.device) -> Workload:
        """Move the model, the batch and the initial state to ``device`` (before any step)."""
        self.model.to(device)
        self.inputs, self.targets = self.inputs.to(device), self.targets.to(device)
        self.__post_init__()
        return self

    @property
    def recurrent(self) -> bool:
        """Whether the model has recurrent layers (they have statistics through time)."""
        return any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in self.model.modules())


def _batch(*shape: int, classes: int = 10) -> tuple[Tensor, Tensor]:
    return torch.randn(*shape), torch.randint(0, classes, (shape[0],))


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01)


def build_mlp(batch_scale: int = 1) -> Workload:
    """20 Linear+Tanh blocks of width 256 on a 784-feature batch of 256, 10 classes."""
    torch.manual_seed(SEED)
    blocks: list[nn.Module] = []
    for i in range(20):
        blocks += [nn.Linear(784 if i == 0 else 256, 256), nn.Tanh()]
    model = nn.Sequential(*blocks, nn.Linear(256, 10))
    inputs, targets = _batch(256 * batch_scale, 784)
    return Workload("mlp", model, _sgd(model), inputs, targets)


class BareMLP(nn.Module):
    """The ``mlp`` workload written with bare weights: ``tanh(x @ W + b)`` (op layers, no modules)."""

    def __init__(self, linears: list[nn.Linear]) -> None:
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(lin.weight.detach().T.clone()) for lin in linears])
        self.biases = nn.ParameterList([nn.Parameter(linear.bias.detach().clone()) for linear in linears])

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = x @ weight + bias
            x = torch.tanh(x) if i < last else x
        return x


def build_mlp_bare(batch_scale: int = 1) -> Workload:
    """The ``mlp`` workload (same weights, same batch) written with bare weights and ``@``."""
    module_twin = build_mlp(batch_scale)
    model = BareMLP([m for m in module_twin.model if isinstance(m, nn.Linear)])
    return Workload("mlp_bare", model, _sgd(model), module_twin.inputs, module_twin.targets)


def build_cnn(batch_scale: int = 1) -> Workload:
    """3 Conv2d-BatchNorm2d-ReLU blocks of 32 channels on 16x16 images, batch 64."""
    torch.manual_seed(SEED)
    blocks: list[nn.Module] = []
    for i in range(3):
        blocks += [nn.Conv2d(1 if i == 0 else 32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()]
    model = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    inputs, targets = _batch(64 * batch_scale, 1, 16, 16)
    return Workload("cnn", model, _sgd(model), inputs, targets)


class LastStepLSTM(nn.Module):
    """An LSTM whose last time step feeds a linear classifier."""

    def __init__(self, features: int = 16, hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def build_lstm(batch_scale: int = 1) -> Workload:
    """An LSTM (input 16, hidden 128) over 100 steps, batch 32, head on the last step."""
    torch.manual_seed(SEED)
    model = LastStepLSTM()
    inputs, targets = _batch(32 * batch_scale, 100, 16)
    return Workload("lstm", model, _sgd(model), inputs, targets)


class PooledEncoder(nn.Module):
    """A TransformerEncoder whose mean-pooled output feeds a linear classifier."""

    def __init__(self, d_model: int = 128, layers: int = 4, classes: int = 10) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=256, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x).mean(dim=1))


def build_transformer(batch_scale: int = 1) -> Workload:
    """A 4-layer TransformerEncoder (d_model 128, 4 heads, ff 256) on seq 64, batch 16."""
    torch.manual_seed(SEED)
    model = PooledEncoder()
    inputs, targets = _batch(16 * batch_scale, 64, 128)
    return Workload("transformer", model, _sgd(model), inputs, targets)


#: The workloads by name; each builder takes a factor its batch size is multiplied by.
WORKLOADS: dict[str, Callable[[int], Workload]] = {
    "mlp": build_mlp,
    "mlp_bare": build_mlp_bare,
    "cnn": build_cnn,
    "lstm": build_lstm,
    "transformer": build_transformer,
}

# -- configurations ----------------------------------------------------------------------------


class Session(Protocol):
    """One configuration attached to its replica of a workload for one block."""

    def forward_backward(self, workload: Workload) -> Tensor:
        """The loss of the fixed batch, backpropagated (Cockpit wraps this in its context)."""

    def after_backward(self, loss: Tensor) -> None:
        """Called after ``loss.backward()``, before ``optimizer.step()``."""

    def after_step(self, loss: Tensor) -> None:
        """Called after ``optimizer.step()``."""

    def sync(self) -> None:
        """Finish the work still owed for the steps run (timed)."""

    def close(self) -> dict[str, int]:
        """Detach (not timed); return how many rows of each key quantity were recorded."""


class Plain:
    """No monitor: the baseline."""

    def forward_backward(self, workload: Workload) -> Tensor:
        loss = workload.loss_fn(workload.model(workload.inputs), workload.targets)
        loss.backward()
        return loss

    def after_backward(self, loss: Tensor) -> None:
        pass

    def after_step(self, loss: Tensor) -> None:
        pass

    def sync(self) -> None:
        pass

    def close(self) -> dict[str, int]:
        return {}


class GradmedicSession(Plain):
    """``gradmedic.watch(model, optimizer, **options)``, ``monitor.step(loss)`` after backward."""

    def __init__(self, workload: Workload, options: dict[str, Any]) -> None:
        self.monitor = gradmedic.watch(workload.model, workload.optimizer, **options)

    def after_backward(self, loss: Tensor) -> None:
        self.monitor.step(loss)

    def sync(self) -> None:
        self.monitor.flush()

    def close(self) -> dict[str, int]:
        self.monitor.detach()
        history = self.monitor.history
        return {metric: _finite_rows(history.array(metric)[1]) for metric in history.metrics}


def _finite_rows(values: np.ndarray) -> int:
    """Rows with at least one finite value."""
    return int(np.isfinite(values).any(axis=1).sum()) if values.size else 0


def grad_norms(model: nn.Module) -> dict[str, float]:
    """Per-parameter L2 gradient norms and their total, as Python floats (Lightning's grad_norm)."""
    norms = {name: p.grad.norm(2).item() for name, p in model.named_parameters() if p.grad is not None}
    norms["total"] = math.sqrt(sum(value * value for value in norms.values()))
    return norms


class GradNormSession(Plain):
    """A hand-written loop logging every parameter's gradient norm and the total, every step."""

    def __init__(self, workload: Workload) -> None:
        self.model = workload.model
        self.logged: list[dict[str, float]] = []

    def after_backward(self, loss: Tensor) -> None:
        self.logged.append(grad_norms(self.model))

    def close(self) -> dict[str, int]:
        finite = [row for row in self.logged if len(row) > 1 and math.isfinite(row["total"])]
        return {"grad_norm": len(finite)}


class TorchmortemSession(Plain):
    """torchmortem's ``Autopsy`` used as its README shows: ``autopsy.step(loss=loss.item())``."""

    def __init__(self, workload: Workload, preset: str) -> None:
        module = importlib.import_module("torchmortem")
        self.autopsy = module.Autopsy(workload.model, optimizer=workload.optimizer, sampling=preset)
        self.autopsy.attach()

    def after_step(self, loss: Tensor) -> None:
        self.autopsy.step(loss=loss.item())

    def close(self) -> dict[str, int]:
        self.autopsy.detach()  # also runs torchmortem's analysis: not part of the per-step cost
        states = self.autopsy.get_report().collector_states
        return {name: len(state.steps) for name, state in states.items()}


class WandbSession(Plain):
    """``wandb.watch(model, log="gradients", log_freq=N)`` in an offline run, and ``run.log`` of
    the loss after each step (what commits wandb's gradient histograms), as its docs show."""

    def __init__(self, workload: Workload, log_freq: int) -> None:
        self.run = _wandb_run()
        self.model = workload.model
        self.run.watch(self.model, log="gradients", log_freq=log_freq)

    def after_step(self, loss: Tensor) -> None:
        self.run.log({"loss": loss.item()})

    def close(self) -> dict[str, int]:
        self.run.unwatch(self.model)
        logged = [key for key in self.run.summary.keys() if key.startswith("gradients/")]  # noqa: SIM118
        return {"gradients": len(logged)}


#: Cockpit works through BackPACK, which has no rule for BatchNorm in training, LSTM or attention.
COCKPIT_WORKLOADS = ("mlp",)
#: Cockpit tracks its quantities every this many steps: the cadence of gradmedic's default signal
#: after its dense start (its economy set on every step costs some 250x a plain step).
COCKPIT_EVERY = 20


class CockpitSession(Plain):
    """Cockpit's ``configuration("economy")`` every ``interval`` steps (the default's gradient
    cadence after its dense start), with the loop its README shows: a BackPACK-extended model and
    loss, per-sample losses, ``backward`` inside ``with cockpit(...)``."""

    def __init__(self, workload: Workload, interval: int = COCKPIT_EVERY) -> None:
        cockpit = importlib.import_module("cockpit")
        schedule = importlib.import_module("cockpit.utils.schedules").linear(interval)
        configuration = importlib.import_module("cockpit.utils.configuration").configuration
        economy = configuration("economy", track_schedule=schedule)
        backpack = importlib.import_module("backpack")
        self.model = backpack.extend(workload.model)
        self.loss_fn = backpack.extend(nn.CrossEntropyLoss())
        self.per_sample = nn.CrossEntropyLoss(reduction="none")
        self.cockpit = cockpit.Cockpit(self.model.parameters(), quantities=economy)
        self.step = 0

    def forward_backward(self, workload: Workload) -> Tensor:
        outputs = self.model(workload.inputs)
        loss = self.loss_fn(outputs, workload.targets)
        losses = self.per_sample(outputs, workload.targets)
        info = {"batch_size": len(workload.inputs), "individual_losses": losses, "loss": loss,
                "optimizer": workload.optimizer}  # fmt: skip
        with self.cockpit(self.step, info=info):
            loss.backward(create_graph=self.cockpit.create_graph(self.step))
        self.step += 1
        return loss

    def close(self) -> dict[str, int]:
        logged = self.cockpit.get_output()
        return {"cockpit": sum(1 for values in logged.values() if values)}


def cockpit_available() -> bool:
    """Whether the optional ``cockpit-for-pytorch`` package can be imported (it needs
    ``setuptools<81``, for ``pkg_resources``)."""
    try:
        importlib.import_module("cockpit")
    except ImportError:
        return False
    return True


_WANDB_RUN: list[Any] = []


def _wandb_run() -> Any:
    """One offline W&B run for the whole benchmark (starting one takes seconds; not timed)."""
    if not _WANDB_RUN:
        import tempfile

        wandb = importlib.import_module("wandb")
        settings = wandb.Settings(silent=True, console="off")
        folder = tempfile.mkdtemp(prefix="overhead-wandb-")
        _WANDB_RUN.append(wandb.init(mode="offline", dir=folder, project="overhead", settings=settings))
    return _WANDB_RUN[0]


def wandb_available() -> bool:
    """Whether the optional ``wandb`` package can be imported."""
    try:
        importlib.import_module("wandb")
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Config:
    """A named way of training: how to open a session, what it must have recorded, and on which
    workloads it runs (all of them unless ``applies`` says otherwise)."""

    name: str
    open: Callable[[Workload], Session]
    required: tuple[str, ...] = ()
    applies: Callable[[Workload], bool] = lambda workload: True


def _gradmedic(
    name: str,
    options: dict[str, Any],
    required: tuple[str, ...],
    applies: Callable[[Workload], bool] | None = None,
) -> Config:
    if applies is None:
        return Config(name, lambda w: GradmedicSession(w, options), required)
    return Config(name, lambda w: GradmedicSession(w, options), required, applies)


#: Every statistic on every step, but the statistics through time on their default schedule.
ALL_BUT_TIME = {**ALL_STATS, "through_time_every": DEFAULT_OPTIONS["through_time_every"]}


def _torchmortem(preset: str) -> Config:
    return Config(f"torchmortem {preset}", lambda w: TorchmortemSession(w, preset), ("gradient",))


def torchmortem_available() -> bool:
    """Whether the optional ``torchmortem`` package can be imported."""
    try:
        importlib.import_module("torchmortem")
    except ImportError:
        return False
    return True


#: Nothing recorded: what every unrecorded step of the default pays (the non-finite check).
CHECK_ONLY = dict.fromkeys(ALL_STATS, None)

#: The default before hooks went to the recorded steps only: the signal on every step.
EVERY_STEP = {"gradients_every": 1, "activations_every": 10, "updates_every": 10}


def build_configs(
    with_torchmortem: bool, with_wandb: bool = False, with_cockpit: bool = False
) -> list[Config]:
    """The plain baseline first, then every monitoring configuration."""
    all_stats = ("signal_norm", "act_mean", "update_ratio")
    configs = [
        Config("plain", lambda w: Plain()),
        _gradmedic("gradmedic default", {}, ("signal_norm", "weight_grad_norm")),
        _gradmedic("gradmedic check only", CHECK_ONLY, ()),  # records nothing: the floor of the default
        _gradmedic("gradmedic every step", EVERY_STEP, ("signal_norm", "weight_grad_norm")),
        _gradmedic("gradmedic all", ALL_STATS, all_stats),
        _gradmedic("gradmedic all (time sampled)", ALL_BUT_TIME, all_stats, lambda w: w.recurrent),
        Config("lightning-style grad_norm", GradNormSession, ("grad_norm",)),
    ]
    if with_torchmortem:
        configs += [_torchmortem("fast"), _torchmortem("balanced")]
    if with_wandb:
        for freq in (1, 100):
            configs.append(
                Config(f"wandb.watch {freq}", lambda w, f=freq: WandbSession(w, f), ("gradients",))
            )
    if with_cockpit:
        configs.append(
            Config(
                f"cockpit economy every {COCKPIT_EVERY}",
                CockpitSession,
                ("cockpit",),
                lambda w: w.name in COCKPIT_WORKLOADS,
            )
        )
    return configs


def select_configs(configs: list[Config], names: Sequence[str]) -> list[Config]:
    """The plain baseline and the configurations named in ``names`` (all of them if empty)."""
    if not names:
        return configs
    known = {config.name for config in configs}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown configuration {unknown[0]!r}; choose from {', '.join(sorted(known))}")
    return [config for config in configs if config.name == "plain" or config.name in names]


# -- measuring ---------------------------------------------------------------------------------


def train_step(workload: Workload, session: Session) -> None:
    """One SGD step on the fixed batch, with the session's calls where a user would put them."""
    workload.optimizer.zero_grad(set_to_none=True)
    loss = session.forward_backward(workload)
    session.after_backward(loss)
    workload.optimizer.step()
    session.after_step(loss)


@dataclass
class Lane:
    """One configuration with its own replica of the workload (hooks live on the replica)."""

    config: Config
    workload: Workload
    session: Session = field(default_factory=Plain)
    seconds: float = 0.0
    recorded: dict[str, int] = field(default_factory=dict)
    events: list[tuple[Any, Any]] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.workload.inputs.is_cuda

    def open(self) -> None:
        """Reset the replica and attach the configuration (not timed)."""
        self.workload.reset()
        self.seconds = 0.0
        self.events = []
        self.session = self.config.open(self.workload)

    def step(self, timed: bool) -> None:
        """One training step; on CUDA timed by events (no synchronisation), else by the host clock."""
        if not timed:
            train_step(self.workload, self.session)
        elif self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            train_step(self.workload, self.session)
            end.record()
            self.events.append((start, end))
        else:
            begin = time.perf_counter()
            train_step(self.workload, self.session)
            self.seconds += time.perf_counter() - begin

    def sync(self) -> None:
        """The work still owed (gradmedic's flush), timed between two synchronisations on CUDA."""
        if self.cuda:
            torch.cuda.synchronize()
            self.seconds += sum(start.elapsed_time(end) for start, end in self.events) / 1e3
            self.events = []
        begin = time.perf_counter()
        self.session.sync()
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - begin

    def close(self) -> None:
        """Detach (not timed) and keep what the monitor recorded."""
        self.recorded = self.session.close()
        self.session = Plain()


def rotated(items: Sequence[Lane], shift: int) -> list[Lane]:
    """``items`` rotated left by ``shift``, so no configuration always runs first."""
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def run_block(lanes: list[Lane], warmup: int, steps: int, shift: int) -> None:
    """Attach every lane, then run their steps round-robin, timing each lane's steps and sync.

    Interleaving step by step means a burst of load from other processes slows every
    configuration of the block alike instead of spoiling one of them.
    """
    with ExitStack() as stack:
        for lane in lanes:
            lane.open()
            stack.callback(lane.close)
        for step in range(warmup + steps):
            if step == warmup:
                gc.collect()
            for lane in rotated(lanes, shift + step):
                lane.step(timed=step >= warmup)
        for lane in rotated(lanes, shift):
            lane.sync()


def check_recorded(workload: str, lane: Lane) -> None:
    """Fail loudly when a monitor recorded nothing: its ratio would be meaningless."""
    missing = [key for key in lane.config.required if lane.recorded.get(key, 0) == 0]
    if missing:
        raise SystemExit(
            f"{lane.config.name} on {workload} recorded no {', '.join(missing)} (got {lane.recorded}): "
            "the monitor did not observe the training step, so its overhead ratio is not valid"
        )


@dataclass
class WorkloadResult:
    """Per-block seconds per step of every configuration on one workload."""

    seconds: dict[str, list[float]]
    recorded: dict[str, dict[str, int]]
    steps: int  #: timed steps per block


def default_period(workload: Workload) -> int:
    """Timed steps per block: one period of every default schedule that applies to the workload
    (the statistics through time only to a recurrent one), so that a block pays each of them as
    often as a long run does.

    Example:
        >>> default_period(build_mlp()), default_period(build_lstm())
        (100, 200)
    """
    names = ["gradients_every", "activations_every", "updates_every"]
    names += ["through_time_every"] if workload.recurrent else []
    periods = []
    for name in names:
        schedule = as_schedule(DEFAULT_OPTIONS[name], name)
        assert isinstance(schedule, (Every, DenseStart)), f"the default {name} has no period"
        periods.append(schedule.n)
    return math.lcm(*periods)


def measure_workload(
    build: Callable[[int], Workload], configs: list[Config], args: argparse.Namespace
) -> WorkloadResult:
    """Run ``args.blocks`` interleaved blocks of every configuration that applies to one workload."""
    device = torch.device(args.device)
    lanes = [Lane(config, build(args.batch_scale).to(device)) for config in configs]
    lanes = [lane for lane in lanes if lane.config.applies(lane.workload)]
    name = lanes[0].workload.name
    steps = default_period(lanes[0].workload) if args.steps is None else args.steps
    run_block(lanes[:1], args.warmup, args.warmup, 0)  # settle the allocator and caches
    seconds: dict[str, list[float]] = {lane.config.name: [] for lane in lanes}
    recorded: dict[str, dict[str, int]] = {}
    for block in range(args.blocks):
        run_block(lanes, args.warmup, steps, block)
        for lane in lanes:
            check_recorded(name, lane)
            seconds[lane.config.name].append(lane.seconds / steps)
            recorded.setdefault(lane.config.name, lane.recorded)
        print(f"  {name}: block {block + 1}/{args.blocks} done", file=sys.stderr, flush=True)
    return WorkloadResult(seconds, recorded, steps)


# -- summarising -------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and quartiles."""
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3)}


def summarise(result: WorkloadResult, configs: list[Config]) -> dict[str, Any]:
    """Plain ms/step and, per monitoring configuration, the per-block ratios and their summary."""
    plain = result.seconds["plain"]
    ratios = {}
    for config in configs[1:]:
        if config.name not in result.seconds:
            continue
        per_block = [t / p for t, p in zip(result.seconds[config.name], plain, strict=True)]
        ratios[config.name] = {**summary(per_block), "per_block": per_block}
    plain_ms = {key: value * 1e3 for key, value in summary(plain).items()}
    return {"plain_ms": plain_ms, "steps": result.steps, "ratios": ratios, "recorded": result.recorded}


def format_ratio(stats: dict[str, float]) -> str:
    return f"{stats['median']:.2f}x [{stats['q1']:.2f}-{stats['q3']:.2f}]"


def format_table(results: dict[str, dict[str, Any]], configs: list[Config]) -> str:
    """One aligned plain-text table: rows are workloads, columns plain ms/step and the ratios."""
    header = ["workload", "timed steps", "plain ms/step", *(c.name for c in configs[1:])]
    rows = [header]
    for name, result in results.items():
        cells = [name, str(result["steps"]), f"{result['plain_ms']['median']:.2f}"]
        ratios = result["ratios"]
        cells += [format_ratio(ratios[c.name]) if c.name in ratios else "-" for c in configs[1:]]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [_align(row, widths) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _align(cells: list[str], widths: list[int]) -> str:
    """The first cell left-aligned, the others right-aligned."""
    padded = [cells[0].ljust(widths[0])]
    padded += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return "  ".join(padded)


def environment(args: argparse.Namespace, configs: list[Config]) -> dict[str, Any]:
    """What the numbers were measured with."""
    return {
        "torch": torch.__version__,
        "gradmedic": gradmedic.__version__,
        "torchmortem": _version("torchmortem"),
        "wandb": _version("wandb"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "device": device_name(args.device),
        "blocks": args.blocks,
        "steps": "one period of the default schedules (per workload)" if args.steps is None else args.steps,
        "batch_scale": args.batch_scale,
        "warmup": args.warmup,
        "configs": [c.name for c in configs],
    }


def device_name(device: str) -> str:
    """``"CPU"``, or the CUDA device's name."""
    if torch.device(device).type == "cuda":
        return f"CUDA {torch.cuda.get_device_name(torch.device(device))}"
    return "CPU"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: %(default)s")
    parser.add_argument("--blocks", type=int, default=7, help="interleaved A/B blocks (default %(default)s)")
    steps = "timed steps per block (default: one period of every default schedule: 100, 200 if recurrent)"
    parser.add_argument("--steps", type=int, default=None, help=steps)
    warmup = "untimed steps per block (default %(default)s: past the default's dense start)"
    parser.add_argument("--warmup", type=int, default=50, help=warmup)
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads (%(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 blocks of 2 steps, 1 warm-up step")
    scale = "multiply every workload's batch by N (default 1): on a GPU, steps that keep it busy"
    parser.add_argument("--batch-scale", type=int, default=1, metavar="N", help=scale)
    parser.add_argument("--no-torchmortem", action="store_true", help="skip torchmortem even if installed")
    parser.add_argument("--no-wandb", action="store_true", help="skip wandb.watch even if wandb is installed")
    parser.add_argument("--no-cockpit", action="store_true", help="skip Cockpit even if it is installed")
    keep = "comma-separated configuration names to keep (default: all); plain always runs"
    parser.add_argument("--configs", default="", help=keep)
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.steps, args.warmup = 2, 2, 1
    args.workloads = [name.strip() for name in args.workloads.split(",") if name.strip()]
    args.configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in args.workloads if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    steps = 1 if args.steps is None else args.steps  # None: one period per workload
    if min(args.blocks, steps, args.threads, args.batch_scale) < 1 or args.warmup < 0:
        parser.error("--blocks, --steps, --threads and --batch-scale must be >= 1, --warmup >= 0")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r}: give cpu or cuda (cuda:1 for the second GPU)")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device!r}: give cpu or cuda (cuda:1 for the second GPU)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    return args


def setup_torch(threads: int = THREADS) -> None:
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_torch(args.threads)
    with_torchmortem = not args.no_torchmortem and torchmortem_available()
    with_wandb = not args.no_wandb and wandb_available()
    with_cockpit = not args.no_cockpit and cockpit_available()
    configs = select_configs(build_configs(with_torchmortem, with_wandb, with_cockpit), args.configs)
    if not with_torchmortem:
        print("torchmortem not measured (pip install --no-deps torchmortem to add it)", file=sys.stderr)
    if not with_cockpit:
        print(
            "Cockpit not measured (pip install cockpit-for-pytorch 'setuptools<81' to add it)",
            file=sys.stderr,
        )
    device = torch.device(args.device)
    if device.type == "cuda":  # the events are recorded on the current device's stream
        torch.cuda.set_device(device.index if device.index is not None else torch.cuda.current_device())
    results = {}
    try:
        for name in args.workloads:
            results[name] = summarise(measure_workload(WORKLOADS[name], configs, args), configs)
    finally:
        if _WANDB_RUN:
            _WANDB_RUN.pop().finish()
    print(
        f"{device_name(args.device)}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}; "
        f"batch x{args.batch_scale}; ratio = monitored / plain step time, median [IQR] over "
        f"{args.blocks} interleaved blocks (timed steps per block: in the table)"
    )
    print(format_table(results, configs))
    if args.json is not None:
        payload = {"environment": environment(args, configs), "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
