"""Hooks that other plugins may implement, registered by the sage_lifecycle plugin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

__all__ = ["pytest_lifecycle_checked"]

if TYPE_CHECKING:
    from .contract import Violation
    from .trace import Event


@pytest.hookspec
def pytest_lifecycle_checked(
    item: pytest.Item, events: Sequence[Event], violations: Sequence[Violation]
) -> None:
    """Called after a test's lifecycle trace was checked against the contract.

    ``events`` is the whole trace and ``violations`` what the checkers found (empty when
    the contract held). Use it to export traces or collect statistics.
    """
