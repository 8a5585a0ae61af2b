"""The checkup: one forward and one backward pass, the monitor's statistics, then the rules.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from gradmedic import checkup
    >>> layers = [m for _ in range(30) for m in (nn.Linear(32, 32), nn.Sigmoid())]
    >>> model = nn.Sequential(*layers, nn.Linear(32, 10))
    >>> report = checkup(model, torch.randn(64, 32), torch.randint(0, 10, (64,)))
    >>> report.findings[0].kind, report.healthy
    ('vanishing_gradient', False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .. import stats
from ..errors import ModelError
from ..history import History
from ..layers import require_module
from ..monitor import Monitor
from ..op_layers import FunctionModel, extra_leaves
from ..running import LossFn, batch_size, call_model, check_batch, compute_loss, preserved, refuse_lazy
from ..tracing import ActivationTracer
from .evidence import Evidence, evidence_from_history
from .findings import LayerSummary, Report, Severity, agreeing_score
from .rules import health_score, run_rules


def checkup(
    model: nn.Module | Callable[..., Any],
    inputs: Any,
    targets: Tensor | None = None,
    loss_fn: LossFn | None = None,
    params: dict[str, Tensor] | list[Tensor] | None = None,
) -> Report:
    """Diagnose ``model`` from one forward/backward pass on ``inputs``; no optimizer step.

    Args:
        model: the network, in the state you would start training it; or a plain function
            computing with leaf tensors that require grad, given as ``params``.
        inputs: a tensor, a tuple of positional arguments, or a dict of keyword arguments.
        targets: optional targets; with integer targets and no ``loss_fn`` the loss is
            cross-entropy, with float targets mean squared error.
        loss_fn: optional ``loss_fn(output, targets)`` (or ``loss_fn(output)`` without targets).
        params: for a plain function, its weights by name (``{"W1": W1, "W2": W2}``): the layers
            are the ops that use them (see :mod:`gradmedic.op_layers`), named by these keys (a
            list of tensors, as tutorials keep them, is named ``params.0``, ``params.1``...).

    The model is left exactly as found: parameters, ``.grad`` fields, train/eval mode of every
    module, buffers (BatchNorm running statistics) and the RNG state. The pass runs in train mode.

    Example (a network as the tutorials write it):
        >>> W1 = torch.randn(8, 16, requires_grad=True)
        >>> W2 = torch.randn(16, 3, requires_grad=True)
        >>> def net(x):
        ...     return torch.tanh(x @ W1) @ W2
        >>> report = checkup(net, torch.randn(32, 8), torch.randint(0, 3, (32,)), params={"W1": W1, "W2": W2})
        >>> [layer.name for layer in report.layers], W1.grad is None
        (['W1', 'W2'], True)
    """
    if params is not None:
        model = model if isinstance(model, FunctionModel) else FunctionModel(model, params)
    elif callable(model) and not isinstance(model, nn.Module):
        raise ModelError(
            f"expected a torch.nn.Module, got function {getattr(model, '__name__', type(model).__name__)}: "
            "for a network written as a function, pass its weights: "
            "checkup(fn, inputs, targets, params={'W1': W1, ...})"
        )
    model = require_module(model)
    refuse_lazy(model)
    check_batch(inputs, targets, loss_fn)
    notes: list[str] = []
    with preserved(model):
        model.train()
        for param in [*model.parameters(), *extra_leaves(model)]:
            param.grad = None
        monitor = Monitor(model, gradients_every=1, activations_every=1, updates_every=None, flush_every=1)
        with monitor, ActivationTracer(model) as tracer:
            output = call_model(model, inputs)
            loss = compute_loss(output, targets, loss_fn, notes)
            loss.backward()
            subnormal = subnormal_fraction(model)
            monitor.step(loss)
        evidence = evidence_from_history(monitor.history, model, tracer.after)
    evidence.source = "checkup"
    evidence.subnormal_fraction = subnormal
    evidence.batch_size = batch_size(inputs)
    return build_report(evidence, notes)


def diagnose(history: History, model: nn.Module | None = None) -> Report:
    """Apply the rules to a monitored run's History (``Monitor.diagnose`` calls this).

    Without the model (a History loaded from disk), the initial gain is unknown and the rules
    that need it stay quiet; normalization and recurrent layers are recognised by the layer types
    the History records (a normalization layer without parameters is not recorded).
    """
    return build_report(evidence_from_history(history, model))


def build_report(evidence: Evidence, notes: list[str] | None = None) -> Report:
    """Run the rules on ``evidence`` and package the answer."""
    layers = [
        LayerSummary(
            layer.name,
            layer.type,
            layer.signal,
            layer.weight_grad,
            layer.activation,
            layer.saturated,
            layer.dead,
        )
        for layer in evidence.layers
    ]
    findings, raw = run_rules(evidence), health_score(evidence)
    healthy = all(finding.severity < Severity.WARNING for finding in findings)
    score = agreeing_score(raw, healthy)
    return Report(findings, score, evidence.source, list(notes or []), layers, raw_score=raw)


def subnormal_fraction(model: nn.Module) -> float:
    """Fraction of gradient values that are subnormal (non-zero, below the smallest normal)."""
    total, subnormal = 0, 0
    for param in [*model.parameters(), *extra_leaves(model)]:
        grad = param.grad
        if grad is None or not grad.is_floating_point():
            continue
        tiny = torch.finfo(grad.dtype).tiny
        magnitude = stats.dense_values(grad.detach()).abs()  # an embedding's sparse gradient too
        subnormal += int(((magnitude > 0) & (magnitude < tiny)).sum())
        total += grad.numel()
    return subnormal / total if total else 0.0
