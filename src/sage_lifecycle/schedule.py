"""Schedules: which thread of the job runs next at its scheduling points, from a plan.

A gate holds a thread until the driver's step opens it; a *scheduling point* holds it
only until the job is quiescent, and then the harness's :class:`Scheduler` lets the
threads parked at points go one at a time, in the order a :class:`Plan` decides. The
points are where a lifecycle race turns: a service call's begin and end, a stage or
sink taking an item (the hand-over between tasks), a source handing one on, and the
delivery of a task's stop signal to the dispatcher. Between two points a thread runs
as it would anyway; at a point, the schedule decides.

The plan is drawn up front by Hypothesis in a fixed shape, and never depends on
timing: a random plan (a seed: each decision picks uniformly among the parked threads)
or PCT (Burckhardt et al., ASPLOS 2010: each thread gets a random priority, the
highest-priority parked thread always goes, and at ``depth - 1`` change points drawn
among the first :data:`HORIZON` decisions the thread about to go drops below all
others; a bug of depth d among n threads and k steps is found with probability at
least 1/(n k^(d-1)) per run). The decisions made (the labels of the points released,
in order) are the schedule of the run: :func:`encode` writes it, with the topology
and the driver's steps, as one short string that :func:`decode` reads back to replay
exactly that run.

The scheduler runs only where quiescence is a fact, on the harness's virtual clock;
elsewhere every point passes straight through.

Example::

    scheduler = Scheduler(Plan("pct", seed=7, depth=2, changes=(3,)), timeout=30)
    ...                              # in a job thread: scheduler.point("take p0#1")
    while scheduler.parked():        # the driver, each time the job is quiescent
        scheduler.step()
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import random
import re
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

from .clock import VirtualClock
from .topology import PipelineSpec, ServiceSpec, SinkSpec, StageSpec, Topology

__all__ = [
    "HORIZON",
    "PLAN_KINDS",
    "Plan",
    "Replay",
    "ScheduleError",
    "Scheduler",
    "decode",
    "encode",
    "plans",
]

#: The kinds of plan: ``pct`` (priorities and change points) and ``random``.
PLAN_KINDS = ("pct", "random")
#: PCT's change points are drawn among the first HORIZON decisions of a job.
HORIZON = 24


class ScheduleError(ValueError):
    """A schedule string that cannot be read; the message names the fix."""


@dataclass(frozen=True)
class Plan:
    """How the scheduler decides: ``kind`` (one of :data:`PLAN_KINDS`), its ``seed``,
    PCT's ``depth`` and its ``depth - 1`` ``changes`` (decision indexes)."""

    kind: str = "pct"
    seed: int = 0
    depth: int = 2
    changes: tuple[int, ...] = ()

    def describe(self) -> str:
        if self.kind == "random":
            return f"random(seed={self.seed})"
        changes = ",".join(map(str, self.changes)) or "none"
        return f"pct(depth={self.depth}, seed={self.seed}, changes at decisions {changes})"


@functools.cache
def plans(depth: int = 2) -> SearchStrategy[Plan]:
    """The Hypothesis strategy of plans: PCT of ``depth`` or random, in one fixed shape
    (kind, seed, change points), so a plan shrinks like any other draw. Made once per
    depth: a strategy is validated when it is made."""
    from hypothesis import strategies as st

    return st.builds(
        Plan,
        kind=st.sampled_from(PLAN_KINDS),
        seed=st.integers(0, 1023),
        depth=st.just(depth),
        changes=st.lists(st.integers(0, HORIZON - 1), min_size=depth - 1, max_size=depth - 1).map(
            lambda xs: tuple(sorted(xs))
        ),
    )


def _owner(thread_name: str) -> str:
    """A thread's name without what changes from run to run: the job's id before the
    last ``/`` and the counter of an unnamed thread (``Thread-12 (run)``)."""
    return re.sub(r"^Thread-\d+", "Thread", thread_name.rsplit("/", 1)[-1])


class _Point:
    __slots__ = ("go", "label", "owner")

    def __init__(self, label: str, owner: str) -> None:
        self.label = label
        self.owner = owner
        self.go = threading.Event()


