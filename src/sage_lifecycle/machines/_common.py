"""What both machines and the search share: errors, bookkeeping, small helpers."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import note
from hypothesis.errors import InvalidArgument

from ..contract import Violation, by_property
from ..schedule import Plan
from ..topology import Topology
from ..trace import Event

#: How the driver may end a streaming job (drawn; shrinks toward the first).
ENDINGS = (
    "stop",
    "close",
    "stop twice at once",
    "stop, then close",
    "stop as the sources end",
)
#: The endings that make two ending calls.
TWICE = ("stop twice at once", "stop, then close")
#: A streaming job stopped as soon as ``submit(autostop=False)`` returned, before its
#: sources ran: drawn at the start only (a step comes after the sources ran).
AT_ONCE = "stop at once"


def _note(text: str) -> None:
    """Hypothesis's ``note`` inside a test; nothing outside one (a replay, a tool)."""
    with contextlib.suppress(InvalidArgument):
        note(text)


def target_version(target: Any) -> str:
    """The runtime's name and version a target declares (``version``), or ``""``."""
    return str(getattr(target, "version", "") or "")


def target_modes(target: Any) -> tuple[str, ...]:
    """The job modes a target runs: its ``modes``, or batch only if it declares none."""
    modes = getattr(target, "modes", ("batch",))
    return tuple(modes) if modes else ("batch",)


#: How far (virtual seconds) the clock may jump in one go while a job is released.
_RELEASE_PATIENCE = 3600.0


class HarnessError(AssertionError):
    """The target broke the harness's expectations in a way no property names
    (an adapter that crashed, a wait that raised although nothing failed)."""


class TargetDidNotRun(HarnessError):
    """The target's wait completed, but the job it was given never ran (or not all of it):
    no verdict about the contract can rest on such a run."""


class OutOfTime(BaseException):
    """The search ran out of the time it was given (``expires``), as pytest-timeout's
    bound requires. A ``BaseException``, so Hypothesis neither shrinks nor replays it."""


def _check_time(expires: float | None) -> None:
    if expires is not None and time.monotonic() >= expires:
        raise OutOfTime("the search ran out of its time")


@dataclass(frozen=True)
class Failure:
    """A violation the harness saw: the run's topology, its schedule and its story."""

    topology: Topology
    violations: tuple[Violation, ...]
    story: str
    #: The gates the driver opened or failed, in order: ``("open", "cleanup:s0")``.
    schedule: tuple[tuple[str, str], ...]
    #: The scheduler's plan and the decisions it made (the points released, in order),
    #: when the job ran on a schedule.
    plan: Plan | None = None
    decisions: tuple[str, ...] = ()
    #: Every event of the run's trace, the target's name and its runtime's version
    #: (``Target.version``; empty if it has none), and the property searched.
    events: tuple[Event, ...] = ()
    target: str = ""
    target_version: str = ""
    property: str = ""


class Search:
    """One search's bookkeeping: examples run, how many exercised the property, failures.

    Every machine class has one (``BlackBoxMachine.search``); the conformance suite makes
    a fresh one per property, so counts and job numbers do not depend on test order.
    """

    def __init__(self, prop: str | None = None) -> None:
        self.property = prop
        self.lock = threading.Lock()
        #: Examples started.
        self.runs = 0
        #: Examples that ran to a verdict: the ones that passed and the ones that failed
        #: (their violations are counted by property in ``violations``).
        self.examples = 0
        #: Examples whose trace put the searched property to the test.
        self.exercised = 0
        self.violations: Counter[str] = Counter()
        #: Examples per situation that put a property to the test
        #: (``"<property>: <situation>"``; see ``Property.situations``).
        self.situations: Counter[str] = Counter()
        self.failures: list[Failure] = []
        #: Examples that ended in a failure nobody injected and no property explains,
        #: and the story of the first (see ``BlackBoxMachine._check_unexplained``).
        self.unexplained = 0
        self.unexplained_story = ""
        #: Jobs started per mode (``batch``, ``streaming``).
        self.modes: Counter[str] = Counter()
        self._jobs = itertools.count(1)

    def next_job(self, mode: str = "batch") -> int:
        with self.lock:
            self.runs += 1
            self.modes[mode] += 1
            return next(self._jobs)

    def count(
        self,
        violations: list[Any] | tuple[Any, ...] = (),
        *,
        exercised: bool,
        situations: list[str] | tuple[str, ...] = (),
    ) -> None:
        with self.lock:
            self.examples += 1
            self.exercised += exercised
            self.situations.update(set(situations))
            self.violations.update(by_property(violations))


#: The search of machines that were given none of their own (tests, subclasses).
stats = Search()
