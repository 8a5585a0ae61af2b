"""The nine classic remedies, each a function that changes a model and returns what it changed.

Example:
    >>> from torch import nn
    >>> from gradmedic.remedies import reinit
    >>> len(reinit(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))))
    2
"""

from .._deprecation import module_getattr
from .activations import swap_activations
from .changes import Change
from .clipping import GradientClipper, adaptive_clip_, install_gradient_clipping
from .init import reinit
from .lr import LRFinderResult, find_lr, suggest_optimizer
from .normalization import add_normalization
from .recurrent import recurrent_weights, set_forget_gate_bias, swap_recurrent
from .residual import Residual, add_residual
from .shallow import make_shallower
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
    "install_gradient_clipping",
    "find_lr",
    "set_forget_gate_bias",
    "recurrent_weights",
    "reinit",
    "suggest_optimizer",
    "swap_activations",
    "swap_recurrent",
    "treat",
    "make_shallower",
]


# Old names, kept for one release (see gradmedic._deprecation).
__getattr__ = module_getattr(
    __name__,
    {
        "truncate": ("make_shallower", lambda: make_shallower),
        "forget_gate_bias": ("set_forget_gate_bias", lambda: set_forget_gate_bias),
        "clip_gradients": ("install_gradient_clipping", lambda: install_gradient_clipping),
    },
)
