"""Hypothesis state machines that prove the lifecycle contract on a target.

- :class:`BlackBoxMachine` (black box): draws a topology, builds it on the target with
  the harness's probes, runs the target's wait on a harness thread, then opens and fails
  gates in an order Hypothesis draws. The contract is checked as an invariant after every
  step (what can already be wrong) and in full at teardown; a wait that outlives its
  deadline fails ``no-hang`` with the stacks of every thread. Each example also checks
  that the target really ran what it was given (no vacuous PASS).
- :class:`WhiteBoxMachine` (white box): drives the reference ``Dispatcher`` directly
  with stop signals in random order, duplicated and concurrent, interleaved with stop
  requests, with invariants on its state.
- :func:`run_search`: one search (a machine, usually for one property) run to a verdict
  that is a claim about the target: a violation the harness saw is reported even when
  Hypothesis cannot replay it, with how often replays reproduced it.

Both machines are importable: subclass them for your own runtime::

    class MyRuntimeMachine(BlackBoxMachine):
        target_factory = staticmethod(MyTarget)

    TestMyRuntime = MyRuntimeMachine.TestCase
"""

from ._common import (
    AT_ONCE,
    ENDINGS,
    Failure,
    HarnessError,
    OutOfTime,
    Search,
    TargetDidNotRun,
    stats,
    target_modes,
)
from .black_box import BlackBoxMachine
from .search import Outcome, check_topology, replay, run_replay, run_search, run_white_box
from .white_box import WhiteBoxFinding, WhiteBoxMachine

__all__ = [
    "AT_ONCE",
    "ENDINGS",
    "BlackBoxMachine",
    "Failure",
    "HarnessError",
    "OutOfTime",
    "Outcome",
    "Search",
    "TargetDidNotRun",
    "WhiteBoxFinding",
    "WhiteBoxMachine",
    "check_topology",
    "replay",
    "run_replay",
    "run_search",
    "run_white_box",
    "stats",
    "target_modes",
]
