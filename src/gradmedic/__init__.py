"""gradmedic: find, explain and treat vanishing and exploding gradients in PyTorch models.

Check a model up before training (one forward/backward pass), with :func:`checkup`; try the
training you will run on a copy of it (a short run, read by rules), with :func:`trial`; watch it
while it trains with :func:`watch`; ``Monitor.diagnose()`` names what went wrong.

Watch a model while it trains::

    >>> import torch
    >>> from torch import nn
    >>> import gradmedic
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
    >>> with gradmedic.watch(model) as monitor:
    ...     model(torch.randn(8, 4)).sum().backward()
    ...     monitor.step()
    >>> monitor.history.array("signal_norm")[1].shape
    (1, 3)
"""

from . import html_report  # noqa: F401 (its pages provide the HTML views of History, Report, Treatment)
from ._deprecation import module_getattr
from ._version import __version__
from .diagnosis import Finding, Remedy, Report, Severity, checkup, diagnose, trial
from .errors import ConfigError, GradmedicError, ModelError, UnsupportedError
from .history import History
from .monitor import Monitor, watch
from .remedies import (
    Change,
    Treatment,
    add_normalization,
    add_residual,
    find_lr,
    install_gradient_clipping,
    make_shallower,
    reinit,
    set_forget_gate_bias,
    swap_activations,
    swap_recurrent,
    treat,
)

__all__ = [
    "Change",
    "ConfigError",
    "Treatment",
    "add_normalization",
    "add_residual",
    "install_gradient_clipping",
    "find_lr",
    "set_forget_gate_bias",
    "reinit",
    "swap_activations",
    "swap_recurrent",
    "treat",
    "make_shallower",
    "Finding",
    "Remedy",
    "Report",
    "Severity",
    "checkup",
    "diagnose",
    "trial",
    "GradmedicError",
    "History",
    "ModelError",
    "Monitor",
    "UnsupportedError",
    "__version__",
    "watch",
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
