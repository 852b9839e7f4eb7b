"""What a test needs installed: the SAGE lines are optional extras, so their tests skip
with a reason where an extra is missing (CI installs both)."""

from __future__ import annotations

import importlib.util

import pytest


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


needs_current = pytest.mark.skipif(
    not installed("sage.runtime"), reason="needs the [sage] extra (isage >= 0.3)"
)
needs_kernel = pytest.mark.skipif(
    not installed("sage.kernel"), reason="needs the [sage-kernel] extra (isage-kernel)"
)
