"""Layers written as functional ops on bare parameters: ``x @ W + b``, ``F.linear``, ``einsum``...

Much real code keeps its weights as bare ``nn.Parameter``s (or plain tensors with
``requires_grad=True``) of its own modules and computes with functional ops. Such a module
would be one layer to :func:`gradmedic.layers.find_layers` (the whole model, for a root module
holding ``W1, W2``). Here each *parameterised op call* of such a module becomes a layer of its
own, named after its weight (``W1``, ``blocks.0.w_q``):

- ops: matmul / ``@`` / mm, ``F.linear``, conv and transposed conv, ``einsum``, bmm / baddbmm /
  addmm, and an embedding (``F.embedding(x, C)`` or indexing ``C[x]``);
- an operand counts when it is a parameter (or a leaf tensor that requires grad) held by a
  module that is not a ``torch.nn`` layer (``nn.Linear``'s own ``F.linear`` stays the module
  layer ``fc``: no double counting), or a view of one (``W.T``);
- a bias added right after (``x @ W + b``) belongs to the same layer, whose output is then the sum;
- a module whose only op uses all its parameters and returns that op's output (a hand-written
  linear layer) stays one module layer with its module name.

:func:`discover` finds them with one forward pass (:class:`Recorder`); :class:`OpProbe` then
reports each call's output to the monitor on the steps it records.

Example:
    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.W1 = nn.Parameter(torch.randn(4, 8))
    ...         self.b1 = nn.Parameter(torch.zeros(8))
    ...         self.W2 = nn.Parameter(torch.randn(8, 2))
    ...     def forward(self, x):
    ...         return torch.tanh(x @ self.W1 + self.b1) @ self.W2
    >>> found = discover(Net(), (torch.randn(3, 4),), {})
    >>> [(op.name, op.type, op.leaves) for op in found.layers]
    [('W1', 'matmul', ['W1', 'b1']), ('W2', 'matmul', ['W2'])]
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .errors import ConfigError
from .hooks import HookSet

#: ``func.__name__`` of the parameterised ops, and the layer type each gets.
OP_TYPES: dict[str, str] = {
    "matmul": "matmul", "__matmul__": "matmul", "__rmatmul__": "matmul", "mm": "matmul",
    "linear": "linear", "einsum": "einsum", "bmm": "bmm", "baddbmm": "bmm", "addmm": "addmm",
    "conv1d": "conv1d", "conv2d": "conv2d", "conv3d": "conv3d", "conv_transpose1d": "conv_transpose1d",
    "conv_transpose2d": "conv_transpose2d", "conv_transpose3d": "conv_transpose3d",
    "embedding": "embedding", "__getitem__": "embedding",
}  # fmt: skip


def op_type(func_name: str, args: tuple[Any, ...]) -> str | None:
    """The layer type of a call (``"matmul"``...), or None if it is not a parameterised op.
    Indexing counts only as an embedding lookup (``C[x]`` with integer ``x``), not ``b[:, None]``.

    Example:
        >>> C, x = torch.zeros(5, 2), torch.tensor([1, 3])
        >>> op_type("__getitem__", (C, x)), op_type("__getitem__", (C, 0)), op_type("mm", (C, C))
        ('embedding', None, 'matmul')
    """
    if func_name == "__getitem__":
        index = args[1] if len(args) > 1 else None
        integer = isinstance(index, Tensor) and not index.is_floating_point() and index.dtype != torch.bool
        return "embedding" if integer else None
    return OP_TYPES.get(func_name)


#: Op types whose weight is a linear map (their init can be judged and changed).
WEIGHT_OP_TYPES = frozenset({"matmul", "linear", "addmm", "bmm", "conv1d", "conv2d", "conv3d"})

#: Calls that add a bias to an op's output.
BIAS_ADDS = frozenset({"add", "__add__", "__radd__"})


@dataclass
class Leaf:
    """A tensor an op layer may use as its weight: where it lives and what it is called."""

    name: str
    tensor: Tensor
    owner: str
    parameter: bool


@dataclass
class OpLayer:
    """One op layer found by :func:`discover`.

    Attributes:
        name: the qualified name of its weight (its first identified operand).
        type: the op (a key's value of :data:`OP_TYPES`).
        owner: the module that holds the weight.
        leaves: qualified names of its tensors: the weight, then a bias (if any).
        fan_in: input size of the weight's linear map (None where it has none, e.g. einsum).
        calls: how many times the op ran in the forward pass.
        recurrent: whether a call's input came from an earlier call's output (a recurrence
            written by hand, ``h = torch.tanh(x[:, t] @ W_x + h @ W_h)``: ``W_h``, not ``W_x``).
    """

    name: str
    type: str
    owner: str
    leaves: list[str]
    fan_in: int | None = None
    calls: int = 1
    recurrent: bool = False


@dataclass
class Discovery:
    """What :func:`discover` found: op layers (forward order), modules kept whole, and notes."""

    layers: list[OpLayer] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class FunctionModel(nn.Module):
    """A plain function and the leaf tensors it computes with, held by reference, as a model.

    ``FunctionModel(fn, {"W1": W1, "W2": W2})`` is what ``checkup(fn, x, y, params=...)`` builds;
    wrap a function this way to ``watch`` it (and call the model, not the function). The tensors
    are not copied or registered as parameters: gradients go to them as before. A list of tensors
    (``[C, W1, b1, ...]``) is named ``params.0``, ``params.1``...

    Example:
        >>> W = torch.randn(3, 2, requires_grad=True)
        >>> model = FunctionModel(lambda x: x @ W, {"W": W})
        >>> model(torch.ones(1, 3)).shape, model.leaves["W"] is W
        (torch.Size([1, 2]), True)
    """

    def __init__(
        self, fn: Callable[..., Any], leaves: dict[str, Tensor] | list[Tensor] | tuple[Tensor, ...]
    ) -> None:
        super().__init__()
        if isinstance(leaves, (list, tuple)):
            leaves = {f"params.{i}": tensor for i, tensor in enumerate(leaves)}
        if not isinstance(leaves, dict):
            raise ConfigError(
                f"params must be a dict of name -> tensor (or a list of tensors), got {type(leaves).__name__}"
            )
        if not callable(fn):
            raise ConfigError(f"expected a model or a function, got {type(fn).__name__}")
        for name, tensor in leaves.items():
            if not isinstance(tensor, Tensor) or not tensor.is_leaf or not tensor.requires_grad:
                raise ConfigError(
                    f"params[{name!r}] must be a leaf tensor that requires grad (as made by "
                    "torch.randn(..., requires_grad=True)); got "
                    f"{type(tensor).__name__ if not isinstance(tensor, Tensor) else 'a tensor without grad'}"
                )
        self.fn = fn
        self.leaves = dict(leaves)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def is_torch_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a layer of torch itself (its parameters are measured by module hooks).

    A subclass of one (``class MyLinear(nn.Linear)``) is one too; ``nn.ParameterList`` and
    ``nn.ParameterDict`` hold bare weights: they are not layers.

    Example:
        >>> class Scaled(nn.Linear): ...
        >>> is_torch_layer(Scaled(2, 2)), is_torch_layer(nn.ParameterList())
        (True, False)
    """
    if isinstance(module, (nn.ParameterList, nn.ParameterDict)):
        return False
    return any(
        cls.__module__.startswith("torch.") and cls is not nn.Module for cls in type(module).__mro__[:-1]
    )


def candidate_leaves(model: nn.Module) -> dict[int, Leaf]:
    """The tensors that can be op-layer weights, by ``id``: own parameters of modules that are not
    torch layers, and their tensor attributes that are leaves requiring grad.

    Example:
        >>> [leaf.name for leaf in candidate_leaves(nn.Sequential(nn.Linear(2, 2))).values()]
        []
    """
    found: dict[int, Leaf] = {}
    for module_name, module in model.named_modules():
        if is_torch_layer(module):
            continue
        prefix = f"{module_name}." if module_name else ""
        for name, param in module.named_parameters(recurse=False):
            found[id(param)] = Leaf(prefix + name, param, module_name, True)
        attributes = module.leaves if isinstance(module, FunctionModel) else vars(module)
        for name, value in _tensor_attributes(attributes):
            if _is_grad_leaf(value) and not isinstance(value, nn.Parameter) and id(value) not in found:
                found[id(value)] = Leaf(prefix + name, value, module_name, False)
    return found


def _tensor_attributes(attributes: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Attributes, and the items of lists, tuples and dicts among them (``Ws.0``, ``Ws.1``)."""
    for name, value in attributes.items():
        if isinstance(value, (list, tuple)):
            yield from ((f"{name}.{i}", item) for i, item in enumerate(value))
        elif isinstance(value, dict) and not name.startswith("_"):
            yield from ((f"{name}.{key}", item) for key, item in value.items())
        else:
            yield name, value


def extra_leaves(model: nn.Module) -> list[Tensor]:
    """The candidate leaves that are not parameters (``model.parameters()`` does not list them)."""
    return [leaf.tensor for leaf in candidate_leaves(model).values() if not leaf.parameter]


def _is_grad_leaf(value: object) -> bool:
    return isinstance(value, Tensor) and value.is_leaf and value.requires_grad and value.is_floating_point()


def operands(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[tuple[int, Tensor]]:
    """The tensors an op was called with and their positions (lists, as einsum takes, flattened)."""
    position = 0
    for value in (*args, *kwargs.values()):
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, Tensor):
                yield position, item
            position += 1


def _only(args: tuple[Any, ...], kwargs: dict[str, Any], known: Any) -> bool:
    """Whether every tensor a call takes is one of the ``known`` weights (by ``id``) or a view of one."""
    return all(id(leaf_of(tensor)) in known for _, tensor in operands(args, kwargs))


def leaf_of(tensor: Tensor) -> Tensor:
    """The leaf a view was taken of (``W.T`` -> ``W``), or ``tensor`` itself."""
    base = tensor._base
    return base if base is not None and base.is_leaf else tensor


def fan_in(func_name: str, position: int, operand: Tensor) -> int | None:
    """The input size of an op's weight operand (as ``nn.Linear``/``nn.Conv`` would count it).

    Example:
        >>> fan_in("__matmul__", 1, torch.ones(5, 3)), fan_in("linear", 1, torch.ones(3, 5))
        (5, 5)
    """
    op = OP_TYPES.get(func_name)
    if operand.dim() < 2:
        return None
    if op in ("linear", "conv1d", "conv2d", "conv3d"):
        return operand[0].numel()
    if op in ("matmul", "bmm", "addmm"):
        left = 1 if func_name in ("addmm", "baddbmm") else 0  # where the left matrix is
        right = func_name == "__rmatmul__" or position > left
        return int(operand.shape[-2] if right else operand.shape[-1])
    return None


class Recorder(TorchFunctionMode):
    """Sees, in one forward pass, which ops use which candidate leaves (see :func:`discover`)."""

    def __init__(self, leaves: dict[int, Leaf]) -> None:
        super().__init__()
        self._leaves = leaves
        self.layers: dict[int, OpLayer] = {}
        self.outputs: dict[int, list[Tensor]] = {}
        self.notes: list[str] = []
        self._last: tuple[int, Tensor] | None = None
        self._recent: tuple[int, Tensor] | None = None
        self._claimed: set[int] = set()
        self._nodes: dict[int, Any] = {}

    def __torch_function__(
        self, func: Callable[..., Any], types: object, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        op = op_type(name, args)
        if self._last is not None and op is None and _only(args, kwargs, self._leaves):
            return result  # a view of a weight (``b[:, None]``) between the op and its bias add
        last, self._last = self._last, None
        if last is not None and name in BIAS_ADDS and isinstance(result, Tensor):
            self._claim_bias(last, args, result)
        elif name in BIAS_ADDS and self._recent is not None:  # x @ W_x + h @ W_h + b: b is W_h's
            self._claim_loose(args)
        if op is not None and isinstance(result, Tensor) and result.requires_grad:
            self._record(name, op, args, kwargs, result)
        return result

    def _record(
        self, func_name: str, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Tensor
    ) -> None:
        found = [(i, t, self._leaves.get(id(leaf_of(t)))) for i, t in operands(args, kwargs)]
        if op == "embedding" and found:  # C[x] indexes its first operand; F.embedding(x, C) its second
            found = found[:1] if found[0][2] is not None else found[1:2]
        known = [(i, t, leaf) for i, t, leaf in found if leaf is not None]
        if not known:
            self._note_unknown(op, found)
            return
        matrices = [item for item in known if item[1].dim() >= 2]  # addmm(b, x, W): W, not b
        position, operand, weight = (matrices or known)[0]
        key = id(weight.tensor)
        if key not in self.layers:
            self.layers[key] = OpLayer(
                weight.name, op, weight.owner, [weight.name], fan_in(func_name, position, operand)
            )
            self._claimed.add(key)
        for _, _, other in known:  # F.linear's bias, addmm's added term
            if other is not weight and id(other.tensor) not in self._claimed:
                self._claimed.add(id(other.tensor))
                self.layers[key].leaves.append(other.name)
        layer = self.layers[key]
        previous = self.outputs.get(key)
        if previous and not layer.recurrent:
            inputs = [t for _, t, leaf in found if leaf is None]
            layer.recurrent = reaches(inputs, self._nodes[key])
        self._nodes[key] = result.grad_fn
        self.outputs.setdefault(key, []).append(result)
        self._last = self._recent = (key, result)

    def _claim_bias(self, last: tuple[int, Tensor], args: tuple[Any, ...], result: Tensor) -> None:
        key, output = last
        others = [a for a in args[:2] if a is not output]
        if len(others) != 1 or not any(a is output for a in args[:2]) or not isinstance(others[0], Tensor):
            return
        bias = self._leaves.get(id(leaf_of(others[0])))
        layer = self.layers[key]
        if bias is not None and id(bias.tensor) not in self._claimed:
            self._claimed.add(id(bias.tensor))
            layer.leaves.append(bias.name)
        if bias is not None and bias.name in layer.leaves[1:]:
            self.outputs[key][-1] = result

    def _claim_loose(self, args: tuple[Any, ...]) -> None:
        """A weight added to something else than an op's output belongs to the op called last."""
        assert self._recent is not None
        for value in args[:2]:
            leaf = self._leaves.get(id(leaf_of(value))) if isinstance(value, Tensor) else None
            if leaf is not None and id(leaf.tensor) not in self._claimed:
                self._claimed.add(id(leaf.tensor))
                self.layers[self._recent[0]].leaves.append(leaf.name)

    def _note_unknown(self, op: str, found: list[tuple[int, Tensor, Leaf | None]]) -> None:
        for _, tensor, _ in found:
            leaf = leaf_of(tensor)
            if leaf.is_leaf and leaf.requires_grad and not isinstance(leaf, nn.Parameter):
                note = (
                    f"a {op} op uses a tensor {tuple(leaf.shape)} that requires grad but is not an "
                    "attribute of the model: left out (make it a parameter, or pass params=)"
                )
                if note not in self.notes:
                    self.notes.append(note)


def reaches(tensors: list[Tensor], node: Any, limit: int = 256) -> bool:
    """Whether autograd ``node`` is among the first ``limit`` nodes of the graph behind ``tensors``
    (breadth first: a recurrence's previous step is a few nodes back).

    Example:
        >>> W = torch.ones(2, 2, requires_grad=True)
        >>> h0 = torch.ones(1, 2) @ W
        >>> reaches([torch.tanh(h0)], h0.grad_fn), reaches([torch.ones(1, 2)], h0.grad_fn)
        (True, False)
    """
    queue = deque(t.grad_fn for t in tensors if t.grad_fn is not None)
    seen: set[int] = set()
    while queue and len(seen) < limit:
        current = queue.popleft()
        if current is node:
            return True
        if id(current) in seen:
            continue
        seen.add(id(current))
        queue.extend(next_node for next_node, _ in current.next_functions if next_node is not None)
    return False


def discover(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Discovery:
    """Find the op layers of ``model`` with one forward pass on ``args``/``kwargs``.

    The pass runs with gradients enabled (an op under ``torch.no_grad`` is not part of the
    backward pass and is left out) but nothing is backpropagated; buffers and the RNG state are
    restored afterwards, so training goes on exactly as without it.
    """
    leaves = candidate_leaves(model)
    if not leaves:
        return Discovery()
    module_outputs: dict[str, object] = {}
    hooks = HookSet()
    modules = dict(model.named_modules())
    with hooks, _restored(model), torch.enable_grad():
        for owner in {leaf.owner for leaf in leaves.values()}:
            hook = _output_keeper(owner, module_outputs)
            hooks.add(modules[owner].register_forward_hook(hook))
        with Recorder(leaves) as recorder:
            _unwrapped(model)(*args, **kwargs)
    return _decide(recorder, leaves, module_outputs)


def discover_on(model: nn.Module, inputs: Any) -> Discovery:
    """:func:`discover` on ``inputs`` as ``checkup`` takes them: a tensor, a tuple of positional
    arguments or a dict of keyword arguments; nothing to find without inputs."""
    if inputs is None or not candidate_leaves(model):
        return Discovery()
    if isinstance(inputs, dict):
        return discover(model, (), inputs)
    return discover(model, tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,), {})


def leaf_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The candidate leaves of ``model`` by qualified name."""
    return {leaf.name: leaf.tensor for leaf in candidate_leaves(model).values()}


def as_out_in(weight: Tensor, op: OpLayer) -> Tensor | None:
    """An op layer's weight seen as ``nn.Linear``/``nn.Conv`` store theirs (``[out, in, ...]``),
    a view of it (``x @ W`` keeps ``W`` as ``[in, out]``), or None if its input side is unknown.

    Example:
        >>> W = torch.zeros(5, 3)
        >>> as_out_in(W, OpLayer("W", "matmul", "", ["W"], fan_in=5)).shape
        torch.Size([3, 5])
    """
    if op.type not in WEIGHT_OP_TYPES or op.fan_in is None or weight.dim() < 2:
        return None
    if op.type.startswith("conv") or (weight.dim() == 2 and weight.shape[1] == op.fan_in):
        return weight
    return weight.T if weight.dim() == 2 and weight.shape[0] == op.fan_in else None


def _unwrapped(model: nn.Module) -> nn.Module:
    """The module a DataParallel/DDP wrapper runs (its own forward would wait for a backward pass)."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        inner = model.module
        assert isinstance(inner, nn.Module)
        return inner
    return model


def _output_keeper(name: str, outputs: dict[str, object]) -> Callable[[nn.Module, object, object], None]:
    def keep(module: nn.Module, args: object, output: object) -> None:
        outputs.setdefault(name, output)

    return keep


def _decide(recorder: Recorder, leaves: dict[int, Leaf], module_outputs: dict[str, object]) -> Discovery:
    """Keep whole a module whose single op uses all its tensors and makes its output; split the rest."""
    by_owner: dict[str, list[int]] = {}
    for key, layer in recorder.layers.items():
        by_owner.setdefault(layer.owner, []).append(key)
    owned = {owner: {leaf.name for leaf in leaves.values() if leaf.owner == owner} for owner in by_owner}
    found = Discovery(notes=list(recorder.notes))
    for owner, keys in by_owner.items():
        layer = recorder.layers[keys[0]]
        outputs = recorder.outputs[keys[0]]
        whole = len(keys) == 1 and set(layer.leaves) == owned[owner] and len(outputs) == 1
        if not (whole and owner != "" and _same_values(module_outputs.get(owner), outputs[0])):
            found.split.append(owner)
    found.layers = [layer for layer in recorder.layers.values() if layer.owner in found.split]
    for key, layer in recorder.layers.items():
        layer.calls = len(recorder.outputs[key])
    return found


def _same_values(output: object, op_output: Tensor) -> bool:
    """Whether a module's output is its op's output, or a view of it (``addmm(...).view(...)``)."""
    return isinstance(output, Tensor) and (output is op_output or output._base is op_output)


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Restore the buffers (BatchNorm statistics) and RNG states after a discovery pass."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


class OpProbe(TorchFunctionMode):
    """During a recorded forward pass, hands each op layer's output to ``report(index, output)``.

    ``weights`` maps ``id`` of each op layer's weight to its layer index, ``biases`` the ``id`` of
    its bias to the same index. An output is reported before the next op runs, so an in-place op
    on it (``h.relu_()``) cannot change what is measured; with its bias added, the sum is reported.
    """

    def __init__(
        self, weights: dict[int, int], biases: dict[int, int], report: Callable[[int, Tensor], None]
    ) -> None:
        super().__init__()
        self._weights = weights
        self._biases = biases
        self._known = {*weights, *biases}
        self._report = report
        self._pending: tuple[int, Tensor] | None = None

    def __torch_function__(
        self, func: Callable[..., Any], types: object, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        op = op_type(name, args)
        pending = self._pending
        bias_add = pending is not None and name in BIAS_ADDS and self._is_bias_add(pending, args)
        if pending is not None and not bias_add and (op is not None or not _only(args, kwargs, self._known)):
            self.finish()  # before the call: an in-place op on the output cannot change what is measured
        result = func(*args, **kwargs)
        if bias_add and pending is not None:  # the layer's output is the sum
            self._pending = (pending[0], result) if isinstance(result, Tensor) else pending
            self.finish()
        if op is not None and isinstance(result, Tensor) and result.requires_grad:
            index = self._layer_of(op, args, kwargs)
            if index is not None:
                self._pending = (index, result)
        return result

    def _layer_of(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
        for _, tensor in operands(args, kwargs):
            index = self._weights.get(id(leaf_of(tensor)))
            if index is not None:
                return index
        return None

    def _is_bias_add(self, pending: tuple[int, Tensor], args: tuple[Any, ...]) -> bool:
        index, output = pending
        pair = args[:2]
        if len(pair) != 2 or not any(a is output for a in pair):
            return False
        other = pair[1] if pair[0] is output else pair[0]
        return isinstance(other, Tensor) and self._biases.get(id(leaf_of(other))) == index

    def finish(self) -> None:
        """Report the op output waiting for the next call."""
        pending = self.take()
        if pending is not None:
            self._report(*pending)

    def take(self) -> tuple[int, Tensor] | None:
        """The (layer index, output) still waiting (at the end of the forward pass), and forget it."""
        pending, self._pending = self._pending, None
        return pending

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pending = None
        super().__exit__(exc_type, exc, tb)


def weight_gain(weight: Tensor, fan: int | None) -> float:
    """``std(weight) * sqrt(fan_in)`` of an op layer's weight (NaN without a fan-in).

    Example:
        >>> round(weight_gain(torch.ones(2, 2), 4), 3)
        0.0
    """
    if fan is None or weight.numel() < 2:
        return math.nan
    return float(weight.detach().float().std()) * math.sqrt(fan)
