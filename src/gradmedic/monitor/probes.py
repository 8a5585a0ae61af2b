"""Hook placement and the hook callbacks of a :class:`~gradmedic.monitor.Monitor`.

The :class:`Probes` prepare one forward hook per layer when the monitor attaches (the hook
functions are made once), register them for the steps a schedule records and remove them when
such a step closes: an unrecorded step runs the model with no gradmedic hook in it. On a
recorded step a layer's forward hook puts a pre-hook on the autograd node that made its output
(the backprop signal reaches it in the backward pass) and hands the output to the collector
for the activation statistics; recurrent layers also feed the monitor's
:class:`~gradmedic._through_time_recorder.ThroughTimeRecorder`. Models with bare weights get an
:class:`~gradmedic.op_layers.OpProbe` around their forward passes instead (op layers).

Example:
    >>> from torch import nn
    >>> from gradmedic import watch
    >>> from gradmedic.hooks import count_module_hooks
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    >>> monitor = watch(model, gradients_every=2, activations_every=2)
    >>> count_module_hooks(model) > 0  # step 0 is recorded: hooks in place
    True
    >>> monitor.step()
    >>> count_module_hooks(model)  # step 1 is not: none
    0
    >>> monitor.detach()
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..errors import UnsupportedError
from ..hooks import HookSet
from ..op_layers import Discovery, OpProbe, candidate_leaves, discover

if TYPE_CHECKING:
    from .core import Monitor

_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)
_peek_functorch = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: None)


class Probes:
    """The model-side hooks of one monitor: prepared once, in place for recorded steps only.

    Args:
        monitor: the monitor they report to (its step state, layers, collector and recorder).
    """

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor
        self._probes = HookSet()  # the model's forward hooks: in place for recorded steps only
        self._activation_hooks = HookSet()
        self._installers: list[functools.partial[Any]] = []  # each registers one probe hook
        self._activation_modules: list[tuple[int, nn.Module]] = []
        self._activations_seen = False
        self._leaf_hooks: dict[tuple[int, int], Any] = {}
        self._node_hooks: dict[tuple[int, int], Any] = {}
        self.forward_calls = 0  #: layer calls seen for the first time (their forward order)
        self.ops_found = False  #: whether the op layers were searched for
        self._op_weights: dict[int, int] = {}
        self._op_biases: dict[int, int] = {}
        self._probe: OpProbe | None = None
        self.op_time: set[int] = set()  #: op layers called several times a forward pass

    def prepare(self, model: nn.Module, op_candidates: bool) -> tuple[list[nn.Module | None], list[Tensor]]:
        """Make one hook function per layer (registered by :meth:`place`); return the module of
        each layer (None: an op layer) and the op layers' leaf tensors that are not parameters."""
        monitor = self._monitor
        modules = dict(model.named_modules())
        per_layer = [modules.get(layer.name) for layer in monitor.layers]
        self._installers = []
        leaves = self._prepare_op_layers(model) if op_candidates else []
        self._node_hooks = {}
        recurrent = set(monitor._time.layers) if monitor._time is not None else set()
        on_and_off = not all(monitor._is_activation)  # a param layer's hook marks every forward pass
        self._activation_modules = []
        for index, module in enumerate(per_layer):
            if module is None:  # an op layer: reported by the OpProbe
                continue
            if index in recurrent:  # one hook per layer; only recurrent layers pay for theirs
                hook = functools.partial(self._on_recurrent_forward, index)
                self._installers.append(
                    functools.partial(module.register_forward_hook, hook, with_kwargs=True)
                )
            elif on_and_off and monitor._is_activation[index]:
                self._activation_modules.append((index, module))  # hooked by _place_activation_hooks
            else:
                hook = functools.partial(self._on_forward, index)
                self._installers.append(functools.partial(module.register_forward_hook, hook))
        return per_layer, leaves

    def place(self, recorded: bool, acts_on: bool) -> None:
        """Hook the model for a recorded step; leave it without any gradmedic hook otherwise.

        Registering the hooks again costs a few microseconds per layer (the hook functions are
        made once, in :meth:`prepare`), paid on the recorded steps only.
        """
        if not recorded:
            self.remove()
            return
        if not len(self._probes):
            for install in self._installers:
                self._probes.add(install())
        self._place_activation_hooks(acts_on)

    def remove(self) -> None:
        """Remove the model's forward hooks (each set tried even if the other fails)."""
        try:
            self._probes.remove()
        finally:
            self._activation_hooks.remove()

    def release(self) -> None:
        """Remove every hook and forget the model (the monitor detaches)."""
        try:
            self.remove()
        finally:
            self.remove_leaf_hooks()
            self.exit_probe()
            self._installers, self._activation_modules = [], []

    # -- op layers (see gradmedic.op_layers) -----------------------------------------------

    def _prepare_op_layers(self, model: nn.Module) -> list[Tensor]:
        """Hooks on the root module that find the op layers at the first forward pass with
        gradients, and then put an :class:`OpProbe` around the forward passes of recorded steps."""
        monitor = self._monitor
        leaves = {leaf.name: leaf.tensor for leaf in candidate_leaves(model).values()}
        named = dict(model.named_parameters())
        modules = dict(model.named_modules())
        self._op_weights, self._op_biases = {}, {}
        for index, layer in enumerate(monitor.layers):
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
        return [leaves[name] for name in monitor._history.params[len(named) :]]

    def _before_root_forward(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        monitor = self._monitor
        if not monitor._attached or not torch.is_grad_enabled() or self._probe is not None:
            return
        if not self.ops_found:
            found = self._discover(model, args, kwargs)
            self.ops_found = True
            monitor._add_op_layers(model, found)
        now = monitor._now
        if self._op_weights and (now.signal_on or now.acts_on or now.time_on):
            self._probe = OpProbe(self._op_weights, self._op_biases, self._on_op_output)
            self._probe.__enter__()

    def _after_root_forward(self, model: nn.Module, args: object, output: object) -> None:
        pending = self.exit_probe()
        if pending is not None and output is not None:
            self._on_op_output(*pending)

    def exit_probe(self) -> tuple[int, Tensor] | None:
        """Leave the probe's TorchFunctionMode (if entered); return the output it still held."""
        probe, self._probe = self._probe, None
        if probe is None:
            return None
        pending = probe.take()
        probe.__exit__(None, None, None)
        return pending

    def _on_op_output(self, index: int, output: Tensor) -> None:
        self._on_forward(index, None, (), output)
        monitor = self._monitor
        recorder = monitor._time
        if monitor._now.time_on and index in self.op_time and recorder is not None and monitor._attached:
            recorder.op_call(index, output)

    def _discover(self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Discovery:
        """One forward pass that finds the op layers; the monitor's hooks stay quiet during it."""
        monitor = self._monitor
        if monitor._history.metrics:  # rows already written with the layers as they were
            return Discovery(
                notes=["op layers not searched: the first forward pass came after recorded steps"]
            )
        monitor._attached = False
        try:
            return discover(model, args, kwargs)
        finally:
            monitor._attached = True

    # -- module hooks ----------------------------------------------------------------------

    def _place_activation_hooks(self, acts_on: bool) -> None:
        """Hook the activation modules on the steps that observe them, and until each was seen once
        (for the forward order); on the other steps they run without a hook, at no cost."""
        wanted = acts_on or not self._all_activations_seen()
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
            layers = self._monitor.layers
            self._activations_seen = all(layers[i].forward_index >= 0 for i, _ in self._activation_modules)
        return self._activations_seen

    def _on_forward(self, index: int, module: nn.Module | None, args: object, output: object) -> None:
        monitor = self._monitor
        if not monitor._attached or not torch.is_grad_enabled() or in_functorch():
            return  # under torch.func (vmap, grad) the tensors are wrapped: not a training step
        if _is_compiling():
            raise UnsupportedError(
                "gradmedic cannot observe a model inside torch.compile: its hooks would run once, "
                "at tracing time, and report stale numbers (torch >= 2.6 runs the recorded steps "
                "eagerly: see gradmedic.monitor.compiled). Watch the uncompiled model, or run "
                "gradmedic.checkup on it before compiling"
            )
        monitor._forward_call(output)
        layer = monitor.layers[index]
        if layer.forward_index < 0:
            layer.forward_index = self.forward_calls
            self.forward_calls += 1
        # Activation modules follow the activation schedule for their signal too: the signal
        # at their output is close to the one at the parametrised layer next to them.
        now = monitor._now
        acts_on = now.acts_on
        want_signal = acts_on if monitor._is_activation[index] else now.signal_on
        if not (want_signal or acts_on):
            return
        collector = monitor._collect
        if isinstance(output, Tensor):
            if want_signal and output.requires_grad:
                self._hook_gradient(index, output)
            if acts_on and output.is_floating_point():
                collector.observe_activation(now, index, output)
            return
        tensors = float_tensors(output)
        if want_signal:
            for tensor in tensors:
                if tensor.requires_grad:
                    self._hook_gradient(index, tensor)
        if acts_on and tensors:
            collector.observe_activation(now, index, tensors[0])

    def _on_recurrent_forward(self, index: int, module: nn.Module, args: tuple[object, ...],
                              kwargs: dict[str, object], output: object) -> None:  # fmt: skip
        """Recurrent layers: the usual statistics, then the per-step signal and the gates (on the
        ``through_time_every`` schedule)."""
        self._on_forward(index, module, args, output)
        monitor = self._monitor
        recorder = monitor._time
        if (
            monitor._attached
            and monitor._now.time_on
            and recorder is not None
            and torch.is_grad_enabled()
            and not in_functorch()
        ):
            recorder.on_forward(index, module, args, kwargs, output)

    # -- autograd hooks --------------------------------------------------------------------

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

    def remove_leaf_hooks(self) -> None:
        """Remove the hooks put on leaf tensors (a parameter returned as a layer's output)."""
        if not self._leaf_hooks:
            return
        handles, self._leaf_hooks = list(self._leaf_hooks.values()), {}
        for handle in handles:
            handle.remove()

    def _on_node_grad(self, index: int, output_nr: int, grad_outputs: tuple[Tensor | None, ...]) -> None:
        grad = grad_outputs[output_nr]
        if grad is not None and self._monitor._attached and not in_functorch():
            self._monitor._collect.signal.add(index, grad)

    def _on_grad(self, index: int, grad: Tensor) -> None:
        self._on_node_grad(index, 0, (grad,))


def float_tensors(output: object) -> list[Tensor]:
    """Floating-point tensors in a module output (a tensor, or nested tuples/lists/dicts).

    Example:
        >>> len(float_tensors((torch.ones(1), {"a": torch.ones(2)}, torch.tensor([1]))))
        2
    """
    if isinstance(output, Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in float_tensors(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in float_tensors(item)]
    return []


def in_functorch() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``...) is running: its
    tensors are wrapped, and per-sample computations are not the training step gradmedic records."""
    return _peek_functorch() is not None
