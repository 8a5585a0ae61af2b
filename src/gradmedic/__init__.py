"""gradmedic: find, explain and treat vanishing and exploding gradients in PyTorch models.

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

from ._version import __version__
from .errors import ConfigError, GradmedicError, ModelError, UnsupportedError
from .history import History
from .monitor import Monitor, watch

__all__ = [
    "ConfigError",
    "GradmedicError",
    "History",
    "ModelError",
    "Monitor",
    "UnsupportedError",
    "__version__",
    "watch",
]
