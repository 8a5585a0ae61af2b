"""``treat``: choose remedies from a checkup, apply them to a copy, and prove they helped.

Remedies are tried least invasive first (initialization, then activations, normalization,
residual connections; recurrent and clipping remedies where the diagnosis names them). After
each one a new checkup decides: the change is kept only if the health score (or the verdict)
improves, else it is undone. The treated model always takes the same inputs and returns outputs
of the same shapes as the original.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from gradmedic import treat
    >>> torch.manual_seed(0) and None
    >>> blocks = [m for _ in range(40) for m in (nn.Linear(32, 32), nn.Tanh())]
    >>> model = nn.Sequential(*blocks, nn.Linear(32, 4))
    >>> x, y = torch.randn(64, 32), torch.randint(0, 4, (64,))
    >>> treatment = treat(model, x, y, allow=["init"], suggest_lr=False)
    >>> treatment.before.healthy, treatment.after.healthy
    (False, True)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import registry
from .._providers import provided
from ..diagnosis.checkups import checkup
from ..diagnosis.findings import Family, Kind, Report, Severity
from ..errors import ConfigError
from ..running import LossFn, compute_loss, forward_without_grad
from .activations import swap_activations
from .changes import Change, applied, group_changes
from .init import reinit
from .lr import LRFinderResult, find_lr, sparse_gradient_layers, suggest_optimizer
from .normalization import add_normalization
from .recurrent import set_forget_gate_bias, swap_recurrent
from .residual import add_residual

CLIP_NORM = 1.0


@dataclass
class Treatment:
    """The result of :func:`treat`.

    Attributes:
        model: the treated model (a copy unless ``in_place=True``).
        changes: every change made, and every remedy skipped or undone, with why.
        before: the checkup of the model as given; ``after``: of the treated model.
        optimizer: suggested optimizer name and the reason.
        lr: suggested learning rate (from :func:`gradmedic.find_lr`), if it was searched.
        clip_norm: the gradient-norm bound to train with, when the diagnosis calls for clipping.
        trial_before, trial_after: with ``treat(..., trial=True)``, the trial of the model as
            given and of the treated model with its settings (see :mod:`gradmedic.remedies.training`).
        settings: the training settings the trial proved: ``optimizer`` (a ``torch.optim`` class
            name), ``lr``, ``max_norm`` (gradient clipping); empty when the user's are kept.
    """

    model: nn.Module
    changes: list[Change]
    before: Report
    after: Report
    optimizer: tuple[str, str] = ("adam", "")
    lr: float | None = None
    lr_curve: LRFinderResult | None = None
    clip_norm: float | None = None
    rounds: list[str] = field(default_factory=list)
    trial_before: Report | None = None
    trial_after: Report | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def applied(self) -> list[Change]:
        """The changes that were made and kept."""
        return applied(self.changes)

    def summary(self) -> str:
        """Before/after in a few lines, then the changes."""
        lines = [
            f"before: score {self.before.score:.2f}, {'healthy' if self.before.healthy else 'NOT healthy'}"
            f" ({', '.join(self.before.kinds) or 'no finding'})",
            f"after:  score {self.after.score:.2f}, {'healthy' if self.after.healthy else 'NOT healthy'}"
            f" ({', '.join(self.after.kinds) or 'no finding'})",
            f"train with: {self.optimizer[0]}" + (f", lr {self.lr:.2g}" if self.lr else "")
            + (f", clip_grad_norm_ {self.clip_norm}" if self.clip_norm else "") + f" ({self.optimizer[1]})",
            *self._trial_lines(),
            "changes:",
        ]  # fmt: skip
        return "\n".join([*lines, *(f"  {line}" for line in group_changes(self.changes))])

    def _trial_lines(self) -> list[str]:
        if self.trial_before is None or self.trial_after is None:
            return []
        before, after = self.trial_before, self.trial_after
        return [
            f"trial before: score {before.score:.2f} ({', '.join(before.kinds) or 'no finding'})",
            f"trial after:  score {after.score:.2f} ({', '.join(after.kinds) or 'no finding'})"
            + (f" with {self.settings}" if self.settings else ""),
        ]

    def save_html(self, path: str | Path, title: str | None = None) -> Path:
        """Write before/after as one self-contained HTML page (see :mod:`gradmedic.html_report`).

        Example:
            >>> import tempfile, torch
            >>> from torch import nn
            >>> model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
            >>> treatment = treat(model, torch.randn(16, 4), suggest_lr=False)
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = treatment.save_html(Path(folder) / "treatment.html")
            ...     "After treatment" in path.read_text(encoding="utf-8")
            True
        """
        return provided("save_treatment_html")(path, self, title)

    def _repr_html_(self) -> str:
        """How Jupyter shows a treatment: before/after, both signals, the changes."""
        return provided("treatment_fragment")(self)


def treat(
    model: nn.Module,
    inputs: Any,
    targets: Tensor | None = None,
    loss_fn: LossFn | None = None,
    allow: str | list[str] | None = None,
    in_place: bool = False,
    suggest_lr: bool = True,
    max_rounds: int = 6,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    trial: bool = False,
    trial_steps: int | None = None,
) -> Treatment:
    """Diagnose ``model`` on ``inputs``, apply remedies to a copy while they help, check again.

    Args:
        allow: remedy families to use (``init``, ``activation``, ``normalization``,
            ``residual``, ``recurrent``, ``clipping``); all by default. ``["init"]`` keeps the
            architecture as it is.
        in_place: change ``model`` itself instead of a copy. A remedy that is undone puts back
            the very module and parameter objects the model had, and the initialisation changes
            values in place, so an optimizer built before ``treat`` keeps updating the model's
            original layers; a kept structural remedy (normalization, residual, recurrent) adds
            parameters that such an optimizer does not hold: build the optimizer after ``treat``.
        suggest_lr: run :func:`gradmedic.find_lr` on the treated model (needs targets or loss_fn;
            skipped for a model with sparse gradients, which the suggested Adam cannot step).
        optimizer: the optimizer you train with (on ``model.parameters()``), for the trials.
        trial: also run :func:`gradmedic.trial` on the model as given; where it blames the
            learning rate, the optimizer or calls for clipping, choose those settings too, and
            prove the result by a second trial (kept only if that trial is better).
        trial_steps: steps of each trial (default: the trial's own).
    """
    allowed = _allowed(allow)
    work = (
        model if in_place else copy_model(model)
    )  # first: a model that cannot be copied is refused untouched
    before = checkup(model, inputs, targets, loss_fn)
    shapes = output_shapes(work, inputs)
    state = _State(work, before)
    for _ in range(max_rounds):
        family = next_family(state.report, allowed, state.tried)
        if family is None:
            break
        state.tried.add(family)
        _try_family(state, family, inputs, targets, loss_fn, shapes)
    treatment = Treatment(
        work, state.changes, before, state.report, suggest_optimizer(before), rounds=state.rounds
    )
    clipping = Family.CLIPPING in state.tried and Family.CLIPPING in allowed
    treatment.clip_norm = CLIP_NORM if clipping else None
    if suggest_lr and (targets is not None or loss_fn is not None) and not sparse_gradient_layers(work):
        batch = (inputs, targets if targets is not None else torch.zeros(0))
        treatment.lr_curve = find_lr(work, batch, _loss_callable(loss_fn, targets))
        treatment.lr = treatment.lr_curve.suggestion
    if trial:
        from .training import prove_with_trial

        prove_with_trial(treatment, model, inputs, targets, loss_fn, optimizer, trial_steps)
    return treatment


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, also for the old ``nn.utils.weight_norm``/``spectral_norm``.

    Those keep the weight they computed in the last forward pass as a plain attribute that is
    not a leaf of the graph, which ``deepcopy`` refuses; it is recomputed before every forward, so
    the copy gets it detached. The model keeps its very own objects.

    Example:
        >>> layer = nn.utils.weight_norm(nn.Linear(2, 2))
        >>> _ = layer(torch.randn(1, 2))
        >>> type(copy_model(layer)).__name__
        'Linear'
    """
    names = [
        (module, str(getattr(hook, "name", "")))
        for module in model.modules()
        for hook in module._forward_pre_hooks.values()
        if type(hook).__name__ in ("WeightNorm", "SpectralNorm")
    ]
    computed = [(m, name, vars(m)[name]) for m, name in names if isinstance(vars(m).get(name), Tensor)]
    try:
        for module, name, tensor in computed:
            setattr(module, name, tensor.detach())
        return copy.deepcopy(model)
    finally:
        for module, name, tensor in computed:
            setattr(module, name, tensor)


def _reinit(model: nn.Module, inputs: Any, report: Report) -> list[Change]:
    return reinit(model, "auto", inputs)


def _swap_activations(model: nn.Module, inputs: Any, report: Report) -> list[Change]:
    """SiLU for sigmoid/tanh; LeakyReLU for ReLU when units are dead."""
    if Kind.DEAD_UNITS in report.kinds:
        return swap_activations(model, old=(nn.ReLU,), new="leaky_relu", data=inputs)
    return swap_activations(model, old=(nn.Sigmoid, nn.Tanh), new="silu", data=inputs)


def _add_normalization(model: nn.Module, inputs: Any, report: Report) -> list[Change]:
    """LayerNorm in a recurrent model (batch statistics do not fit a sequence), else BatchNorm."""
    recurrent = any(registry.is_recurrent(m) for m in model.modules())
    return add_normalization(model, "layer" if recurrent else "batch", inputs)


def _add_residual(model: nn.Module, inputs: Any, report: Report) -> list[Change]:
    return add_residual(model, inputs)


def _swap_recurrent(model: nn.Module, inputs: Any, report: Report) -> list[Change]:
    return swap_recurrent(model, "lstm") + set_forget_gate_bias(model, 1.0)


@dataclass(frozen=True)
class FamilyStep:
    """How :func:`treat` uses one remedy family.

    Attributes:
        family: the remedy family the diagnosis recommends.
        apply: ``apply(model, inputs, report)`` changes the model in place, chosen from the report,
            and returns the changes; None for a setting of the training (clipping), which is
            advised and not applied to the model.
        first_for: finding kinds for which this family is tried before the less invasive ones.
    """

    family: Family
    apply: Callable[[nn.Module, Any, Report], list[Change]] | None
    first_for: tuple[Kind, ...] = ()


#: The families in the order they are tried, least invasive first. Vanishing through time puts the
#: recurrent family first (see :func:`next_family`).
STEPS: tuple[FamilyStep, ...] = (
    FamilyStep(Family.INIT, _reinit),
    FamilyStep(Family.ACTIVATION, _swap_activations),
    FamilyStep(Family.NORMALIZATION, _add_normalization),
    FamilyStep(Family.RESIDUAL, _add_residual),
    FamilyStep(Family.RECURRENT, _swap_recurrent, first_for=(Kind.VANISHING_THROUGH_TIME,)),
    FamilyStep(Family.CLIPPING, None),
)
FAMILIES: tuple[Family, ...] = tuple(step.family for step in STEPS)
_STEP_OF: dict[str, FamilyStep] = {step.family: step for step in STEPS}


@dataclass
class _State:
    model: nn.Module
    report: Report
    tried: set[str] = field(default_factory=set)
    changes: list[Change] = field(default_factory=list)
    rounds: list[str] = field(default_factory=list)


def _allowed(allow: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The remedy families ``allow`` names: one name (``"init"``), a list of them, or None (all).

    Example:
        >>> _allowed("init"), _allowed(["residual", "init"])
        (('init',), ('init', 'residual'))
    """
    if allow is None:
        return FAMILIES
    names = [allow] if isinstance(allow, str) else allow
    if not isinstance(names, (list, tuple, set, frozenset)) or not names:
        raise ConfigError(
            f"allow={allow!r}: give remedy families as a list, e.g. allow=['init', 'activation'] "
            f"(from {', '.join(FAMILIES)}), or None for all"
        )
    unknown = [a for a in names if a not in FAMILIES]
    if unknown:
        raise ConfigError(f"allow: unknown remedy family {unknown[0]!r}; choose from {', '.join(FAMILIES)}")
    return tuple(a for a in FAMILIES if a in names)


def next_family(report: Report, allowed: tuple[str, ...], tried: set[str]) -> str | None:
    """The least invasive allowed family, not tried yet, that a serious finding recommends.

    Vanishing through time is the exception: the recurrent family (gated units, forget-gate bias
    1) goes first. Orthogonal recurrent weights restore a vanilla RNN's signal only at the start;
    it fades again as training grows the states (measured: an orthogonal tanh ``nn.RNN`` whose
    checkup reaches all 100 steps stays at the adding problem's 0.167 baseline over 3000 Adam
    steps, while the LSTM with forget-gate bias 1 solves it).
    """
    if report.healthy:
        return None
    wanted = {r.family for f in report.findings if f.severity >= Severity.WARNING for r in f.remedies}
    untried = [family for family in allowed if family not in tried]
    first = [family for family in untried if set(_STEP_OF[family].first_for) & set(report.kinds)]
    return next(iter(first), None) or next((family for family in untried if family in wanted), None)


def _try_family(state: _State, family: str, inputs: Any, targets: Tensor | None, loss_fn: LossFn | None,
                shapes: list[tuple[int, ...]]) -> None:  # fmt: skip
    if _STEP_OF[family].apply is None:  # clipping: a training setting, nothing to check up again
        advice = (
            f"clip the gradient norm to {CLIP_NORM}: "
            "gradmedic.install_gradient_clipping(optimizer) or clip_grad_norm_"
        )
        state.changes.append(Change(Family.CLIPPING, "(training)", advice))
        return
    backup = RestorePoint(state.model)
    changes = apply_family(state.model, family, inputs, state.report)
    made = applied(changes)
    state.changes += [c for c in changes if c.skipped]
    if not made:
        return
    try:
        new_shapes = output_shapes(state.model, inputs)
    except Exception as error:  # e.g. a forward() that indexes a Sequential the remedy restructured
        backup.restore()
        what = f"{type(error).__name__}: {error}".splitlines()[0]
        state.changes.append(Change(family, "", f"undone: the model no longer runs ({what})", skipped=True))
        return
    if new_shapes != shapes:
        backup.restore()
        state.changes.append(Change(family, "", "undone: it changed the output shapes", skipped=True))
        return
    after = checkup(state.model, inputs, targets, loss_fn)
    state.rounds.append(f"{family}: score {state.report.progress_score:.2f} -> {after.progress_score:.2f}")
    if _better(after, state.report):
        state.report = after
        state.changes += made
    else:
        backup.restore()
        state.changes.append(Change(family, "", f"undone: score {state.report.progress_score:.2f} -> "
                                    f"{after.progress_score:.2f} is no better", skipped=True))  # fmt: skip


def apply_family(model: nn.Module, family: str, inputs: Any, report: Report) -> list[Change]:
    """Apply one family's remedy to ``model`` in place, chosen from the report (see :data:`STEPS`).

    Raises:
        ConfigError: for a family that is not a change of the model (clipping) or not known.
    """
    step = _STEP_OF.get(family)
    if step is None or step.apply is None:
        raise ConfigError(f"no remedy family {family!r}")
    return step.apply(model, inputs, report)


def _better(after: Report, before: Report) -> bool:
    """Whether a remedy improved the measured health: a better verdict or a higher score (to two
    decimals), and never a lower score (a verdict gained at the cost of the score is not kept).
    The scores compared are the raw estimates (:attr:`Report.progress_score`), which go on
    rising where the reported score stops at the verdict's boundary.

    Example:
        >>> from gradmedic.diagnosis.findings import Finding
        >>> sick = Report([Finding("dead_units", Severity.WARNING, [], "", "")], 0.9, "checkup")
        >>> _better(Report([], 0.4, "checkup"), sick), _better(Report([], 0.95, "checkup"), sick)
        (False, True)
    """
    now, then = round(after.progress_score, 2), round(before.progress_score, 2)
    return now >= then and (after.healthy, now) > (before.healthy, then)


class RestorePoint:
    """A model's structure and values, to put back after a remedy that did not help.

    Restoring puts back the *same* module, parameter and buffer objects the model had (their
    values copied back in place), so an optimizer or hook that holds them keeps working.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
        >>> weight, snapshot = model[0].weight, RestorePoint(model)
        >>> model[0] = nn.Sequential(model[0], nn.LayerNorm(2))
        >>> _ = nn.init.zeros_(weight)
        >>> snapshot.restore()
        >>> type(model[0]).__name__, model[0].weight is weight, bool(weight.abs().sum() > 0)
        ('Linear', True, True)
    """

    def __init__(self, model: nn.Module) -> None:
        self.attributes = [(module, _registries(module)) for module in model.modules()]
        self.values = [(t, t.detach().clone()) for module in model.modules() for t in _own_tensors(module)]

    def restore(self) -> None:
        """Every module's attributes as they were, then every tensor's values."""
        for module, attributes in self.attributes:
            module.__dict__.clear()
            for key, (value, contents) in attributes.items():
                if contents is not None:  # the same dict object (hook handles point to it), refilled
                    value.clear()
                    value.update(contents)
                module.__dict__[key] = value
        with torch.no_grad():
            for tensor, value in self.values:
                tensor.copy_(value)


def _registries(module: nn.Module) -> dict[str, tuple[Any, dict[Any, Any] | None]]:
    """Each attribute of ``module``, with a copy of its contents when it is a dict (``_modules``,
    ``_parameters``, hooks, ...): remedies change those in place."""
    return {
        key: (value, copy.copy(value) if isinstance(value, dict) else None)
        for key, value in vars(module).items()
    }


def _own_tensors(module: nn.Module) -> list[Tensor]:
    found = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return [t for t in found if t is not None]


def output_shapes(model: nn.Module, inputs: Any) -> list[tuple[int, ...]]:
    """Shapes of the tensors the model returns for ``inputs`` (the model is left as it was)."""
    return [tuple(t.shape) for t in _tensors(forward_without_grad(model, inputs))]


def _tensors(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    items = (
        output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else []
    )
    return [t for item in items for t in _tensors(item)]


def _loss_callable(loss_fn: LossFn | None, targets: Tensor | None) -> Callable[[Any, Tensor], Tensor]:
    def loss(output: Any, batch_targets: Tensor) -> Tensor:
        return compute_loss(output, batch_targets if targets is not None else None, loss_fn, [])

    return loss
