"""The lab's studies: one per classic remedy, plus ``treat``; each a grid of cells.

Every study is a grid task x recipe x variant (x axis value) x seed, built for a preset:

* ``quick`` covers every study in at most 5 minutes on 2 CPU cores (one seed, a 2-rate sweep,
  the grids' ends);
* ``full`` takes about 19 minutes on 2 cores (3 seeds, a 3-rate sweep, 300 steps, more depths
  and sequence lengths; 486 cells).

Unless a study says otherwise, the digits MLPs are 64 units wide and trained with Adam on
batches of 64; each cell's learning rate is the best of its sweep on validation data.

Example:
    >>> cells = build_cells(["activations"], "quick")
    >>> len(cells), cells[0].study, sorted({c.params["activation"] for c in cells})[:3]
    (16, 'activations', ['elu', 'gelu', 'leaky_relu'])
    >>> len({c.key() for c in build_cells(None, "quick")}) == len(build_cells(None, "quick"))
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .schema import CellSpec

STUDIES = (
    "activations", "init", "batchnorm", "layernorm", "residual", "clipping", "recurrent",
    "optimizers", "depth", "treat",
)  # fmt: skip
PRESETS = ("quick", "full")
#: The metric a cell's learning curve must reach to count its steps to target (by task).
TARGETS = {"digits": 0.9, "digits_image": 0.9, "digits_rows": 0.9, "adding": 0.9, "copy": 0.5}
#: Each optimizer's learning-rate ladder; a preset sweeps a window of it (see :meth:`Preset.lrs`).
LADDERS: dict[str, tuple[float, ...]] = {
    "adam": (3e-4, 1e-3, 3e-3, 1e-2),
    "rmsprop": (3e-4, 1e-3, 3e-3, 1e-2),
    "adagrad": (3e-3, 1e-2, 3e-2, 1e-1),
    "sgd": (3e-2, 1e-1, 3e-1, 1.0),
    "momentum": (3e-3, 1e-2, 3e-2, 1e-1),
}
#: The activation study's arms (names of :mod:`gradmedic.registry`; :mod:`gradmedic.lab.recipes` builds
#: them from it; not imported here, to keep the studies light).
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "silu", "gelu")
INITS = ("default", "xavier", "he", "lecun", "orthogonal", "lsuv")


@dataclass(frozen=True)
class Preset:
    """How big a run is: seeds, the sweep's width, training steps, and which end of each grid.

    Attributes:
        name: ``quick`` or ``full``.
        seeds: the seeds of every cell.
        n_lrs: learning rates per sweep (taken from the middle of the optimizer's ladder).
        steps: optimizer steps of each digits run (sequence tasks set their own).
        full: whether the grids take their full axes.
    """

    name: str
    seeds: tuple[int, ...]
    n_lrs: int
    steps: int
    full: bool

    def lrs(self, optimizer: str = "adam", high: bool = False) -> tuple[float, ...]:
        """``n_lrs`` rates of ``optimizer``'s ladder: its first ones (``high``: its last ones).

        Example:
            >>> PRESETS_BY_NAME["full"].lrs(), PRESETS_BY_NAME["quick"].lrs("sgd")
            ((0.0003, 0.001, 0.003), (0.1, 0.3))
        """
        ladder = LADDERS[optimizer]
        start = len(ladder) - self.n_lrs if high else (len(ladder) - self.n_lrs) // 2
        return ladder[start : start + self.n_lrs]

    def pick(self, quick: Sequence[Any], full: Sequence[Any]) -> Sequence[Any]:
        """The quick or the full values of a grid axis."""
        return full if self.full else quick


PRESETS_BY_NAME = {
    "quick": Preset("quick", seeds=(0,), n_lrs=2, steps=200, full=False),
    "full": Preset("full", seeds=(0, 1, 2), n_lrs=3, steps=300, full=True),
}


def build_cells(studies: Sequence[str] | None = None, preset: str = "quick") -> list[CellSpec]:
    """The cells of ``studies`` (all of :data:`STUDIES` by default, in that order) for ``preset``.

    Raises:
        ConfigError: for an unknown study or preset, naming the valid ones.
    """
    if preset not in PRESETS_BY_NAME:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    chosen = list(STUDIES if studies is None else studies)
    unknown = [s for s in chosen if s not in BUILDERS]
    if unknown:
        raise ConfigError(f"unknown study {unknown[0]!r}: choose from {', '.join(STUDIES)}")
    p = PRESETS_BY_NAME[preset]
    return [cell for name in STUDIES if name in chosen for cell in BUILDERS[name](p)]


@dataclass(frozen=True)
class Row:
    """One point of a study's grid, before seeds: what :func:`expand` turns into cells."""

    task: str
    recipe: str
    variant: str
    params: dict[str, Any]
    axis: str | None = None
    optimizer: str = "adam"
    sequence: bool = False


def expand(p: Preset, study: str, rows: Sequence[Row]) -> list[CellSpec]:
    """One cell per row and seed. Sequence tasks train :data:`SEQUENCE_STEPS` steps over the top
    of their optimizer's ladder (they need more steps, and larger rates, than the digits)."""
    out = []
    for row in rows:
        steps = SEQUENCE_STEPS if row.sequence else p.steps
        lrs = p.lrs(row.optimizer, high=row.sequence)
        params = {**row.params, "target": TARGETS[row.task]}
        out += [CellSpec(study, row.task, row.recipe, row.variant, params, seed, steps, lrs, row.axis)
                for seed in p.seeds]  # fmt: skip
    return out


def mlp(variant: str, axis: str | None = "depth", optimizer: str = "adam", **params: Any) -> Row:
    """A digits MLP row (``optimizer`` goes into the params too)."""
    return Row("digits", "mlp", variant, {**params, "optimizer": optimizer}, axis, optimizer)


def activations(p: Preset) -> list[CellSpec]:
    """Every activation at several depths, each with the init that suits it (``auto``)."""
    rows = [mlp(act, depth=depth, activation=act, init="auto")
            for depth in p.pick([4, 16], [2, 8, 16, 32]) for act in ACTIVATIONS]  # fmt: skip
    return expand(p, "activations", rows)


def init(p: Preset) -> list[CellSpec]:
    """Every init scheme for one activation of each family (saturating, ReLU, self-normalizing)."""
    rows = [mlp(f"{act}/{scheme}", depth=depth, activation=act, init=scheme)
            for depth in p.pick([16], [24]) for act in ("tanh", "relu", "selu")
            for scheme in INITS]  # fmt: skip
    return expand(p, "init", rows)


def _norm_rows(p: Preset, study: str, kind: str) -> list[Row]:
    """ReLU MLPs (PyTorch's default init) by depth, with and without the normalization ``kind``."""
    return [mlp(f"mlp+{study}" if norm else "mlp", depth=depth, activation="relu", norm=norm)
            for depth in p.pick([8, 24], [4, 12, 24, 36]) for norm in (None, kind)]  # fmt: skip


def batchnorm(p: Preset) -> list[CellSpec]:
    """With and without BatchNorm: ReLU MLPs and CNNs (PyTorch's default init) by depth."""
    cnn = [Row("digits_image", "cnn", "cnn+batchnorm" if norm else "cnn",
               {"depth": depth, "activation": "relu", "norm": norm}, "depth")
           for depth in p.pick([6], [3, 6]) for norm in (None, "batch")]  # fmt: skip
    return expand(p, "batchnorm", _norm_rows(p, "batchnorm", "batch") + cnn)


def layernorm(p: Preset) -> list[CellSpec]:
    """With and without LayerNorm: ReLU MLPs by depth, and a tanh RNN cell whose summed input is
    normalized at each step (Ba et al.), on the digits' rows (8 steps) and the adding problem."""
    lengths = [("digits_rows", 8), *(("adding", n) for n in p.pick([10], [10, 20]))]
    rnn = [Row(task, "rnn", "rnn+layernorm" if norm else "rnn",
               {"cell": "loop", "hidden": 64, "layernorm": norm, "length": length}, "length",
               sequence=task == "adding")
           for task, length in lengths for norm in (False, True)]  # fmt: skip
    return expand(p, "layernorm", _norm_rows(p, "layernorm", "layer") + rnn)


def residual(p: Preset) -> list[CellSpec]:
    """Plain vs residual (``alpha = 1``) vs zero-initialized residual (``alpha = 0``, gradmedic's
    :func:`~gradmedic.add_residual`) by depth, PyTorch's default init."""
    kinds = {"plain": None, "residual": "plain", "rezero": "zero"}
    rows = [mlp(f"{act}/{variant}", depth=depth, activation=act, residual=kind)
            for act in p.pick(["relu"], ["relu", "tanh"]) for depth in p.pick([8, 32], [8, 16, 32])
            for variant, kind in kinds.items()]  # fmt: skip
    return expand(p, "residual", rows)


#: The clipping study's nets: ReLU MLPs with He init, one as it is, one with every hidden weight
#: scaled by 1.5, so that both the activations and the backprop signal grow x1.5 per layer.
CLIP_NETS = {
    "stable": {"depth": 8, "activation": "relu", "init": "he"},
    "exploding": {"depth": 24, "activation": "relu", "init": "he", "gain": 1.5},
}


def clipping(p: Preset) -> list[CellSpec]:
    """No clipping vs norm (1.0), value (0.1) and adaptive (AGC, 0.01) clipping, with SGD and
    momentum 0.9, on a net that explodes and on one that does not."""
    rows = [mlp(f"{net}/{mode or 'none'}", None, "momentum", **params, clip=mode, clip_value=0.1)
            for net, params in CLIP_NETS.items() for mode in (None, "norm", "value", "agc")]  # fmt: skip
    return expand(p, "clipping", rows)


SEQUENCE_STEPS = 800
#: The recurrent study's models: vanilla tanh RNNs (PyTorch's init, orthogonal recurrent weights),
#: an IRNN (ReLU, identity recurrent weights), LSTMs (PyTorch's init, forget-gate bias 1) and a GRU.
RECURRENT_VARIANTS: dict[str, dict[str, Any]] = {
    "rnn": {"cell": "rnn"},
    "rnn/orthogonal": {"cell": "rnn", "init": "orthogonal"},
    "irnn": {"cell": "rnn", "init": "identity", "nonlinearity": "relu"},
    "lstm": {"cell": "lstm"},
    "lstm/forget-bias-1": {"cell": "lstm", "forget_bias": 1.0},
    "gru": {"cell": "gru"},
}


def recurrent(p: Preset) -> list[CellSpec]:
    """RNN vs LSTM vs GRU and the recurrent inits over sequence lengths: adding and copy."""
    adding = [Row("adding", "rnn", variant, {**params, "hidden": 64, "length": length}, "length",
                  sequence=True)
              for length in p.pick([10, 30], [10, 25, 50])
              for variant, params in RECURRENT_VARIANTS.items()]  # fmt: skip
    copy = [Row("copy", "rnn", variant, {**RECURRENT_VARIANTS[variant], "hidden": 64, "length": length,
                                         "every_step": True}, "length", sequence=True)
            for length in p.pick([5], [5, 10])
            for variant in ("rnn", "gru")]  # fmt: skip
    return expand(p, "recurrent", adding + copy)


def optimizers(p: Preset) -> list[CellSpec]:
    """SGD, SGD with momentum, RMSprop, AdaGrad and Adam, each with its own learning-rate sweep,
    on a healthy net (ReLU, He init) and on a vanishing one (tanh, PyTorch's default init)."""
    nets = {"healthy": {"depth": 8, "activation": "relu", "init": "he"},
            "vanishing": {"depth": 16, "activation": "tanh"}}  # fmt: skip
    rows = [mlp(f"{net}/{opt}", None, opt, **params) for net, params in nets.items() for opt in LADDERS]
    return expand(p, "optimizers", rows)


DEEPEST = 32


def depth(p: Preset) -> list[CellSpec]:
    """Accuracy against depth: a 32-block MLP (PyTorch's default init) and the shallower models
    :func:`gradmedic.make_shallower` cuts from it (its first blocks and its head)."""
    rows = [mlp(act, depth=blocks, cut_from=DEEPEST, activation=act)
            for act in ("sigmoid", "tanh", "relu")
            for blocks in p.pick([1, 4, 16], [1, 2, 4, 8, 16, 32])]  # fmt: skip
    return expand(p, "depth", rows)


#: The treat study's sick models.
SICK: dict[str, Row] = {
    "sigmoid-mlp-16": mlp("sigmoid-mlp-16", None, depth=16, activation="sigmoid"),
    "relu-mlp-24": mlp("relu-mlp-24", None, depth=24, activation="relu"),
    "tanh-mlp-32": mlp("tanh-mlp-32", None, depth=32, activation="tanh"),
    "sigmoid-cnn-6": Row("digits_image", "cnn", "sigmoid-cnn-6", {"depth": 6, "activation": "sigmoid"}),
    "rnn-adding-50": Row(
        "adding", "rnn", "rnn-adding-50", {"cell": "rnn", "hidden": 64, "length": 50}, sequence=True
    ),
}


def treat(p: Preset) -> list[CellSpec]:
    """Sick models before and after :func:`gradmedic.treat` (applied to the same initialized model
    with a training batch)."""
    names = p.pick(["sigmoid-mlp-16", "relu-mlp-24", "rnn-adding-50"], list(SICK))
    rows = [dataclasses.replace(SICK[name], variant=f"{name}/{when}",
                                params={**SICK[name].params, "treat": when == "after"})
            for name in names for when in ("before", "after")]  # fmt: skip
    return expand(p, "treat", rows)


BUILDERS: dict[str, Callable[[Preset], list[CellSpec]]] = {
    "activations": activations, "init": init, "batchnorm": batchnorm, "layernorm": layernorm,
    "residual": residual, "clipping": clipping, "recurrent": recurrent, "optimizers": optimizers,
    "depth": depth, "treat": treat,
}  # fmt: skip
