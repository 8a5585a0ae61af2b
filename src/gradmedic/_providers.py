"""What a lower layer of the code needs from a higher one, provided by the higher one.

Imports point one way (see :mod:`gradmedic._code_layers`), but a few things a lower layer offers
are computed higher up: ``Monitor.diagnose`` (measuring) runs the rules of the diagnosis, and a
History, a Report or a Treatment shows itself as an HTML page drawn by the presentation layer.
The lower layer asks for the function here by name; the module that owns it provides it when it
is imported, and ``import gradmedic`` imports them all. A name nobody provided is a clear error,
never a silent no-op.

Example:
    >>> import gradmedic
    >>> provided("diagnose") is gradmedic.diagnose
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import UnsupportedError

#: Each name a lower layer may ask for -> the module that provides it.
OWNERS = {
    "diagnose": "gradmedic.diagnosis",
    "history_fragment": "gradmedic.pages.report",
    "report_fragment": "gradmedic.pages.report",
    "save_html": "gradmedic.pages.report",
    "save_treatment_html": "gradmedic.pages.treatment",
    "treatment_fragment": "gradmedic.pages.treatment",
}

_PROVIDED: dict[str, Callable[..., Any]] = {}


def provide(name: str, function: Callable[..., Any]) -> None:
    """Offer ``function`` under ``name`` (one of :data:`OWNERS`) to the lower layers.

    Raises:
        KeyError: ``name`` is not one of :data:`OWNERS` (add it there, with its owner).
    """
    if name not in OWNERS:
        raise KeyError(f"{name!r} is not a name lower layers ask for: add it to OWNERS in {__name__}")
    _PROVIDED[name] = function


def provided(name: str) -> Callable[..., Any]:
    """The function provided under ``name``.

    Raises:
        UnsupportedError: nothing provided it yet: its owner was not imported.

    Example:
        >>> saved = _PROVIDED.pop("save_html")
        >>> provided("save_html")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gradmedic.errors.UnsupportedError: save_html comes from gradmedic.pages.report, which is not...
        >>> provide("save_html", saved)
    """
    try:
        return _PROVIDED[name]
    except KeyError:
        owner = OWNERS.get(name, "no module")
        raise UnsupportedError(
            f"{name} comes from {owner}, which is not imported: import gradmedic (it imports all its parts) "
            f"or {owner} before using it"
        ) from None
