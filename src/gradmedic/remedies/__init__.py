"""The seed's remedies, each a function that changes a model and returns what it changed.

Example:
    >>> from torch import nn
    >>> from gradmedic.remedies import reinit
    >>> len(reinit(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))))
    2
"""

from .activations import swap_activations
from .changes import Change
from .clipping import GradientClipper, adaptive_clip_, clip_gradients
from .init import reinit
from .lr import LRFinderResult, find_lr, suggest_optimizer
from .normalization import add_normalization
from .recurrent import forget_gate_bias, recurrent_weights, swap_recurrent
from .residual import Residual, add_residual
from .shallow import truncate
from .treatment import Treatment, treat

__all__ = [
    "Change",
    "GradientClipper",
    "LRFinderResult",
    "Residual",
    "Treatment",
    "adaptive_clip_",
    "add_normalization",
    "add_residual",
    "clip_gradients",
    "find_lr",
    "forget_gate_bias",
    "recurrent_weights",
    "reinit",
    "suggest_optimizer",
    "swap_activations",
    "swap_recurrent",
    "treat",
    "truncate",
]
