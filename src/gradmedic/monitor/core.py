"""The :class:`Monitor`: a thin facade over the jobs of this package, filling a
:class:`~gradmedic.history.History`.

Each job lives in its own module: the options and their checks (:mod:`.options`), hook
placement and the hook callbacks (:mod:`.probes`), a fresh state per step (:mod:`.step_state`),
the assembly of a step's statistics (:mod:`.collect`), the check of unrecorded steps
(:mod:`.guard`), the GradScaler's private state (:mod:`.amp`), the copy to the host and the
non-finite events (:mod:`.flush`), the exchange between ranks (:mod:`.distributed`) and the
sums over the shards of a model sharded by ``fully_shard`` (:mod:`.fsdp`). The monitor keeps
the step bookkeeping: which step is open, when it closes, what is pending.

Example:
    >>> from torch import nn
    >>> model = nn.Linear(3, 1)  # the monitor holds a weak reference: keep the model alive
    >>> monitor = Monitor(model).attach()
    >>> monitor.attached, monitor.step_index
    (True, 0)
    >>> monitor.detach()
"""

from __future__ import annotations

import warnings
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .. import sinks as sinks_module
from .. import stats
from .._providers import provided
from .._through_time_recorder import ThroughTimeRecorder
from ..errors import ConfigError, ModelError, UnsupportedError
from ..history import History, NonFiniteEvent, row_record, write_line
from ..hooks import HookSet
from ..layers import RECURRENT_TYPES, LayerInfo, find_layers, require_module
from ..op_layers import Discovery, FunctionModel, candidate_leaves, extra_leaves
from ..schedules import Schedule
from . import amp, compiled, fsdp
from .collect import ONE, Collector, as_row
from .distributed import REDUCTIONS, Reducer, StepValues, wants_reduction
from .flush import StepRecord, backward_param_order, flush_records
from .guard import GradientGuard
from .options import Options, check_loss
from .probes import Probes, float_tensors
from .step_state import StepState

