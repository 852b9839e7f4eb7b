"""Small checks of user-supplied values shared by the library's error messages."""

from __future__ import annotations

__all__ = ["is_whole_number"]


def is_whole_number(value: object, low: int = 0) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
