"""Project-wide test configuration: the Hypothesis profiles, ``ci`` under CI.

Choose another with ``--hypothesis-profile=dev|ci|deep``.
"""

from __future__ import annotations

import os

from hypothesis import settings

from sage_lifecycle.profiles import register_profiles

register_profiles()
settings.load_profile("ci" if os.environ.get("CI") else "dev")
