"""The :class:`Monitor`: hooks on a model (and optimizer) that fill a :class:`~gradmedic.history.History`.

Its jobs live beside it in this package: the options and their checks (:mod:`.options`), the
check of unrecorded steps (:mod:`.guard`), the copy to the host and the non-finite events
(:mod:`.flush`), the GradScaler's private state (:mod:`.amp`), the exchange between ranks
(:mod:`.distributed`) and the sums over the shards of a model sharded by ``fully_shard`` (:mod:`.fsdp`).

Example:
    >>> from torch import nn
    >>> model = nn.Linear(3, 1)  # the monitor holds a weak reference: keep the model alive
    >>> monitor = Monitor(model).attach()
    >>> monitor.attached, monitor.step_index
    (True, 0)
    >>> monitor.detach()
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import sinks as sinks_module
from .. import stats
from .._activation_buffer import COPY_BELOW_BYTES, ActivationBuffer
from .._signal_buffer import SignalBuffer, Taken
from .._time_recorder import TimeRecorder
from ..errors import ConfigError, ModelError, UnsupportedError
from ..history import (
    History,
    NonFiniteEvent,
    row_record,
    write_line,
)
from ..hooks import HookSet
from ..layers import RECURRENT_TYPES, LayerInfo, find_layers, require_module
from ..op_layers import Discovery, FunctionModel, OpProbe, candidate_leaves, discover, extra_leaves
from ..schedules import Schedule
from . import amp, fsdp
from .distributed import REDUCTIONS, Reducer, StepValues, wants_reduction
from .flush import StepRecord, backward_param_order, flush_records
from .guard import GradientGuard
from .options import Options, check_loss
from .step_state import StepState

if TYPE_CHECKING:
    from ..diagnosis import Report

_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


def _float_tensors(output: object) -> list[Tensor]:
    """Floating-point tensors in a module output (a tensor, or nested tuples/lists/dicts)."""
    if isinstance(output, Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _float_tensors(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in _float_tensors(item)]
    return []


class Monitor:
    """Watches a model while it trains; build it with :func:`gradmedic.watch`.

    Args:
        model: the module to observe.
        optimizer: if given, its ``step()`` closes each monitored step and the update ratio is
            measured exactly across it; otherwise call :meth:`step` once per training step.
        every: schedule of the cheap statistics (backprop signal, weight-gradient norms, loss);
            by default every step for the first 50 steps (the window of the loss rules),
            then every 20th.
        activations_every: schedule of the activation statistics.
        updates_every: schedule of the update-to-weight ratio.
        time_every: schedule of the statistics through time of recurrent layers (see below).
        flush_every: how many steps values stay on the device before they are copied to the host.
        max_rows: the most rows kept per metric, covering the whole run at a resolution that
            falls with age (see :class:`~gradmedic.history.History`).
        log_path: if given, a JSON Lines file the history is streamed to at each flush.
        sinks: objects written at each flush with summary series (see :mod:`gradmedic.sinks`):
            ``CSVSink``, ``JSONLinesSink``, the TensorBoard and W&B sinks of
            :mod:`gradmedic.integrations`; closed by :meth:`detach`.
        scaler: the ``torch.amp.GradScaler`` of a mixed-precision run: recorded gradient norms
            are divided by its scale (a device tensor: no host synchronisation), and steps it
            skips (non-finite gradients) are left out when the optimizer is given.
        distributed: ``"auto"`` (reduce over ranks when ``model`` is a
            ``DistributedDataParallel``, or sharded by ``fully_shard``, in a process group of
            several ranks), ``True`` or ``False``; see :mod:`gradmedic.monitor.distributed` and
            :mod:`gradmedic.monitor.fsdp`.

    A schedule is a positive step interval, ``"log"``, ``None`` (off) or a function step -> bool.

    Hooks only on recorded steps: the model's forward hooks (and through them the autograd-node
    hooks) are registered for a step that a schedule records and removed when it closes; the
    closing step (``optimizer.step()``, or :meth:`step` without an optimizer) decides for the
    next one. An unrecorded step runs the model with no gradmedic hook in it; at its close one
    fused ``torch._foreach_norm`` over the gradients, kept on the device, checks them, so the
    first non-finite gradient is still reported (a ``param_grad_norm`` event, at the next flush)
    at its exact step and parameter (see :mod:`gradmedic._gradient_guard`).

    Recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` and the cells) also get, on the steps of
    the ``time_every`` schedule (default: every 100 steps), their backprop signal at each time step
    and their gate statistics (``time_signal``, ``time_length``, ``gate_mean``,
    ``gate_saturated``; see :mod:`gradmedic.recurrent_stats`). For the fused layers this replays
    the recurrence once after the backward pass, step by step, which costs about as much as one
    more training step of that layer: hence a schedule of its own, sparser than the activation
    statistics'. Call :meth:`step` (or let the optimizer's ``step()`` do it) before the weights
    change.

    Cost: on a recorded step the statistics are computed on the device and kept there; nothing is
    copied to the host and the host never waits for the device until a flush, which copies every
    pending value in one non-blocking transfer per device and synchronises once. On an
    accelerator the output gradients are held through the backward pass and their norms taken
    with the weight gradients' in one fused ``torch._foreach_norm`` (see
    :mod:`gradmedic._signal_buffer`), and small outputs are copied on activation steps and
    measured together (:mod:`gradmedic._activation_buffer`); on CPU each output gradient's norm
    is taken in the hook, while it is in cache. A sparse gradient (``nn.Embedding(sparse=True)``)
    is measured by its coalesced values, which on a GPU waits for the device.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **options: Any):
        require_module(model)
        if type(model).__name__ == "OptimizedModule":
            raise UnsupportedError(
                "gradmedic cannot watch a torch.compile'd module: watch the original model "
                "(gradmedic.watch(model)) and compile it afterwards"
            )
        self._shards = fsdp.shard_sums(model)  # None unless sharded by fully_shard (FSDP2)
        _refuse_meta(model)
        opts = Options.parse(options)
        if optimizer is not None:  # before weakref.ref(optimizer), which fails on a non-optimizer
            _check_optimizer_owns(model, optimizer)
        self._model_ref = weakref.ref(model)
        self._optimizer_ref = weakref.ref(optimizer) if optimizer is not None else None
        self.options = opts
        self._signal_schedule: Schedule = opts.every
        self._acts_schedule: Schedule = opts.activations_every
        self._update_schedule: Schedule = opts.updates_every
        self._time_schedule: Schedule = opts.time_every
        self._flush_every = opts.flush_every
        # bare weights: op layers (see op_layers); under FSDP the weights a forward pass uses are
        # gathered copies, so the modules holding them are the layers
        self._op_candidates = bool(candidate_leaves(model)) and self._shards is None
        self.layers: list[LayerInfo] = find_layers(model, required=not self._op_candidates)
        params = [name for name, _ in model.named_parameters()]
        meta = {"model": type(model).__name__, "options": {k: repr(v) for k, v in opts.given.items()}}
        modules = dict(model.named_modules())
        recurrent = [i for i, lay in enumerate(self.layers) if isinstance(modules[lay.name], RECURRENT_TYPES)]
        if self._shards is not None:  # the replay through time would need the unsharded weights
            recurrent = []
        self._history = History(self.layers, params, opts.max_rows, meta, time_layers=recurrent)
        self._time = TimeRecorder(recurrent, len(self.layers)) if recurrent else None
        self._log_path = opts.log_path
        self._sinks = opts.sinks
        self._scaler = opts.scaler
        self._reducer: Reducer | None = None
        if wants_reduction(model, opts.distributed):
            widths = {metric: self._history.width(metric) for metric in REDUCTIONS}
            self._reducer = Reducer(widths, self._flush_every)
        self._writer = self._reducer is None or self._reducer.rank == 0
        self._hooks = HookSet()  # the optimizer's step hooks: in place while attached
        self._probes = HookSet()  # the model's forward hooks: in place for recorded steps only
        self._activation_hooks = HookSet()
        self._installers: list[functools.partial[Any]] = []  # each registers one probe hook
        self._guard = GradientGuard()
        self._activation_modules: list[tuple[int, nn.Module]] = []
        self._activations_seen = False
        self._modules: list[nn.Module | None] = []  # None: an op layer
        self._params: list[Tensor] = []  # the parameters, then the op layers' other leaf tensors
        self._is_activation = [layer.kind == "activation" for layer in self.layers]
        self._kinds: list[stats.ActivationKind] = []
        self._param_layer: list[int] = []
        self._weights = _WeightCopy()
        self._constants: dict[tuple[Any, ...], Tensor] = {}
        self._masks: dict[tuple[Any, ...], Any] = {}
        self._scratch: Tensor | None = None
        self._scratch_views: dict[torch.Size, Tensor] = {}
        self._snapshot = False
        self._attached = False
        self._step = 0
        self._pending: list[StepRecord] = []
        self._leaf_hooks: dict[tuple[int, int], Any] = {}
        self._node_hooks: dict[tuple[int, int], Any] = {}
        self._forward_calls = 0
        self._signal = SignalBuffer()
        self._act_copies = ActivationBuffer()
        self._ops_found = False
        self._op_weights: dict[int, int] = {}
        self._op_biases: dict[int, int] = {}
        self._probe: OpProbe | None = None
        self._op_time: set[int] = set()  # op layers called several times a forward pass
        self._now = self._open_state()
        self._last_closed: StepRecord | None = None

    # -- public API ------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Whether the hooks are in place."""
        return self._attached

    @property
    def step_index(self) -> int:
        """Index of the step being recorded now (the number of steps closed so far)."""
        return self._step

    @property
    def history(self) -> History:
        """The record so far (pending device values are flushed first).

        In a distributed run this never waits for the other ranks: it holds the steps reduced so
        far; :meth:`flush` and :meth:`detach` (collectives) bring in the rest.
        """
        if self._reducer is None:
            self.flush()
        else:
            self._write(self._reducer.poll())
        return self._history

    def attach(self) -> Monitor:
        """Register the hooks. Attaching an attached monitor does nothing."""
        if self._attached:
            return self
        model = self._model_ref()
        if model is None:
            raise ModelError("the model of this monitor was garbage-collected; watch a live model")
        self._start_log()  # before any hook: a file that cannot be written leaves nothing attached
        try:
            self._register(model)
            self._hook_optimizer()
            self._attached = True
            self._start_step()
        except BaseException:
            self._attached = False
            self._remove_hooks()
            self._activation_modules = []
            raise
        return self

    def _remove_hooks(self) -> None:
        """Remove the optimizer's hooks and the probes (each set tried even if another fails)."""
        try:
            self._hooks.remove()
        finally:
            try:
                self._probes.remove()
            finally:
                self._activation_hooks.remove()

    def _start_log(self) -> None:
        """Write the log file's header line (when the file does not exist yet)."""
        if not self._writer or self._log_path is None or self._log_path.exists():
            return
        try:
            with self._log_path.open("w", encoding="utf-8") as out:
                write_line(out, self._history.header())
        except OSError as error:
            raise ConfigError(
                f"log_path={str(self._log_path)!r} cannot be written: {error.strerror}"
            ) from None

    def detach(self) -> None:
        """Remove every hook, flush pending values and drop every reference to the model."""
        self._remove_hooks()
        self._remove_leaf_hooks()
        self._exit_probe()
        self._attached = False
        self._modules = []
        self._installers = []
        self._activation_modules = []
        self._params = []
        self._snapshot = False
        self._weights = _WeightCopy()
        self._constants = {}
        self._scratch = None
        self._scratch_views = {}
        self._signal.clear()  # gradients held mid-step (with create_graph, they hold the graph)
        self._act_copies.clear()
        if self._time is not None:
            self._time.reset()
        self._warn_if_never_stepped()
        self.flush()
        if self._writer:
            for sink in self._sinks:
                sink.close()

    def step(self, loss: Tensor | float | None = None) -> None:
        """Mark the end of a training step (call it after ``backward()``).

        With an optimizer given to :func:`watch`, ``optimizer.step()`` ends the step and this
        only records ``loss`` (for the step in progress, or the one that just ended).

        Raises:
            ConfigError: if the monitor is detached, or ``loss`` is not a number or a one-element tensor.
        """
        if not self._attached:
            raise ConfigError("this monitor is detached: call attach() or use it as a context manager")
        check_loss(loss)
        if self._optimizer_ref is None:
            self._collect_backward()
            self._close_step(loss)
            return
        if loss is not None:
            self._record_loss(loss)

    def diagnose(self) -> Report:
        """Apply gradmedic's rules to the run so far (see :func:`gradmedic.diagnosis.diagnose`)."""
        from ..diagnosis import diagnose

        report = diagnose(self.history, self._model_ref())
        if self._writer:
            sinks_module.write_diagnosis(self._sinks, max(self._step - 1, 0), self._history, report)
        return report

    def flush(self) -> None:
        """Copy pending values to the host, into the history (and the log file and sinks, if any).

        One non-blocking copy per device, then one synchronisation: the only place, with reading
        :attr:`history`, where the host waits for the device. In a distributed run this is a
        collective (every rank must call it): the ranks reduce their pending steps together;
        :meth:`detach` calls it.
        """
        records, self._pending = self._pending, []
        self._write_guard_event()
        if self._reducer is not None:
            values = [(r.step, r.values, r.observed) for r in records]
            self._write(self._reducer.finish(values, self._step))
            return
        self._write(records)

    def _write(self, records: list[StepRecord] | list[StepValues]) -> None:
        """Append host copies of ``records`` to the history; stream them to the log file and sinks."""
        steps = [r if isinstance(r, StepRecord) else StepRecord(r[0], r[1], r[2]) for r in records]
        if not steps:
            return
        rows, events = flush_records(steps, self._history)
        if not self._writer:
            return
        if self._log_path is not None:
            with self._log_path.open("a", encoding="utf-8") as out:
                for metric, step, row in rows:
                    write_line(out, row_record(metric, step, row))
                for event in events:
                    write_line(out, event.to_dict())
        sinks_module.write_rows(self._sinks, self._history, rows)

    def _write_guard_event(self) -> None:
        """The first non-finite gradient of the unrecorded steps since the last flush, as an event
        (the parameter first met by the backward pass among those at fault)."""
        if self._shards is None:
            found = self._guard.first_non_finite()
        else:  # a collective: a non-finite shard on any rank is reported by all
            found = self._guard.first_non_finite(len(self._history.params), self._shards.min_over_ranks)
        if found is None:
            return
        step, columns = found
        rank = {column: r for r, column in enumerate(backward_param_order(self._history))}
        column = min(columns, key=lambda c: rank.get(c, len(rank)))
        event = NonFiniteEvent(step, "param_grad_norm", self._history.params[column])
        self._history.add_event(event)
        if self._writer and self._log_path is not None:
            with self._log_path.open("a", encoding="utf-8") as out:
                write_line(out, event.to_dict())

    def _warn_if_never_stepped(self) -> None:
        """An optimizer was given but its ``step()`` never ran while forward passes did: say why
        the record is empty instead of leaving it silently so."""
        if self._optimizer_ref is None or self._step > 0 or self._forward_calls == 0:
            return
        warnings.warn(
            "gradmedic recorded nothing: the optimizer given to watch() never ran step(), which is "
            "what closes each monitored step. Call optimizer.step() in the loop, or watch(model) "
            "without the optimizer and call monitor.step() after each backward()",
            stacklevel=3,
        )

    def __enter__(self) -> Monitor:
        return self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"Monitor({len(self.layers)} layers, step {self._step}, {state})"

    # -- hooks -----------------------------------------------------------------------------

    def _register(self, model: nn.Module) -> None:
        """Prepare one forward hook per layer, registered by :meth:`_place_probes` for the recorded
        steps only; everything the hooks look up per call is computed here, once."""
        modules = dict(model.named_modules())
        self._modules = [modules.get(layer.name) for layer in self.layers]  # None: an op layer
        self._params = list(model.parameters())
        self._installers = []
        if self._op_candidates:
            self._register_op_layers(model)
        self._param_layer = _param_layer_index(self._history.params, self.layers)
        self._kinds = [
            stats.activation_kind(module if is_activation else None)
            for module, is_activation in zip(self._modules, self._is_activation)
        ]
        self._node_hooks = {}
        self._constants = {}
        recurrent = set(self._time.layers) if self._time is not None else set()
        on_and_off = not all(self._is_activation)  # a param layer's hook marks every forward pass
        self._activation_modules = []
        for index, module in enumerate(self._modules):
            if module is None:  # an op layer: reported by the OpProbe
                continue
            if index in recurrent:  # one hook per layer; only recurrent layers pay for theirs
                hook = functools.partial(self._on_recurrent_forward, index)
                self._installers.append(
                    functools.partial(module.register_forward_hook, hook, with_kwargs=True)
                )
            elif on_and_off and self._is_activation[index]:
                self._activation_modules.append((index, module))  # hooked by _place_activation_hooks
            else:
                hook = functools.partial(self._on_forward, index)
                self._installers.append(functools.partial(module.register_forward_hook, hook))

    def _hook_optimizer(self) -> None:
        """The optimizer's step hooks close each step (and decide whether the next is recorded)."""
        optimizer = self._optimizer_ref() if self._optimizer_ref is not None else None
        if optimizer is not None:
            self._hooks.add(optimizer.register_step_pre_hook(self._before_optimizer_step))
            self._hooks.add(optimizer.register_step_post_hook(self._after_optimizer_step))
        self._snapshot = False

    def _place_probes(self) -> None:
        """Hook the model for a recorded step; leave it without any gradmedic hook otherwise.

        Registering the hooks again costs a few microseconds per layer (the hook functions are
        made once, in :meth:`_register`), paid on the recorded steps only.
        """
        if not self._now.recorded:
            self._probes.remove()
            self._activation_hooks.remove()
            return
        if not len(self._probes):
            for install in self._installers:
                self._probes.add(install())
        self._place_activation_hooks()

    # -- op layers (see gradmedic.op_layers) -----------------------------------------------

    def _register_op_layers(self, model: nn.Module) -> None:
        """Hooks on the root module that find the op layers at the first forward pass with
        gradients, and then put an :class:`OpProbe` around the forward passes of recorded steps."""
        leaves = {leaf.name: leaf.tensor for leaf in candidate_leaves(model).values()}
        named = dict(model.named_parameters())
        self._params += [leaves[name] for name in self._history.params[len(named) :]]
        modules = dict(model.named_modules())
        self._op_weights, self._op_biases = {}, {}
        for index, layer in enumerate(self.layers):
            if layer.name in modules or layer.name not in leaves:
                continue
            self._op_weights[id(leaves[layer.name])] = index
            self._op_biases.update({id(leaves[name]): index for name in layer.params[1:] if name in leaves})
        self._installers.append(
            functools.partial(model.register_forward_pre_hook, self._before_root_forward, with_kwargs=True)
        )
        self._installers.append(
            functools.partial(model.register_forward_hook, self._after_root_forward, always_call=True)
        )

    def _before_root_forward(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not self._attached or not torch.is_grad_enabled() or self._probe is not None:
            return
        if not self._ops_found:
            found = self._discover(model, args, kwargs)
            self._ops_found = True
            self._add_op_layers(model, found)
        if self._op_weights and (self._now.signal_on or self._now.acts_on or self._now.time_on):
            self._probe = OpProbe(self._op_weights, self._op_biases, self._on_op_output)
            self._probe.__enter__()

    def _after_root_forward(self, model: nn.Module, args: object, output: object) -> None:
        pending = self._exit_probe()
        if pending is not None and output is not None:
            self._on_op_output(*pending)

    def _exit_probe(self) -> tuple[int, Tensor] | None:
        """Leave the probe's TorchFunctionMode (if entered); return the output it still held."""
        probe, self._probe = self._probe, None
        if probe is None:
            return None
        pending = probe.take()
        probe.__exit__(None, None, None)
        return pending

    def _on_op_output(self, index: int, output: Tensor) -> None:
        self._on_forward(index, None, (), output)
        if self._now.time_on and index in self._op_time and self._time is not None and self._attached:
            self._time.op_call(index, output)

    def _discover(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Discovery:
        """One forward pass that finds the op layers; the monitor's hooks stay quiet during it."""
        if self._history.metrics:  # rows already written with the layers as they were
            return Discovery(
                notes=["op layers not searched: the first forward pass came after recorded steps"]
            )
        self._attached = False
        try:
            return discover(model, args, kwargs)
        finally:
            self._attached = True

    def _add_op_layers(self, model: nn.Module, found: Discovery) -> None:
        """Put the op layers found in place of the modules they split (in their columns, so no
        other column moves), the rest after; then hook the model again."""
        used = {name for op in found.layers for name in op.leaves}
        free = []
        for index, layer in enumerate(self.layers):  # modules whose weights the ops took
            if layer.kind == "param" and used.intersection(layer.params):
                leftover = [name for name in layer.params if name not in used]
                if leftover:
                    layer.params = leftover  # the module keeps the parameters no op took
                else:
                    free.append(index)
        named = set(self._history.params)
        for op in found.layers:
            info = LayerInfo(op.name, op.type, "param", list(op.leaves))
            if free:
                self.layers[free.pop(0)] = info
            else:
                self.layers.append(info)
                self._is_activation.append(False)
            self._history.params.extend(name for name in op.leaves if name not in named)
        self._add_op_time_layers(found)
        meta = self._history.meta
        meta["op_layers"] = {op.name: {"type": op.type, "fan_in": op.fan_in} for op in found.layers}
        if found.notes:
            meta["op_layer_notes"] = list(found.notes)
        if self._reducer is not None:
            widths = {metric: self._history.width(metric) for metric in REDUCTIONS}
            self._reducer = Reducer(widths, self._flush_every)
        self._probes.remove()
        self._activation_hooks.remove()
        self._register(model)
        self._place_probes()

    def _add_op_time_layers(self, found: Discovery) -> None:
        """Op layers of a recurrence written by hand get statistics through time (one step per call)."""
        column = {layer.name: i for i, layer in enumerate(self.layers)}
        repeated = [column[op.name] for op in found.layers if op.recurrent]
        self._op_time = set(repeated)
        self._history.time_layers.extend(repeated)
        if self._time is not None or repeated:  # as wide as the layers are now
            self._time = TimeRecorder(list(self._history.time_layers), len(self.layers))
        self._now.time_on = self._time is not None and self._time_schedule(self._step)

    def _place_activation_hooks(self) -> None:
        """Hook the activation modules on the steps that observe them, and until each was seen once
        (for the forward order); on the other steps they run without a hook, at no cost."""
        wanted = self._now.acts_on or not self._all_activations_seen()
        if wanted == (len(self._activation_hooks) > 0):
            return
        if not wanted:
            self._activation_hooks.remove()
            return
        for index, module in self._activation_modules:
            hook = functools.partial(self._on_forward, index)
            self._activation_hooks.add(module.register_forward_hook(hook))

    def _all_activations_seen(self) -> bool:
        if not self._activations_seen:
            seen = [self.layers[i].forward_index >= 0 for i, _ in self._activation_modules]
            self._activations_seen = all(seen)
        return self._activations_seen

    def _on_forward(self, index: int, module: nn.Module | None, args: object, output: object) -> None:
        if not self._attached or not torch.is_grad_enabled() or _in_functorch():
            return  # under torch.func (vmap, grad) the tensors are wrapped: not a training step
        if _is_compiling():
            raise UnsupportedError(
                "gradmedic cannot observe a model inside torch.compile: its hooks would run once, "
                "at tracing time, and report stale numbers. Watch the uncompiled model, or run "
                "gradmedic.checkup on it before compiling"
            )
        if self._scaler is not None and self._scaler_skipped():
            self._start_step()  # the GradScaler skipped the last step: its numbers are dropped
        if not self._now.forward_seen:
            self._first_forward(output)
        layer = self.layers[index]
        if layer.forward_index < 0:
            layer.forward_index = self._forward_calls
            self._forward_calls += 1
        # Activation modules follow the activation schedule for their signal too: the signal
        # at their output is close to the one at the parametrised layer next to them.
        acts_on = self._now.acts_on
        want_signal = acts_on if self._is_activation[index] else self._now.signal_on
        if not (want_signal or acts_on):
            return
        if isinstance(output, Tensor):
            if want_signal and output.requires_grad:
                self._hook_gradient(index, output)
            if acts_on and output.is_floating_point():
                self._observe_activation(index, output)
            return
        tensors = _float_tensors(output)
        if want_signal:
            for tensor in tensors:
                if tensor.requires_grad:
                    self._hook_gradient(index, tensor)
        if acts_on and tensors:
            self._observe_activation(index, tensors[0])

    def _observe_activation(self, index: int, output: Tensor) -> None:
        """Activation statistics of one call, by the path :func:`_activation_path` chooses."""
        kind = self._kinds[index]
        path = _activation_path(output)
        if path == "copied":
            self._act_copies.add(index, output, kind)
        elif path == "at once":
            nan = self._constant((math.nan,), torch.float32, output.device).view(())
            self._now.acts.setdefault(index, []).append(stats.device_activation_stats(output, kind, nan))
        else:
            scratch = self._scratch_for(output) if kind.band is not None else None
            self._now.acts.setdefault(index, []).append(stats.host_activation_stats(output, kind, scratch))

    def _scratch_for(self, output: Tensor) -> Tensor:
        """A float32 CPU buffer shaped like ``output`` for the saturation count, kept between calls:
        one flat buffer as large as the largest output, and a view of it per shape."""
        view = self._scratch_views.get(output.shape)
        if view is not None:
            return view
        if self._scratch is None or self._scratch.numel() < output.numel():
            self._scratch = torch.empty(output.numel(), dtype=torch.float32)
            self._scratch_views = {}
        if len(self._scratch_views) >= _CACHE_SIZE:
            self._scratch_views = {}
        view = self._scratch_views[output.shape] = self._scratch[: output.numel()].view(output.shape)
        return view

    def _on_recurrent_forward(self, index: int, module: nn.Module, args: tuple[object, ...],
                              kwargs: dict[str, object], output: object) -> None:  # fmt: skip
        """Recurrent layers: the usual statistics, then the per-step signal and the gates (on the
        ``time_every`` schedule)."""
        self._on_forward(index, module, args, output)
        if (
            self._attached
            and self._now.time_on
            and self._time is not None
            and torch.is_grad_enabled()
            and not _in_functorch()
        ):
            self._time.on_forward(index, module, args, kwargs, output)

    def _hook_gradient(self, index: int, tensor: Tensor) -> None:
        """Have the gradient w.r.t. ``tensor`` (as it is now) reported to :meth:`_on_node_grad`.

        A pre-hook on the autograd node that made the tensor sees the same gradient as a tensor
        hook registered now (before any in-place change), at a third of the cost.
        """
        node = tensor.grad_fn
        if node is None:  # a leaf (a parameter returned as is) outlives the step: hook it once
            key = (index, id(tensor))
            if key not in self._leaf_hooks:
                self._leaf_hooks[key] = tensor.register_hook(functools.partial(self._on_grad, index))
            return
        key = (index, tensor.output_nr)
        hook = self._node_hooks.get(key)
        if hook is None:
            hook = self._node_hooks[key] = functools.partial(self._on_node_grad, index, tensor.output_nr)
        node.register_prehook(hook)

    def _remove_leaf_hooks(self) -> None:
        if not self._leaf_hooks:
            return
        handles, self._leaf_hooks = list(self._leaf_hooks.values()), {}
        for handle in handles:
            handle.remove()

    def _on_node_grad(self, index: int, output_nr: int, grad_outputs: tuple[Tensor | None, ...]) -> None:
        grad = grad_outputs[output_nr]
        if grad is not None and self._attached and not _in_functorch():
            self._signal.add(index, grad)

    def _on_grad(self, index: int, grad: Tensor) -> None:
        self._on_node_grad(index, 0, (grad,))

    def _before_optimizer_step(self, optimizer: object, args: object, kwargs: object) -> None:
        if _closure_given(args, kwargs):  # forward and backward run inside step(): collect after
            self._now.closure_step = True
            self._take_snapshot()
            return
        self._collect_backward()

    def _after_optimizer_step(self, optimizer: object, args: object, kwargs: object) -> None:
        if self._now.closure_step:
            self._now.closure_step = False
            self._collect_backward(snapshot=False)
        self._close_step(None)

    # -- mixed precision -------------------------------------------------------------------

    def _first_forward(self, output: object) -> None:
        """At the first forward call of a step: the low-precision dtype, the scaler's round."""
        self._now.forward_seen = True
        tensors = _float_tensors(output)
        self._now.low_dtype = _low_precision_dtype(tensors[0]) if tensors else None
        if self._now.low_dtype is not None:
            self._history.meta.setdefault("low_precision", str(self._now.low_dtype).removeprefix("torch."))
        if self._scaler is not None:
            self._now.scaler_round = amp.scaler_round(self._scaler)

    def _scaler_skipped(self) -> bool:
        """Whether ``scaler.update()`` ran since this step's first forward without an optimizer step.

        ``GradScaler.update()`` replaces its per-optimizer state; when that happens and the
        optimizer's step never closed ours, the scaler skipped it (non-finite gradients).
        """
        if not self._now.forward_seen or self._optimizer_ref is None:
            return False
        if amp.scaler_round(self._scaler) is self._now.scaler_round:
            return False
        skipped = int(self._history.meta.get("scaler_skipped_steps", 0)) + 1
        self._history.meta["scaler_skipped_steps"] = skipped
        return True

    def _grad_scale(self) -> Tensor | None:
        """The GradScaler's scale in effect for this step (a device tensor), or None."""
        return amp.loss_scale(self._scaler)

    def _weight_grads_scaled(self) -> bool:
        """Whether ``.grad`` still holds scaled gradients (``scaler.unscale_`` has not run)."""
        optimizer = self._optimizer_ref() if self._optimizer_ref is not None else None
        return amp.grads_still_scaled(self._scaler, optimizer)

    def _unscaled(self, squared: Tensor, scaled: bool = True) -> Tensor:
        """Squared norms divided by the square of the loss scale (when ``scaled``)."""
        scale = self._grad_scale()
        if scale is None or not scaled:
            return squared
        return squared / scale.to(squared.device, torch.float64).square()

    # -- step bookkeeping ------------------------------------------------------------------

    def _start_step(self) -> None:
        """Open step ``self._step``: a fresh state, the buffers emptied, the probes placed (or removed)."""
        self._remove_leaf_hooks()
        self._signal.clear()
        self._act_copies.clear()
        if self._time is not None:
            self._time.reset()
        self._now = self._open_state()
        if self._attached:
            self._place_probes()

    def _open_state(self) -> StepState:
        step = self._step
        time_on = self._time is not None and self._time_schedule(step)
        return StepState.open(step, self._signal_schedule(step), self._acts_schedule(step), time_on)

    def _collect_backward(self, snapshot: bool = True) -> None:
        """Gather this step's backprop signal and weight gradients (before the update)."""
        record = self._now.record
        if self._now.signal_on and not self._now.forward_seen:
            self._refuse_unseen_forward()
        if self._now.signal_on:
            self._put_gradients(record)
        else:  # unrecorded: one fused norm call, kept on the device, catches a non-finite gradient
            self._guard.check(self._step, self._grads())
        if self._now.acts_on and self._now.low_dtype is not None:
            self._put_underflow(record)
        self._put_activations(record)
        if self._time is not None and self._now.time_on:
            for metric, (values, observed) in self._time.collect(self._unscaled).items():
                record.put(metric, values, observed)
        if snapshot:
            self._take_snapshot()

    def _take_snapshot(self) -> None:
        if self._update_schedule(self._step) and self._optimizer_ref is not None:
            self._snapshot = self._weights.take(self._params, self._shards is not None)

    def _grads(self) -> list[Tensor | None]:
        """The parameters' gradients (under FSDP, this rank's shards of them)."""
        if self._shards is None:
            return [p.grad for p in self._params]
        return fsdp.local_grads(self._params)

    def _weight_tensors(self) -> list[Tensor]:
        """The parameters (under FSDP, this rank's shards of them)."""
        return self._params if self._shards is None else fsdp.local_params(self._params)

    def _over_shards(self, then: functools.partial[None], *sums: Tensor) -> None:
        """``then(*sums)`` now; under FSDP with ``sums`` summed over the ranks' shards, at the close."""
        if self._shards is None:
            then(*sums)
        else:
            self._shards.queue(then, *sums)

    def _refuse_unseen_forward(self) -> None:
        """Gradients without a forward pass through the hooks: compiled code ran instead (or a
        :class:`~gradmedic.op_layers.FunctionModel`'s function was called, not the model)."""
        model = self._model_ref()
        if isinstance(model, FunctionModel) and any(t.grad is not None for t in model.leaves.values()):
            raise ModelError(
                "gradients arrived but the watched FunctionModel was not called: call the model "
                "(net = FunctionModel(fn, params); loss = loss_fn(net(x), y)), not the function, so "
                "gradmedic sees the forward pass"
            )
        if any(p.grad is not None for p in self._params):
            raise UnsupportedError(
                "gradients arrived but no forward pass went through the watched modules: a model "
                "compiled with torch.compile before watch() runs code gradmedic cannot see, and its "
                "numbers would be missing. Call gradmedic.watch(model) before torch.compile(model), "
                "or train the uncompiled model"
            )

    def _close_step(self, loss: Tensor | float | None) -> None:
        record = self._now.record
        self._put_update_ratio(record)
        if self._shards is not None:  # one collective for the step's sums over shards
            self._shards.exchange()
        loss = loss if loss is not None else self._now.pending_loss
        if loss is not None and self._now.signal_on:
            record.put("loss", _as_row(loss), _ONE)
        if record.values:
            self._pending.append(record)
        self._last_closed = record
        if self._optimizer_ref is None and self._update_schedule(self._step):
            self._snapshot = self._weights.take(self._params, self._shards is not None)
        self._step += 1
        self._start_step()
        if self._reducer is not None:
            self._exchange()
        elif len(self._pending) >= self._flush_every:
            self.flush()

    def _exchange(self) -> None:
        """Distributed: send a complete window to the other ranks; write what has come back."""
        reducer = self._reducer
        assert reducer is not None
        ready = reducer.poll()
        if reducer.due(self._step):
            values = [(r.step, r.values, r.observed) for r in self._pending]
            more, keep = reducer.launch(values)
            kept = {step for step, _, _ in keep}
            self._pending = [r for r in self._pending if r.step in kept]
            ready += more
        self._write(ready)

    def _record_loss(self, loss: Tensor | float) -> None:
        """With an optimizer: the loss belongs to the open step, or to the one just closed."""
        last = self._last_closed
        if self._now.forward_seen or last is None:
            self._now.pending_loss = _as_row(loss)
        elif "loss" not in last.values and self._signal_schedule(last.step):
            last.put("loss", _as_row(loss), _ONE)
            if not self._is_pending(last):  # already flushed: the loss goes on its own
                loss_only = StepRecord(last.step)
                loss_only.put("loss", last.values["loss"], last.observed["loss"])
                self._pending.append(loss_only)

    def _is_pending(self, record: StepRecord) -> bool:
        return any(r is record for r in self._pending)

    def _pending_record_of_last_step(self) -> StepRecord:
        """The pending record of the step closed last, or a new pending one for that step."""
        last = self._last_closed
        if last is not None and last.step == self._step - 1 and self._is_pending(last):
            return last
        record = StepRecord(self._step - 1)
        self._pending.append(record)
        return record

    # -- statistics of one step ------------------------------------------------------------

    def _put_gradients(self, record: StepRecord) -> None:
        """The backprop signal and the weight-gradient norms, from one fused norm call for both."""
        grads = self._grads()
        with_grad = tuple(i for i, g in enumerate(grads) if g is not None)
        present = grads if len(with_grad) == len(grads) else [grads[i] for i in with_grad]
        taken = self._signal.take(extra=present)  # type: ignore[arg-type]
        n = len(self.layers)
        if taken.norms is None:  # no gradient anywhere: a signal row that observes no layer
            zeros = torch.zeros(n, dtype=torch.float64)
            record.put("signal_norm", zeros, self._layer_mask(()))
            record.put("signal_rms", zeros, self._layer_mask(()))
            return
        squares = self._unscaled_squares(taken.norms.square(), len(taken.layers))
        bins = (*taken.layers, *(n + self._param_layer[i] for i in with_grad))  # signal, then weights
        sums = stats.grouped_sums(squares, self._constant(bins, torch.long, squares.device), 2 * n)
        self._put_signal(record, taken, sums[:n])
        if with_grad:
            self._put_weight_grads(record, taken, squares, sums[n:], with_grad)

    def _put_signal(self, record: StepRecord, taken: Taken, sums: Tensor) -> None:
        """Per layer, the norm and RMS of the gradients at its outputs (several calls add up)."""
        numel = [0] * len(self.layers)
        for layer, count in zip(taken.layers, taken.numels):
            numel[layer] += count
        counts = self._constant(tuple(max(c, 1) for c in numel), torch.float64, sums.device)
        observed = self._layer_mask(tuple(i for i, c in enumerate(numel) if c > 0))
        record.put("signal_norm", sums.sqrt(), observed)
        record.put("signal_rms", sums.div_(counts).sqrt_(), observed)

    def _put_weight_grads(
        self, record: StepRecord, taken: Taken, squares: Tensor, sums: Tensor, with_grad: tuple[int, ...]
    ) -> None:
        """Per parameter and per layer (``sums``), the weight-gradient norm."""
        signals = len(taken.layers)
        assert taken.norms is not None
        if self._shards is not None:  # squares of local shards: summed over the ranks first
            self._shards.queue(functools.partial(self._put_shard_grads, record, with_grad), squares[signals:])
            return
        per_param = squares[signals:].sqrt() if self._scaler is not None else taken.norms[signals:]
        self._put_grad_norms(record, per_param, sums, with_grad)

    def _put_shard_grads(self, record: StepRecord, with_grad: tuple[int, ...], squares: Tensor) -> None:
        """FSDP: the weight-gradient norms from the squared norms of the parameters' gradients."""
        groups = self._constant(tuple(self._param_layer[i] for i in with_grad), torch.long, squares.device)
        sums = stats.grouped_sums(squares, groups, len(self.layers))
        self._put_grad_norms(record, squares.sqrt(), sums, with_grad)

    def _put_grad_norms(
        self, record: StepRecord, per_param: Tensor, sums: Tensor, with_grad: tuple[int, ...]
    ) -> None:
        """Record the norms per parameter (``per_param``, of those in ``with_grad``) and per layer."""
        if len(with_grad) < len(self._params):  # zeros where there is no gradient (masked out)
            where = self._constant(with_grad, torch.long, per_param.device)
            per_param = per_param.new_zeros(len(self._params)).index_copy_(0, where, per_param)
        observed_params, observed_layers = self._grad_masks(with_grad)
        record.put("param_grad_norm", per_param, observed_params)
        record.put("weight_grad_norm", sums.sqrt(), observed_layers)

    def _unscaled_squares(self, squares: Tensor, signals: int) -> Tensor:
        """``squares`` (the signal's first ``signals``, then the weight gradients') divided by the
        square of the GradScaler's scale where the gradients are still scaled."""
        if self._scaler is None:
            return squares
        squares[:signals] = self._unscaled(squares[:signals])  # the backward pass ran on the scaled loss
        squares[signals:] = self._unscaled(squares[signals:], self._weight_grads_scaled())
        return squares

    def _put_underflow(self, record: StepRecord) -> None:
        """Per layer, the fraction of non-zero weight-gradient values below the low dtype's smallest normal.

        Measured on the values as the backward pass made them (scaled by the GradScaler's
        scale), so a gradient already unscaled is compared with ``tiny / scale``.
        """
        assert self._now.low_dtype is not None
        all_grads = self._grads()
        with_grad = [i for i, g in enumerate(all_grads) if g is not None and g.is_floating_point()]
        if not with_grad:
            return
        grads = [all_grads[i] for i in with_grad]
        tiny: Tensor | float = torch.finfo(self._now.low_dtype).tiny
        scale = self._grad_scale()
        if scale is not None and not self._weight_grads_scaled():
            tiny = torch.finfo(self._now.low_dtype).tiny / scale.to(grads[0].device, torch.float32)  # type: ignore[union-attr]
        under, nonzero = stats.underflow_counts(grads, tiny)  # type: ignore[arg-type]
        groups = self._constant(tuple(self._param_layer[i] for i in with_grad), torch.long, under.device)
        n = len(self.layers)
        under, nonzero = stats.grouped_sums(under, groups, n), stats.grouped_sums(nonzero, groups, n)
        observed = np.zeros(n, dtype=bool)
        observed[[self._param_layer[i] for i in with_grad]] = True
        self._over_shards(functools.partial(self._put_underflow_fraction, record, observed), under, nonzero)

    def _put_underflow_fraction(
        self, record: StepRecord, observed: np.ndarray, under: Tensor, nonzero: Tensor
    ) -> None:
        fraction = torch.where(nonzero > 0, under / nonzero.clamp(min=1), torch.nan)
        record.put("grad_underflow", fraction, observed)

    def _put_activations(self, record: StepRecord) -> None:
        """Per layer, the mean of its calls' activation statistics (NaN rows for the others)."""
        for index, row in self._act_copies.take():
            self._now.acts.setdefault(index, []).append(row)
        acts, self._now.acts = self._now.acts, {}
        if not acts:
            return
        rows = {index: _mean_row(calls) for index, calls in acts.items()}
        width = len(stats.ACTIVATION_FIELDS)
        devices = [row.device for row in rows.values() if isinstance(row, Tensor)]
        if not devices:  # CPU: one tensor for the whole step, from host floats
            nan_row = [math.nan] * width
            block = torch.tensor([rows.get(i, nan_row) for i in range(len(self.layers))], dtype=torch.float32)
        else:  # on the device of the first such layer (a model spread over devices is gathered there)
            device = devices[0]
            nan = self._constant((math.nan,) * width, torch.float32, device)
            tensors = [_on_device(rows[i], device) if i in rows else nan for i in range(len(self.layers))]
            block = torch.stack(tensors)
        observed = self._layer_mask(tuple(sorted(acts)))
        for column, metric in enumerate(stats.ACTIVATION_FIELDS):
            record.put(metric, block[:, column], observed)

    def _put_update_ratio(self, record: StepRecord) -> None:
        """Per layer, ``||w_after - w_before|| / ||w_before||`` across the update just made."""
        if not self._snapshot:
            return
        self._snapshot = False
        trainable, before = self._weights.indices, self._weights.buffers
        if not trainable:  # nothing to measure (a model whose op layers were never called)
            return
        weights = self._weight_tensors()
        after = [weights[i].detach() for i in trainable]
        weight_sq = stats.squared_norms(before)
        torch._foreach_sub_(before, after)  # the copy becomes the update (its sign does not matter)
        delta_sq = stats.squared_norms(before)
        groups = self._constant(tuple(self._param_layer[i] for i in trainable), torch.long, delta_sq.device)
        n = len(self.layers)
        weight_sq = stats.grouped_sums(weight_sq, groups, n)
        delta_sq = stats.grouped_sums(delta_sq, groups, n)
        observed = self._layer_mask(tuple(sorted({self._param_layer[i] for i in trainable})))
        if self._optimizer_ref is None:  # the update measured now was made from the last step
            record = self._pending_record_of_last_step()
        self._over_shards(functools.partial(self._put_ratio, record, observed), weight_sq, delta_sq)

    def _put_ratio(
        self, record: StepRecord, observed: np.ndarray, weight_sq: Tensor, delta_sq: Tensor
    ) -> None:
        ratio = (delta_sq / weight_sq).sqrt_()
        ratio = torch.where(weight_sq > 0, ratio, torch.nan)  # undefined for all-zero weights
        record.put("update_ratio", ratio, observed)

    def _constant(self, values: tuple[Any, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """A small constant tensor on ``device``, made once and copied there without a host sync."""
        key = (values, dtype, device)
        cached = self._constants.get(key)
        if cached is None:
            if len(self._constants) >= _CACHE_SIZE:  # e.g. output sizes that change every step
                self._constants.clear()
            cached = self._constants[key] = _to_device(torch.tensor(values, dtype=dtype), device)
        return cached

    def _layer_mask(self, columns: tuple[int, ...]) -> np.ndarray:
        """A read-only mask over the layers, True at ``columns``, shared by the steps that have the same."""
        return self._mask(len(self.layers), columns)

    def _grad_masks(self, with_grad: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the parameters with a gradient and of the layers they belong to."""
        masks = self._masks.get(("grads", with_grad))
        if masks is None:
            layers = tuple(sorted({self._param_layer[i] for i in with_grad}))
            masks = (self._mask(len(self._params), with_grad), self._layer_mask(layers))
            self._masks[("grads", with_grad)] = masks
        return masks

    def _mask(self, width: int, columns: tuple[int, ...]) -> np.ndarray:
        key = (width, columns)
        mask = self._masks.get(key)
        if mask is None:
            if len(self._masks) >= _CACHE_SIZE:
                self._masks.clear()
            mask = np.zeros(width, dtype=bool)
            mask[list(columns)] = True
            mask.flags.writeable = False
            self._masks[key] = mask
        return mask


class _WeightCopy:
    """A copy of the trainable weights before an update, in buffers reused from one copy to the next.

    ``take`` copies with one ``torch._foreach_copy_`` (no allocation once the buffers exist);
    the update ratio then turns the copy into the update in place with ``torch._foreach_sub_``.
    """

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.buffers: list[Tensor] = []

    def take(self, params: list[Tensor], sharded: bool = False) -> bool:
        """Copy the parameters that require a gradient (``sharded``: their local shards); return True."""
        indices = [i for i, p in enumerate(params) if p.requires_grad]
        sources = [params[i].detach() for i in indices]
        if sharded:
            sources = fsdp.local_params(sources)
        if indices != self.indices or not _same_layout(self.buffers, sources):
            self.indices, self.buffers = indices, [torch.empty_like(t) for t in sources]
        if sources:
            torch._foreach_copy_(self.buffers, sources)
        return True


def _same_layout(buffers: list[Tensor], sources: list[Tensor]) -> bool:
    return len(buffers) == len(sources) and all(
        b.shape == s.shape and b.dtype == s.dtype and b.device == s.device for b, s in zip(buffers, sources)
    )


# -- helpers -------------------------------------------------------------------------------


def watch(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **options: Any) -> Monitor:
    """Attach a :class:`Monitor` to ``model`` (and ``optimizer``) and return it.

    Use it as a context manager, or call ``detach()`` when done. See :class:`Monitor` for the
    options; ``every=1, activations_every=1, updates_every=1`` records everything every step.

    Example:
        >>> from torch import nn
        >>> monitor = watch(nn.Linear(3, 1))
        >>> monitor.attached
        True
        >>> monitor.detach()
    """
    return Monitor(model, optimizer, **options).attach()


def _refuse_meta(model: nn.Module) -> None:
    """Parameters on the ``meta`` device hold no values: there is nothing to measure."""
    meta = next((name for name, p in model.named_parameters() if p.is_meta), None)
    if meta is not None:
        raise UnsupportedError(
            f"parameter {meta!r} is on the meta device (shapes without values): gradmedic has nothing "
            "to measure. Materialise the model first, e.g. model.to_empty(device='cpu') and initialise it"
        )


def _check_optimizer_owns(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}; "
            "pass it as watch(model, optimizer) or leave it out and call monitor.step()"
        )
    owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not any(id(p) in owned for p in [*model.parameters(), *extra_leaves(model)]):
        raise ConfigError(
            f"the {type(optimizer).__name__} given does not own any parameter of "
            f"{type(model).__name__}: build it from model.parameters() (or pass the optimizer "
            "that trains this model)"
        )


def _param_layer_index(params: list[str], layers: list[LayerInfo]) -> list[int]:
    """For each parameter (the History's ``params`` order), the column of the layer owning it."""
    owner = {name: i for i, layer in enumerate(layers) for name in layer.params}
    return [owner[name] for name in params]


def _in_functorch() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``...) is running: its
    tensors are wrapped, and per-sample computations are not the training step gradmedic records."""
    return _peek_functorch() is not None


_peek_functorch = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: None)


def _closure_given(args: object, kwargs: object) -> bool:
    """Whether ``optimizer.step`` was called with a closure (Lightning, LBFGS).

    The step hooks get the call's positional arguments with the optimizer first.
    """
    if isinstance(kwargs, dict) and kwargs.get("closure") is not None:
        return True
    return isinstance(args, tuple) and any(callable(arg) for arg in args[1:2])


def _low_precision_dtype(output: Tensor) -> torch.dtype | None:
    """float16 or bfloat16 when the forward pass runs in it (autocast, or a half model), else None."""
    device = output.device.type
    try:
        if torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
    except (TypeError, AttributeError):  # torch < 2.4: no per-device autocast queries
        pass
    return output.dtype if output.dtype in (torch.float16, torch.bfloat16) else None


#: How many small constants (index tensors, masks) a monitor keeps before it starts over.
_CACHE_SIZE = 256

#: The observed mask of a one-column metric (the loss).
_ONE = np.ones(1, dtype=bool)
_ONE.flags.writeable = False


def _activation_path(output: Tensor) -> str:
    """How an output's activation statistics are taken: ``"host"`` on CPU (summed in host
    memory); on an accelerator, ``"copied"`` for an output below
    :data:`~gradmedic._activation_buffer.COPY_BELOW_BYTES` (measured with the copies of its kind
    after the backward pass: launches saved), else ``"at once"`` (five kernels in the hook: a large
    output is read fewer times than a copy and a stack would read it)."""
    if output.is_cpu:
        return "host"
    return "copied" if output.numel() * output.element_size() < COPY_BELOW_BYTES else "at once"


def _mean_row(calls: list[Tensor | list[float]]) -> Tensor | list[float]:
    """The mean of the activation statistics of a layer's calls in one step (all on one device)."""
    if len(calls) == 1:
        return calls[0]
    tensors = [call for call in calls if isinstance(call, Tensor)]
    if tensors:
        return torch.stack(tensors).mean(dim=0)
    return [sum(column) / len(calls) for column in zip(*calls)]


def _on_device(row: Tensor | list[float], device: torch.device) -> Tensor:
    if isinstance(row, Tensor):
        return row.to(device, non_blocking=True)
    return _to_device(torch.tensor(row, dtype=torch.float32), device)


def _to_device(host: Tensor, device: torch.device) -> Tensor:
    """``host`` (a new CPU tensor) on ``device``; to CUDA through pinned memory, without a host sync."""
    if device.type == "cpu":
        return host
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def _as_row(value: Tensor | float) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().reshape(-1)[:1].float()
    return torch.tensor([float(value)])


__all__ = ["Monitor", "watch"]