if TYPE_CHECKING:
    from ..diagnosis import Report


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
        through_time_every: schedule of the statistics through time of recurrent layers (see below).
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
    norm per gradient (a fused ``torch._foreach_norm`` on an accelerator), kept on the device,
    checks them, so the first non-finite gradient is still reported (a ``param_grad_norm``
    event, at the next flush) at its exact step and parameter (see :mod:`gradmedic.monitor.guard`).

    Recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU`` and the cells) also get, on the steps of
    the ``through_time_every`` schedule (default: every 200 steps), their backprop signal at each time step
    and their gate statistics (``time_signal``, ``time_length``, ``gate_mean``,
    ``gate_saturated``; see :mod:`gradmedic.recurrent_stats`). For the fused layers this replays
    the recurrence once after the backward pass, step by step, which costs about one more
    training step of that layer: hence a schedule of its own, sparser than the activation
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
        model = _uncompiled(model)
        self._shards = fsdp.shard_sums(model)  # None unless sharded by fully_shard (FSDP2)
        _refuse_meta(model)
        opts = Options.parse(options)
        if optimizer is not None:  # before weakref.ref(optimizer), which fails on a non-optimizer
            _check_optimizer_owns(model, optimizer)
        self._model_ref = weakref.ref(model)
        self._optimizer_ref = weakref.ref(optimizer) if optimizer is not None else None
        self.options = opts
        self._signal_schedule: Schedule = opts.gradients_every
        self._acts_schedule: Schedule = opts.activations_every
        self._update_schedule: Schedule = opts.updates_every
        self._time_schedule: Schedule = opts.through_time_every
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
        self._time = ThroughTimeRecorder(recurrent, len(self.layers)) if recurrent else None
        self._log_path = opts.log_path
        self._sinks = opts.sinks
        self._scaler = opts.scaler
        self._reducer: Reducer | None = None
        if wants_reduction(model, opts.distributed):
            widths = {metric: self._history.width(metric) for metric in REDUCTIONS}
            self._reducer = Reducer(widths, self._flush_every)
        self._writer = self._reducer is None or self._reducer.rank == 0
        self._hooks = HookSet()  # the optimizer's step hooks: in place while attached
        self._probes = Probes(self)  # the model's hooks: in place for recorded steps only
        self._collect = Collector(self.layers, amp.Scaler(self._scaler, self._optimizer_ref), self._shards)
        self._guard = GradientGuard()
        self._is_activation = [layer.kind == "activation" for layer in self.layers]
        self._attached = False
        self._step = 0
        self._pending: list[StepRecord] = []
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
            compiled.release(self)
            self._remove_hooks()
            raise
        return self

    def _remove_hooks(self) -> None:
        """Remove the optimizer's hooks and the probes (each set tried even if another fails)."""
        try:
            self._hooks.remove()
        finally:
            self._probes.remove()

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
        compiled.release(self)
        try:
            self._hooks.remove()
        finally:
            self._probes.release()
        self._attached = False
        self._collect.release()
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
        """Apply gradmedic's rules to the run so far (see :func:`gradmedic.diagnosis.diagnose`).

        The diagnosis is a higher layer than the monitor: it provides this function when it is
        imported (``import gradmedic`` does), see :mod:`gradmedic._providers`.
        """
        report = provided("diagnose")(self.history, self._model_ref())
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
        if self._optimizer_ref is None or self._step > 0 or self._probes.forward_calls == 0:
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
        """Prepare the probes (registered for the recorded steps only) and what the collector measures."""
        modules, leaves = self._probes.prepare(model, self._op_candidates)
        kinds = [
            stats.activation_kind(module if is_activation else None)
            for module, is_activation in zip(modules, self._is_activation)
        ]
        param_layer = _param_layer_index(self._history.params, self.layers)
        self._collect.bind([*model.parameters(), *leaves], param_layer, kinds)

    def _place_probes(self) -> None:
        """Hook the model for a recorded step; leave it without any gradmedic hook otherwise.

        While a recorded step is open, compiled code runs eagerly, through the hooks (see
        :mod:`.compiled`); an unrecorded step runs the compiled graph untouched.
        """
        if self._now.recorded:
            compiled.hold(self)  # until the step's backward is collected
        else:
            compiled.release(self)
        self._probes.place(self._now.recorded, self._now.acts_on)

    def _hook_optimizer(self) -> None:
        """The optimizer's step hooks close each step (and decide whether the next is recorded)."""
        optimizer = self._optimizer_ref() if self._optimizer_ref is not None else None
        if optimizer is not None:
            self._hooks.add(optimizer.register_step_pre_hook(self._before_optimizer_step))
            self._hooks.add(optimizer.register_step_post_hook(self._after_optimizer_step))
        self._collect.snapshot = False

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
        self._register(model)
        self._place_probes()

    def _add_op_time_layers(self, found: Discovery) -> None:
        """Op layers of a recurrence written by hand get statistics through time (one step per call)."""
        column = {layer.name: i for i, layer in enumerate(self.layers)}
        repeated = [column[op.name] for op in found.layers if op.recurrent]
        self._probes.op_time = set(repeated)
        self._history.time_layers.extend(repeated)
        if self._time is not None or repeated:  # as wide as the layers are now
            self._time = ThroughTimeRecorder(list(self._history.time_layers), len(self.layers))
        self._now.time_on = self._time is not None and self._time_schedule(self._step)

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

    def _forward_call(self, output: object) -> None:
        """A hooked forward call: a step the GradScaler skipped is dropped; the first call of a
        step notes its precision and the scaler's round."""
        if self._scaler is not None and self._scaler_skipped():
            self._start_step()  # the GradScaler skipped the last step: its numbers are dropped
        if not self._now.forward_seen:
            self._first_forward(output)

    def _first_forward(self, output: object) -> None:
        """At the first forward call of a step: the low-precision dtype, the scaler's round."""
        self._now.forward_seen = True
        tensors = float_tensors(output)
        self._now.low_dtype = _low_precision_dtype(tensors[0]) if tensors else None
        if self._now.low_dtype is not None:
            self._history.meta.setdefault("low_precision", str(self._now.low_dtype).removeprefix("torch."))
        if self._scaler is not None:
            self._now.scaler_round = self._collect.scaler.round()

    def _scaler_skipped(self) -> bool:
        """Whether ``scaler.update()`` ran since this step's first forward without an optimizer step.

        ``GradScaler.update()`` replaces its per-optimizer state; when that happens and the
        optimizer's step never closed ours, the scaler skipped it (non-finite gradients).
        """
        if not self._now.forward_seen or self._optimizer_ref is None:
            return False
        if self._collect.scaler.round() is self._now.scaler_round:
            return False
        skipped = int(self._history.meta.get("scaler_skipped_steps", 0)) + 1
        self._history.meta["scaler_skipped_steps"] = skipped
        return True

    # -- step bookkeeping ------------------------------------------------------------------

    def _start_step(self) -> None:
        """Open step ``self._step``: a fresh state, the buffers emptied, the probes placed (or removed)."""
        self._probes.remove_leaf_hooks()
        self._collect.clear()
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
            self._collect.put_gradients(record)
        else:  # unrecorded: one fused norm call, kept on the device, catches a non-finite gradient
            self._guard.check(self._step, self._collect.grads())
        if self._now.acts_on and self._now.low_dtype is not None:
            self._collect.put_underflow(record, self._now.low_dtype)
        self._collect.put_activations(record, self._now)
        if self._time is not None and self._now.time_on:
            for metric, (values, observed) in self._time.collect(self._collect.scaler.unscaled).items():
                record.put(metric, values, observed)
        if snapshot:
            self._take_snapshot()
        compiled.release(self)  # the optimizer's step and the next steps run compiled code again

    def _take_snapshot(self) -> None:
        if self._update_schedule(self._step) and self._optimizer_ref is not None:
            self._collect.take_snapshot()

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
        if any(p.grad is not None for p in self._collect.params):
            raise UnsupportedError(
                "gradients arrived but no forward pass went through the watched modules: compiled "
                "code ran that gradmedic cannot see (torch < 2.6 has no torch.compiler.set_stance to "
                "run the recorded steps eagerly, or the compiled code was called from inside another "
                "compiled region), and its numbers would be missing. Train the uncompiled model, or "
                "upgrade torch"
            )

    def _close_step(self, loss: Tensor | float | None) -> None:
        record = self._now.record
        self._put_update_ratio(record)
        if self._shards is not None:  # one collective for the step's sums over shards
            self._shards.exchange()
        loss = loss if loss is not None else self._now.pending_loss
        if loss is not None and self._now.signal_on:
            record.put("loss", as_row(loss), ONE)
        if record.values:
            self._pending.append(record)
        self._last_closed = record
        if self._optimizer_ref is None and self._update_schedule(self._step):
            self._collect.take_snapshot()
        self._step += 1
        self._start_step()
        if self._reducer is not None:
            self._exchange()
        elif len(self._pending) >= self._flush_every:
            self.flush()

    def _put_update_ratio(self, record: StepRecord) -> None:
        """The update ratio across the update just made (without an optimizer: made since the last step)."""
        sums = self._collect.update_sums()
        if sums is None:
            return
        if self._optimizer_ref is None:  # the update measured now was made from the last step
            record = self._pending_record_of_last_step()
        self._collect.put_update_ratio(record, sums)

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
            self._now.pending_loss = as_row(loss)
        elif "loss" not in last.values and self._signal_schedule(last.step):
            last.put("loss", as_row(loss), ONE)
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


# -- helpers -------------------------------------------------------------------------------


def watch(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, **options: Any) -> Monitor:
    """Attach a :class:`Monitor` to ``model`` (and ``optimizer``) and return it.

    Use it as a context manager, or call ``detach()`` when done. See :class:`Monitor` for the
    options; ``gradients_every=1, activations_every=1, updates_every=1`` records everything every step.

    Example:
        >>> from torch import nn
        >>> monitor = watch(nn.Linear(3, 1))
        >>> monitor.attached
        True
        >>> monitor.detach()
    """
    return Monitor(model, optimizer, **options).attach()


def _uncompiled(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile(module)`` wraps (its ``OptimizedModule``), else ``model``:
    hooks go on the original module, which the compiled one calls (see :mod:`.compiled`)."""
    original = getattr(model, "_orig_mod", None) if type(model).__name__ == "OptimizedModule" else None
    return original if isinstance(original, nn.Module) else model


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


__all__ = ["Monitor", "watch"]
