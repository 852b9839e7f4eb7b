"""Project-wide test configuration: Hypothesis settings profiles for each context.

Choose one with ``--hypothesis-profile=dev|ci|deep``; ``ci`` is the default under CI.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Jobs start threads, so examples are slower than pure functions: no per-example deadline.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