class Scheduler:
    """Holds the job's threads at scheduling points and releases them in plan order.

    ``forced``: the decisions of a recorded run, to replay it; where the run departs
    from them (a label not parked), the plan decides and ``departed`` turns true.
    """

    def __init__(self, plan: Plan, *, timeout: float, forced: Sequence[str] | None = None) -> None:
        self.plan = plan
        self.timeout = timeout
        self.forced = tuple(forced) if forced is not None else None
        self.decisions: list[str] = []
        self.departed = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._parked: list[_Point] = []
        self._on = True
        self._rng = random.Random(plan.seed)
        self._priority: dict[str, float] = {}
        self._lowered = 0

    # -- the job's side --------------------------------------------------------------
    def point(self, label: str) -> None:
        """Park the calling thread at point ``label`` until the scheduler releases it
        (or it is closed, or ``timeout`` real seconds pass: the harness never holds a
        job forever)."""
        owner = _owner(threading.current_thread().name)
        p = _Point(f"{label} @{owner}", owner)
        with self._lock:
            if not self._on:
                return
            self._parked.append(p)
            self._changed.notify_all()
        # The harness's own wait: real time; the clock still sees the thread as blocked.
        with VirtualClock.real_time():
            p.go.wait(self.timeout)
        with self._lock:
            if p in self._parked:
                self._parked.remove(p)

    # -- the driver's side -----------------------------------------------------------
    def parked(self) -> list[str]:
        """The labels of the points a thread waits at, in order."""
        with self._lock:
            return self._labels()

    def _labels(self) -> list[str]:
        return sorted(p.label for p in self._parked)

    def wait_until(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        """Block until ``predicate(labels parked)`` holds or the scheduler is closed,
        re-checked whenever a thread parks (for a driver that waits for a given point);
        False if ``timeout`` passed first."""
        with VirtualClock.real_time(), self._changed:
            return self._changed.wait_for(
                lambda: not self._on or predicate(self._labels()), timeout
            )

    def release(self, label: str) -> bool:
        """Release the thread parked at point ``label`` (a driver's own decision); False
        if none is parked there."""
        with self._lock:
            chosen = next((p for p in self._parked if p.label == label), None)
            if chosen is None:
                return False
            self._parked.remove(chosen)
            self.decisions.append(label)
        chosen.go.set()
        return True

    def step(self) -> str | None:
        """Release one parked thread, as the plan (or the forced schedule) decides;
        return its point's label (``None``: nothing was parked)."""
        with self._lock:
            # A released thread leaves the list before it is let go: all here still wait.
            parked = sorted(self._parked, key=lambda p: p.label)
            if not parked:
                return None
            chosen = self._choose(parked)
            self._parked.remove(chosen)
            self.decisions.append(chosen.label)
        chosen.go.set()
        return chosen.label

    def _choose(self, parked: list[_Point]) -> _Point:
        i = len(self.decisions)
        if self.forced is not None and i < len(self.forced):
            for p in parked:
                if p.label == self.forced[i]:
                    return p
            self.departed = True
        if self.plan.kind == "random":
            return parked[self._rng.randrange(len(parked))]
        for p in parked:  # new threads get their priorities in label order
            if p.owner not in self._priority:
                self._priority[p.owner] = self.plan.depth + self._rng.random()
        best = max(parked, key=lambda p: self._priority[p.owner])
        if i in self.plan.changes:
            # A change point: the thread about to go drops below every other.
            self._lowered += 1
            self._priority[best.owner] = self.plan.depth - self._lowered
            best = max(parked, key=lambda p: self._priority[p.owner])
        return best

    def close(self) -> None:
        """Release every parked thread and let every later point pass. Idempotent."""
        with self._lock:
            self._on = False
            parked, self._parked = self._parked, []
            self._changed.notify_all()
        for p in parked:
            p.go.set()


# -- the schedule string ---------------------------------------------------------------
@dataclass(frozen=True)
class Replay:
    """One run to replay: its property, topology, the driver's steps, plan and decisions."""

    property: str
    topology: Topology
    steps: tuple[tuple[str, str], ...]
    plan: Plan | None
    decisions: tuple[str, ...]


_PREFIX = "L1."


def encode(replay: Replay) -> str:
    """The run as one string (``L1.`` and URL-safe base64 of compressed JSON)."""
    body = {
        "property": replay.property,
        "topology": dataclasses.asdict(replay.topology),
        "steps": [list(s) for s in replay.steps],
        "plan": dataclasses.asdict(replay.plan) if replay.plan is not None else None,
        "decisions": list(replay.decisions),
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    return _PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def decode(text: str) -> Replay:
    """Read a string :func:`encode` wrote; :class:`ScheduleError` names what is wrong."""
    text = text.strip()
    if not text.startswith(_PREFIX):
        raise ScheduleError(
            f"schedule {text[:40]!r} is not one this harness wrote (they start with "
            f"{_PREFIX!r}); copy the whole --lifecycle-schedule=... value from a failure report"
        )
    try:
        payload = text[len(_PREFIX) :]
        raw = zlib.decompress(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        body = json.loads(raw)
        t = body["topology"]
        topology = Topology(
            services=tuple(ServiceSpec(**s) for s in t["services"]),
            pipelines=tuple(
                PipelineSpec(
                    items=p["items"],
                    stages=tuple(
                        StageSpec(**{**s, "calls": tuple(s["calls"])}) for s in p["stages"]
                    ),
                    sinks=tuple(SinkSpec(**{**s, "calls": tuple(s["calls"])}) for s in p["sinks"]),
                    unbounded=p["unbounded"],
                )
                for p in t["pipelines"]
            ),
            mode=t["mode"],
        )
        plan = body["plan"]
        return Replay(
            property=str(body["property"]),
            topology=topology,
            steps=tuple((str(a), str(b)) for a, b in body["steps"]),
            plan=Plan(**{**plan, "changes": tuple(plan["changes"])}) if plan else None,
            decisions=tuple(str(d) for d in body["decisions"]),
        )
    except Exception as exc:
        raise ScheduleError(
            f"schedule {text[:40]!r}... cannot be read ({type(exc).__name__}: {exc}); copy "
            "the whole --lifecycle-schedule=... value from a failure report, unwrapped"
        ) from None
