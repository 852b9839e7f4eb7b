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
def _standard_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the pytest sessions the tests start on a standard terminal, whatever the caller's.

    pytest repeats a failure's message in full in its short summary when the terminal is
    wide enough to hold it, and always when it believes it runs on CI (``CI`` or
    ``BUILD_NUMBER`` set). A test counting how often a message appears would count
    pytest's copy too, so the sessions the tests start get 80 columns and no CI markers.
    This project's own profile choice (above) has already read ``CI``.
    """
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
