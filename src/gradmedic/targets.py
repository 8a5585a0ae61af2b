"""Deprecated: renamed :mod:`gradmedic.model_spec` (``Target`` is ``ModelSpec``, ``load_target`` is
``load_model_spec``); this module goes in gradmedic 0.3."""

from ._deprecation import warn_module_moved
from .model_spec import ModelSpec as Target
from .model_spec import load_model_spec as load_target

warn_module_moved(__name__, "gradmedic.model_spec")

__all__ = ["Target", "load_target"]
