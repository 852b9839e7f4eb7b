"""Hypothesis settings profiles that size the conformance suite: ``dev``, ``ci``, ``deep``.

Choose one with ``--hypothesis-profile``; the plugin registers them in conformance mode.

The conformance suite runs one search per property; each search gets the profile's
``max_examples`` topologies (seven searches: seven times as many in all).

| profile | topologies per search | steps per topology | for |
|---|---|---|---|
| ``dev`` | 25 | 10 | a quick local run |
| ``ci`` | 100 | 10 | every CI run: derandomized, no database |
| ``deep`` | 400 | 10 | a nightly or release run (2,800 topologies in all) |
"""

from __future__ import annotations

__all__ = ["PROFILES", "register_profiles"]

#: name -> (max_examples, stateful_step_count)
PROFILES: dict[str, tuple[int, int]] = {"dev": (25, 10), "ci": (100, 10), "deep": (400, 10)}


def register_profiles() -> None:
    """Register (or replace) the three profiles under their names.

    Hypothesis ships a ``ci`` profile of its own (100 examples); the conformance suite
    replaces it, keeping its spirit: derandomized, no example database, so every CI run
    checks the same topologies and a failure reproduces from the log alone. The plugin
    calls this only in conformance mode, so a test suite's own profiles are left alone.
    """
    from hypothesis import HealthCheck, Phase, settings

    for name, (examples, steps) in PROFILES.items():
        ci = name == "ci"
        settings.register_profile(
            name,
            max_examples=examples,
            stateful_step_count=steps,
            # Jobs start threads: an example takes milliseconds, not microseconds.
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            print_blob=True,
            derandomize=ci,
            **({"database": None} if ci else {}),
            # No explain phase: on jobs of threads it re-runs hundreds of variants of a
            # failure (a minute and more) to annotate lines the timeline already shows.
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        )
