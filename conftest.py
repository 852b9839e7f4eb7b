"""Project-wide test configuration: the Hypothesis profiles, ``ci`` under CI.

Choose another with ``--hypothesis-profile=dev|ci|deep``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from sage_lifecycle.profiles import register_profiles

register_profiles()
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _standard_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the pytest sessions the tests start at 80 columns, whatever the caller's.

    pytest repeats a failure's message in its short summary when the terminal is wide
    enough to hold it, so on a wide terminal (or a CI runner that sets COLUMNS) a test
    counting how often a message appears would count pytest's copy too.
    """
    monkeypatch.setenv("COLUMNS", "80")
