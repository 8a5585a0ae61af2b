"""Deprecated: renamed :mod:`gradmedic.layer_profiles` (the old name shadowed the standard library's
``profile``); this module goes in gradmedic 0.3."""

from ._deprecation import warn_module_moved
from .layer_profiles import Profile, layer_profile

warn_module_moved(__name__, "gradmedic.layer_profiles")

__all__ = ["Profile", "layer_profile"]
