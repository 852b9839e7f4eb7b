"""Hypothesis settings profiles that size the conformance suite: ``dev``, ``ci``, ``deep``.

Choose one with ``--hypothesis-profile``. A profile of the same name that the user
registered first is left alone.

| profile | topologies | steps per topology | for |
|---|---|---|---|
| ``dev`` | 50 | 10 | a quick local run |
| ``ci`` | 200 | 10 | every CI run (under a minute against the reference) |
| ``deep`` | 2500 | 10 | a nightly or release run (at least 2,000 topologies) |
"""

from __future__ import annotations

__all__ = ["PROFILES", "register_profiles"]

#: name -> (max_examples, stateful_step_count)
PROFILES: dict[str, tuple[int, int]] = {"dev": (50, 10), "ci": (200, 10), "deep": (2500, 10)}


def register_profiles() -> None:
    """Register the profiles that are not registered yet."""
    from hypothesis import HealthCheck, settings
    from hypothesis.errors import InvalidArgument

    for name, (examples, steps) in PROFILES.items():
        try:
            settings.get_profile(name)
        except InvalidArgument:
            settings.register_profile(
                name,
                max_examples=examples,
                stateful_step_count=steps,
                # Jobs start threads: an example takes milliseconds, not microseconds.
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                print_blob=True,
            )
