"""Recorded steps run eagerly under ``torch.compile``; the other steps run the compiled graph untouched.

gradmedic's hooks are Python code with side effects (they register autograd hooks, keep
per-step state on the host): traced by dynamo they would run once, at tracing time, and a graph
compiled without them would silently skip them (dynamo does not guard on empty hook dicts).
So the monitor keeps them away from dynamo altogether. While a step it records is open (from
the close of the step before until its backward pass is collected), the compiler's stance is
``"force_eager"`` (:func:`torch.compiler.set_stance`, torch >= 2.6): every compiled function
runs its Python code as written, hooks included, and nothing is traced or compiled. When that
step is collected the stance the user had comes back, so the optimizer's step and every
unrecorded step run the compiled code, which dynamo traced without any gradmedic hook: no
graph break, no recompilation when the hooks come and go, and the numbers of a recorded step
are the eager numbers. ``benchmarks/compile.py`` measures it.

What this costs: a recorded step runs at eager speed, and, since the stance is process-wide,
so does any other compiled function called while it is open (a compiled loss, another compiled
model). With the default schedule (every step for the first 50, then every 20th) that is 50
eager steps, then one in 20. Under a backend that computes differently from eager (inductor's
fused kernels round differently in the last bits), the recorded steps' updates can differ in
the last bits from a run without gradmedic; under ``aot_eager`` (or ``eager``) they are
bit-identical (``tests/monitor/test_compiled.py``).

Several monitors share one stance: it is set when the first asks for it and given back when
the last lets go. Without ``torch.compiler.set_stance`` (torch < 2.6) nothing is set, and a
compiled model's recorded steps are refused with advice (see :class:`~gradmedic.monitor.Monitor`).

Example:
    >>> import torch
    >>> double = torch.compile(lambda x: 2 * x, backend="eager")
    >>> class Owner: ...
    >>> owner = Owner()
    >>> hold(owner)  # dynamo traces nothing while held
    >>> holding(owner), double(torch.ones(1)).item()
    (True, 2.0)
    >>> release(owner)
    >>> holding(owner)
    False
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

_set_stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)

#: The owners (monitors, by id) that need the forced-eager stance now, each with the finalizer
#: that releases it if the owner is garbage-collected while holding (never detached).
_holders: dict[int, weakref.finalize] = {}
#: The ``set_stance`` object whose ``__exit__`` restores the stance found before the first hold.
_restore: list[Any] = []


def available() -> bool:
    """Whether this torch can run compiled code eagerly on demand (``torch.compiler.set_stance``).

    Example:
        >>> isinstance(available(), bool)
        True
    """
    return _set_stance is not None


def hold(owner: object) -> None:
    """Run every compiled function eagerly until ``owner`` (and every other holder) releases it."""
    if _set_stance is None or id(owner) in _holders or _is_compiling():
        return
    if not _holders:
        _restore.append(_set_stance("force_eager"))  # sets it now; its __exit__ restores the old one
    _holders[id(owner)] = weakref.finalize(owner, _release_id, id(owner))


def release(owner: object) -> None:
    """``owner`` no longer needs eager runs; the last holder to release restores the old stance."""
    if id(owner) in _holders and not _is_compiling():
        _holders[id(owner)].detach()
        _release_id(id(owner))


def _release_id(key: int) -> None:
    if _holders.pop(key, None) is not None and not _holders and _restore:
        _restore.pop().__exit__(None, None, None)


def holding(owner: object) -> bool:
    """Whether ``owner`` holds the forced-eager stance now."""
    return id(owner) in _holders
