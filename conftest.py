"""Doctests of the integration modules need their optional library: skip the modules whose library
is missing (``pip install -e '.[dev]'`` installs them all)."""

from __future__ import annotations

import importlib.util

_NEEDS = {
    "lightning": "lightning",
    "transformers": "transformers",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
}

collect_ignore = [
    f"src/gradmedic/integrations/{module}.py"
    for module, library in _NEEDS.items()
    if importlib.util.find_spec(library) is None
]
