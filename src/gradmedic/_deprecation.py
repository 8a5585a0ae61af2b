"""Old public names that still work for one release, with a ``DeprecationWarning`` that names the new one.

A renamed name of a module (a function, a constant) is served by the module's ``__getattr__``
(:func:`module_getattr`), which warns at each access; a renamed module keeps its old path as a
module that warns on import and re-exports the new one (:func:`warn_module_moved`); a renamed
keyword argument is accepted under its old spelling (:func:`renamed_keyword`). Each warning says
what to write instead and when the old name goes.

Example:
    >>> import warnings
    >>> def make_shallower(depth: int) -> int:
    ...     return depth
    >>> renames = {"truncate": ("make_shallower", lambda: make_shallower)}
    >>> getattr_ = module_getattr("gradmedic.remedies", renames)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("truncate")(3)
    3
    >>> str(caught[0].message)
    'gradmedic.remedies.truncate is renamed make_shallower; the old name goes in gradmedic 0.3'
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

#: The release in which the old names are removed.
REMOVED_IN = "0.3"


def _warn(message: str, stacklevel: int) -> None:
    warnings.warn(f"{message}; the old name goes in gradmedic {REMOVED_IN}", DeprecationWarning, stacklevel)


def renamed_keyword(kwargs: dict[str, Any], renames: Mapping[str, str], where: str) -> dict[str, Any]:
    """``kwargs`` with each old keyword of ``renames`` (old -> new) spelled the new way, warning per old one.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     renamed_keyword({"time_every": 5}, {"time_every": "through_time_every"}, "watch")
        {'through_time_every': 5}
    """
    if not any(old in kwargs for old in renames):
        return kwargs
    out = dict(kwargs)
    for old, new in renames.items():
        if old in out:
            if new in out:
                raise TypeError(f"{where}: give {new}= only ({old}= is its old name)")
            _warn(f"{where}({old}=...) is renamed {new}=", stacklevel=4)
            out[new] = out.pop(old)
    return out


def warn_module_moved(old: str, new: str) -> None:
    """Warn that module ``old`` moved to ``new`` (called at the old module's import)."""
    _warn(f"the module {old} is renamed {new}", stacklevel=3)


def module_getattr(module: str, renames: Mapping[str, tuple[str, Callable[[], Any]]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving old names: ``renames`` maps old -> (new name, loader of the value).

    Example:
        >>> import warnings
        >>> getattr_ = module_getattr("pkg", {"DEEP": ("ORTHOGONAL_DEPTH", lambda: 10)})
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     getattr_("DEEP")
        10
    """

    def __getattr__(name: str) -> Any:
        if name in renames:
            new, load = renames[name]
            _warn(f"{module}.{name} is renamed {new}", stacklevel=3)
            return load()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
