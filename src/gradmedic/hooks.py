"""A HookSet owns hook handles and removes every one of them, even after an error.

Example:
    >>> from torch import nn
    >>> from gradmedic.hooks import HookSet, count_module_hooks
    >>> layer = nn.Linear(2, 2)
    >>> with HookSet() as hooks:
    ...     hooks.add(layer.register_forward_hook(lambda m, i, o: None))
    ...     count_module_hooks(layer)
    1
    >>> count_module_hooks(layer)
    0
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from torch import nn


class Removable(Protocol):
    def remove(self) -> None: ...


class HookSet:
    """Handles registered by one owner, removed together by :meth:`remove`."""

    def __init__(self) -> None:
        self._handles: list[Removable] = []

    def add(self, handle: Removable) -> None:
        """Take ownership of ``handle``."""
        self._handles.append(handle)

    def remove(self) -> None:
        """Remove every handle; safe to call twice. Each handle is tried even if one fails."""
        handles, self._handles = self._handles, []
        errors = []
        for handle in handles:
            try:
                handle.remove()
            except Exception as error:  # pragma: no cover - torch's remove() does not raise
                errors.append(error)
        if errors:
            raise errors[0]

    def __len__(self) -> int:
        return len(self._handles)

    def __enter__(self) -> HookSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def count_module_hooks(model: nn.Module) -> int:
    """Number of hooks registered on ``model`` and all its submodules.

    Example:
        >>> count_module_hooks(nn.Sequential(nn.Linear(1, 1)))
        0
    """
    return sum(len(getattr(m, name, {})) for m in model.modules() for name in _HOOK_DICTS)
