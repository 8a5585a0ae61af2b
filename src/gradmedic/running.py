"""Running a model: call it on any batch, compute its loss, and leave it exactly as found.

The helpers every layer above needs to run a user's model: the checkup, the trial, the remedies
and the activation tracer call a model through them, so a batch is given the same way everywhere
and the same errors say what to change.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model, notes = nn.Linear(3, 2), []
    >>> loss = compute_loss(call_model(model, torch.randn(4, 3)), torch.tensor([0, 1, 1, 0]), None, notes)
    >>> notes, loss.requires_grad, describe_inputs({"x": torch.zeros(4, 3)})
    (['loss: cross-entropy (integer targets)'], True, '{x: (4, 3)}')
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError, GradmedicError, ModelError, UnsupportedError, from_user_code
from .hooks import HookSet
from .op_layers import extra_leaves

SURROGATE_NOTE = (
    "no targets/loss given: backpropagated the surrogate loss 0.5 * mean over the batch of the "
    "sum of squared outputs (its gradient is the output itself)"
)

LossFn = Callable[..., Tensor]


def forward_without_grad(model: nn.Module, inputs: Any, hooks: HookSet | None = None) -> Any:
    """Call ``model`` on ``inputs`` once without gradients and return its output; the model is
    left as found (see :func:`preserved`) and ``hooks`` are removed afterwards, even after an error.

    Example:
        >>> from gradmedic.hooks import HookSet
        >>> layer, seen = nn.Linear(3, 2), []
        >>> hooks = HookSet()
        >>> hooks.add(layer.register_forward_hook(lambda m, args, out: seen.append(out.shape)))
        >>> tuple(forward_without_grad(layer, torch.randn(4, 3), hooks).shape), seen, len(hooks)
        ((4, 2), [torch.Size([4, 2])], 0)
    """
    with hooks or HookSet(), preserved(model), torch.no_grad():
        return call_model(model, inputs)


def check_batch(inputs: Any, targets: Any, loss_fn: Any) -> None:
    """Refuse, before the model is touched, a batch that cannot be diagnosed.

    Raises:
        ConfigError: an empty batch (no example: the statistics would be 0/0), targets that are
            not a tensor, a ``loss_fn`` that is not callable.

    Example:
        >>> check_batch(torch.zeros(0, 4), None, None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gradmedic.errors.ConfigError: the batch is empty (inputs (0, 4)): ...
    """
    if batch_size(inputs) == 0:
        raise ConfigError(
            f"the batch is empty (inputs {describe_inputs(inputs)}): gradmedic needs at least one "
            "example (a few dozen for steady statistics) to measure the gradients"
        )
    if targets is not None and not isinstance(targets, Tensor):
        raise ConfigError(
            f"targets must be a tensor, got {type(targets).__name__} ({targets!r:.40}): e.g. "
            "torch.tensor([...]) of class ids, or float targets shaped like the output"
        )
    if loss_fn is not None and not callable(loss_fn):
        raise ConfigError(
            f"loss_fn must be a function loss_fn(output, targets) -> scalar tensor, got "
            f"{type(loss_fn).__name__} {loss_fn!r:.40}: e.g. torch.nn.CrossEntropyLoss()"
        )


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` with a tensor, positional tuple or keyword dict.

    Raises:
        ModelError: when the inputs do not fit ``forward``: its signature refuses them, or a
            layer refuses their shapes; the message names the model and the inputs' shapes.
        Exception: anything else the model raises (out of memory, a bug in ``forward``) comes
            out unchanged, with a note saying gradmedic called the model (see
            :func:`gradmedic.errors.from_user_code`).
    """
    args, kwargs = (() , inputs) if isinstance(inputs, dict) else (
        (tuple(inputs), {}) if isinstance(inputs, (tuple, list)) else ((inputs,), {}))  # fmt: skip
    refuse_signature(model, args, kwargs)
    try:
        return model(*args, **kwargs)
    except GradmedicError:  # raised by gradmedic's own hooks (e.g. a compiled model): as it is
        raise
    except Exception as error:
        if not _about_shapes(error):
            raise from_user_code(error, f"{type(model).__name__}.forward") from None
        raise ModelError(
            f"{type(model).__name__} raised {type(error).__name__} when called with inputs "
            f"{describe_inputs(inputs)}: {error}. Pass the inputs as forward() expects them: a "
            "tensor, a tuple of positional arguments, or a dict of keyword arguments"
        ) from error


def refuse_signature(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A ModelError when ``forward``'s signature cannot take ``args`` and ``kwargs``."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # no signature to check (a builtin): let the call decide
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise ModelError(
            f"{type(model).__name__}.forward{signature} cannot take inputs "
            f"{describe_inputs(kwargs or args)}: {error}. Pass the inputs as forward() expects them: "
            "a tensor, a tuple of positional arguments, or a dict of keyword arguments"
        ) from None


#: Words of the errors torch raises when a layer is given a tensor of the wrong shape or kind.
_SHAPE_WORDS = ("shape", "size", "dimension", "dim ", "mat1", "expected input", "must match")


def _about_shapes(error: Exception) -> bool:
    """Whether a layer refused the inputs' shapes or dtype (not out of memory, not another bug)."""
    if isinstance(error, torch.OutOfMemoryError) or not isinstance(error, (RuntimeError, ValueError)):
        return False
    text = str(error).lower()
    return any(word in text for word in _SHAPE_WORDS) and "out of memory" not in text


def compute_loss(output: Any, targets: Tensor | None, loss_fn: LossFn | None, notes: list[str]) -> Tensor:
    """The loss to backpropagate: the user's, an inferred one, or the documented surrogate."""
    if loss_fn is not None:
        loss = call_loss(loss_fn, output, targets)
    elif targets is not None:
        loss = infer_loss(first_tensor(output), targets, notes)
    else:
        notes.append(SURROGATE_NOTE)
        tensor = first_tensor(output)
        loss = 0.5 * tensor.pow(2).reshape(len(tensor), -1).sum(dim=1).mean()
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ConfigError(f"the loss must be a scalar tensor, got {shape}: reduce it (e.g. .mean())")
    if not loss.requires_grad:
        raise ModelError("the loss does not depend on any parameter that requires grad: nothing to diagnose")
    return loss


def call_loss(loss_fn: LossFn, output: Any, targets: Tensor | None) -> Any:
    """``loss_fn(output, targets)`` (``loss_fn(output)`` without targets); what it raises comes
    out unchanged, marked as the user's (see :func:`gradmedic.errors.from_user_code`)."""
    try:
        return loss_fn(output, targets) if targets is not None else loss_fn(output)
    except Exception as error:
        raise from_user_code(
            error, f"loss_fn {getattr(loss_fn, '__name__', type(loss_fn).__name__)}"
        ) from None


def infer_loss(output: Tensor, targets: Tensor, notes: list[str]) -> Tensor:
    """Cross-entropy for integer targets, mean squared error for float targets."""
    if not targets.is_floating_point():
        check_class_targets(output, targets)
        notes.append("loss: cross-entropy (integer targets)")
        return nn.functional.cross_entropy(output, targets)
    if targets.shape != output.shape:
        raise ConfigError(
            f"float targets of shape {tuple(targets.shape)} do not match the output "
            f"{tuple(output.shape)}: pass loss_fn=... for this model"
        )
    notes.append("loss: mean squared error (float targets)")
    return nn.functional.mse_loss(output, targets)


def check_class_targets(output: Tensor, targets: Tensor) -> None:
    """Integer targets for cross-entropy: one class id per example, each in ``[0, classes)``.

    Example:
        >>> check_class_targets(torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gradmedic.errors.ConfigError: class ids must be in [0, 3) for an output of shape (4, 3), got 0 to 3...
    """
    shape, classes = tuple(output.shape), output.shape[1] if output.dim() > 1 else 0
    if output.dim() < 2 or targets.shape != output.shape[:1] + output.shape[2:]:
        raise ConfigError(
            f"integer targets of shape {tuple(targets.shape)} do not fit an output of shape {shape}: "
            f"cross-entropy wants one class id per example ({shape[:1] + shape[2:]}); check the targets "
            "belong to this batch, or pass loss_fn=..."
        )
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= classes):
        raise ConfigError(
            f"class ids must be in [0, {classes}) for an output of shape {shape}, got "
            f"{int(targets.min())} to {int(targets.max())}: give the model {int(targets.max()) + 1} "
            "outputs, or renumber the classes from 0"
        )


def first_tensor(output: Any) -> Tensor:
    """The first floating-point tensor in a model's output (a tensor, tuple, list or dict)."""
    if isinstance(output, Tensor) and output.is_floating_point():
        return output
    items = (
        output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else []
    )
    for item in items:
        with contextlib.suppress(ModelError):
            return first_tensor(item)
    raise ModelError(f"the model's output ({type(output).__name__}) holds no floating-point tensor")


def describe_inputs(inputs: Any) -> str:
    """Shapes of the inputs, for error messages: ``(64, 32)``, ``[(8, 5), (8,)]``, ``{x: (2, 3)}``."""
    if isinstance(inputs, Tensor):
        return str(tuple(inputs.shape))
    if isinstance(inputs, dict):
        return "{" + ", ".join(f"{k}: {describe_inputs(v)}" for k, v in inputs.items()) + "}"
    if isinstance(inputs, (tuple, list)):
        return "[" + ", ".join(describe_inputs(v) for v in inputs) + "]"
    return type(inputs).__name__


def batch_size(inputs: Any) -> int | None:
    """Size of dimension 0 of the first tensor in the inputs."""
    with contextlib.suppress(ModelError, IndexError):
        return int(first_tensor(inputs).shape[0])
    return None


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Restore ``.grad`` fields, each module's mode, its buffers (the same objects, their shapes and
    values), its plain tensor attributes and the RNG state on exit."""
    grads = [(p, p.grad) for p in [*model.parameters(), *extra_leaves(model)]]
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(m, dict(m._buffers), [(b, b.detach().clone()) for b in m._buffers.values() if b is not None])
               for m in model.modules()]  # fmt: skip
    # plain tensor attributes: the weight the old weight_norm/spectral_norm recompute at each forward
    tensors = [(m, k, v) for m in model.modules() for k, v in vars(m).items() if isinstance(v, Tensor)]
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        for param, grad in grads:
            param.grad = grad
        for module, mode in modes:
            module.training = mode
        _restore_buffers(buffers)
        for module, key, value in tensors:
            module.__dict__[key] = value
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _restore_buffers(
    saved: list[tuple[nn.Module, dict[str, Tensor | None], list[tuple[Tensor, Tensor]]]],
) -> None:
    """Put back each module's buffers: the same objects, their shapes (observers of
    ``prepare_qat`` resize theirs on the first forward) and their values; buffers added meanwhile
    are dropped."""
    with torch.no_grad():
        for module, registry, values in saved:
            module._buffers.clear()
            module._buffers.update(registry)
            for buffer, value in values:
                if buffer.shape != value.shape:
                    buffer.resize_(value.shape)
                buffer.copy_(value)


def refuse_lazy(model: nn.Module) -> None:
    """Refuse a model with lazy (not yet materialised) parameters: one forward pass would give
    them shapes and values, and change their modules' classes, which cannot be undone.

    Example:
        >>> refuse_lazy(nn.Sequential(nn.LazyLinear(3)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gradmedic.errors.UnsupportedError: parameter '0.weight' is lazy (nn.LazyLinear...
    """
    for name, param in model.named_parameters():
        if nn.parameter.is_lazy(param):
            owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            raise UnsupportedError(
                f"parameter {name!r} is lazy (nn.{type(owner).__name__}) and has no shape yet: the pass "
                "gradmedic makes would materialise it, and a model is left as found. Run one forward "
                "pass on a batch first (model(x)), then check it up"
            )
