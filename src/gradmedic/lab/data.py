"""The lab's tasks as tensors: train, validation and test sets, a loss and a metric in [0, 1].

Nothing is downloaded. Tasks (the ``task`` field of a :class:`~gradmedic.lab.schema.CellSpec`):

* ``digits``: scikit-learn's bundled digits as 64-vectors (``[N, 64]``), accuracy;
* ``digits_image``: the same digits as 1x8x8 images (``[N, 1, 8, 8]``), for a small CNN;
* ``digits_rows``: the same digits as a sequence of 8 rows of 8 pixels (``[N, 8, 8]``), for RNNs;
* ``adding``: the adding problem over ``length`` steps (``[N, length, 2]``); metric: the fraction
  of test sequences solved (squared error below 0.04, see :mod:`gradmedic.tasks`);
* ``copy``: copy memory over a gap of ``length`` steps (``[N, length + 20, 10]``); metric: the
  fraction of the ten recalled symbols that are right (a memoryless model gets 1/8).

The digits' 1,438 training images are split 80/20 into training and validation data
(:func:`gradmedic.training.validation_split`); the 359 test images are kept for the final score.
The synthetic tasks draw their train, validation and test sets from disjoint seeds.

Example:
    >>> data = load_task("digits_rows", seed=0)
    >>> tuple(data.fit.x_train.shape[1:]), data.metric_name, data.fit.x_test.shape[0]
    ((8, 8), 'accuracy', 288)
    >>> x, y = load_task("copy", seed=0, length=5).batch(4)
    >>> tuple(x.shape), tuple(y.shape)
    ((4, 25, 10), (4, 25))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import tasks
from ..datasets import Split, load_digits_split
from ..errors import ConfigError
from ..training import validation_split

TASKS = ("digits", "digits_image", "digits_rows", "adding", "copy")
#: Sizes of the synthetic tasks' sets (each drawn from its own seed).
SYNTHETIC_SIZES = {"train": 4096, "val": 512, "test": 512}
DIGIT_SHAPES = {"digits": (64,), "digits_image": (1, 8, 8), "digits_rows": (8, 8)}

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class TaskData:
    """A task's data, loss and metric.

    Attributes:
        name: the task's name (one of :data:`TASKS`).
        fit: training data and, as its test tensors, the validation data (for the lr sweep).
        final: the same training data and the test data.
        metric_name: ``"accuracy"`` or ``"solved"`` (adding problem).
        n_inputs, n_outputs: features per sample (or per time step) in and out.
    """

    name: str
    fit: Split
    final: Split
    metric_name: str
    n_inputs: int
    n_outputs: int

    @property
    def sequence(self) -> bool:
        """Whether inputs are sequences ``[N, T, F]`` (digits_rows, adding, copy)."""
        return self.fit.x_train.dim() == 3

    def batch(self, size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """The first ``size`` training samples of a seeded permutation (for checkups and LSUV)."""
        order = torch.randperm(len(self.fit.y_train), generator=torch.Generator().manual_seed(seed))
        index = order[:size]
        return self.fit.x_train[index], self.fit.y_train[index]

    def loss(self, output: Tensor, targets: Tensor) -> Tensor:
        """The training loss: cross-entropy, mean squared error (adding) or per-step cross-entropy
        (copy)."""
        if self.name == "adding":
            return F.mse_loss(output, targets)
        if self.name == "copy":
            return tasks.copy_memory_loss(output, targets)
        return F.cross_entropy(output, targets)

    def checkup_loss(self) -> LossFn | None:
        """The checkup's loss: the copy task's recall steps only (the part that needs memory; with a
        loss at every step the signal would look healthy whatever the memory), else the default."""
        if self.name != "copy":
            return None
        recall = tasks.COPY_SYMBOLS
        return lambda output, targets: tasks.copy_memory_loss(output[:, -recall:], targets[:, -recall:])

    @torch.no_grad()
    def metric(self, model: nn.Module, x: Tensor, y: Tensor) -> float:
        """The task's score in [0, 1] of ``model`` on ``(x, y)``, in eval mode; non-finite outputs
        count as wrong."""
        was_training = model.training
        model.eval()
        try:
            return score_outputs(self.name, model(x), y)
        finally:
            model.train(was_training)


def score_outputs(task: str, output: Tensor, targets: Tensor) -> float:
    """Accuracy (digits), recalled symbols right (copy) or sequences solved (adding).

    Example:
        >>> score_outputs("digits", torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), torch.tensor([1, 1]))
        0.5
    """
    finite = torch.isfinite(output).reshape(len(output), -1).all(dim=1)
    if task == "adding":
        solved = (output - targets).pow(2).reshape(len(targets), -1).mean(dim=1) < tasks.SOLVED_ERROR
        return float((solved & finite).float().mean())
    if task == "copy":
        recall = tasks.COPY_SYMBOLS
        right = output[:, -recall:].argmax(dim=-1) == targets[:, -recall:]
        return float((right & finite[:, None]).float().mean())
    return float(((output.argmax(dim=1) == targets) & finite).float().mean())


def load_task(name: str, seed: int = 0, length: int | None = None) -> TaskData:
    """The data of task ``name``; ``length`` (sequence length / copy gap) for adding and copy.

    Raises:
        ConfigError: for an unknown task, or a synthetic task without a length.
    """
    if name in DIGIT_SHAPES:
        return _digits(name, seed)
    if name in ("adding", "copy"):
        if length is None:
            raise ConfigError(f"task {name!r} needs a sequence length: params={{'length': ...}}")
        return _synthetic(name, length, seed)
    raise ConfigError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")


@lru_cache(maxsize=8)
def _digit_split(seed: int) -> Split:
    return load_digits_split(seed=seed)


def _digits(name: str, seed: int) -> TaskData:
    fit, final = validation_split(_digit_split(seed), fraction=0.2, seed=seed)
    shape = DIGIT_SHAPES[name]

    def view(split: Split) -> Split:
        return Split(split.x_train.reshape(-1, *shape), split.y_train, split.x_test.reshape(-1, *shape),
                     split.y_test)  # fmt: skip

    return TaskData(name, view(fit), view(final), "accuracy", shape[-1] if name != "digits_image" else 1, 10)


def _synthetic(name: str, length: int, seed: int) -> TaskData:
    make = tasks.adding_problem if name == "adding" else tasks.copy_memory
    base = 1_000_003 * seed
    x_train, y_train = make(SYNTHETIC_SIZES["train"], length, seed=base + 1)
    x_val, y_val = make(SYNTHETIC_SIZES["val"], length, seed=base + 2)
    x_test, y_test = make(SYNTHETIC_SIZES["test"], length, seed=base + 3)
    fit, final = Split(x_train, y_train, x_val, y_val), Split(x_train, y_train, x_test, y_test)
    if name == "adding":
        return TaskData(name, fit, final, "solved", 2, 1)
    width = tasks.COPY_CATEGORIES + 2
    return TaskData(name, fit, final, "accuracy", width, width)


def chance_level(name: str) -> float:
    """What a model without skill scores: 1/10 (digits), 1/8 (copy: guessing among the symbols),
    and for adding the share of sequences that always predicting 1 solves (about 0.36).

    Example:
        >>> round(chance_level("adding"), 2), chance_level("copy")
        (0.36, 0.125)
    """
    if name == "adding":  # P(|U + U' - 1| < 0.2) for the triangular density of U + U' around 1
        half = math.sqrt(tasks.SOLVED_ERROR)
        return 2 * half - half**2
    return 1 / tasks.COPY_CATEGORIES if name == "copy" else 0.1
