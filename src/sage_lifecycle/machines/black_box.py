"""The black-box machine: a drawn topology on any target, its trace checked against
the contract (:class:`BlackBoxMachine`)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from hypothesis import currently_in_test_context, event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from .._stacks import format_thread_stacks, still_alive
from ..clock import VirtualClock
from ..contract import PROPERTIES, check
from ..probes import InjectedFault, Probes
from ..reference import JobHangError
from ..reference_target import ReferenceTarget
from ..report import LifecycleViolation, format_report, format_timeline
from ..schedule import Plan, Replay, Scheduler, encode, plans
from ..target import Target
from ..topology import RANKS, StageSpec, Topology, topologies
from ..trace import Event, EventKind, Trace
from ._common import (
    _RELEASE_PATIENCE,
    AT_ONCE,
    ENDINGS,
    TWICE,
    Failure,
    HarnessError,
    Search,
    TargetDidNotRun,
    _check_time,
    _note,
    stats,
    target_modes,
    target_version,
)

__all__ = ["BlackBoxMachine", "format_decisions", "format_schedule", "unexplained_errors"]


class BlackBoxMachine(RuleBasedStateMachine):
    """Black-box conformance of a target against the whole lifecycle contract.

    Class attributes configure it: ``target_factory`` (a callable returning a fresh
    :class:`~sage_lifecycle.target.Target`), ``deadline`` (seconds the wait may take
    once every gate is open), ``hold`` (seconds of quiet before a gate opens: everything
    that can happen while the gate is closed happens first), ``gate_faults`` (whether the
    driver may fail gates as well as open them), ``properties`` (which to check; ``None``:
    all), ``search`` (where counts and failures go). Override ``topologies()`` to change
    the jobs drawn.
    """

    target_factory: ClassVar[Callable[[], Target]] = ReferenceTarget
    deadline: ClassVar[float] = 30.0
    hold: ClassVar[float] = 0.005
    #: Whether a target that declares ``virtual_time`` runs on the harness's
    #: :class:`~sage_lifecycle.clock.VirtualClock` (``False``: wall-clock quiet for all).
    virtual_time: ClassVar[bool] = True
    #: How far (virtual seconds) one step lets the clock jump ahead while the job is
    #: quiescent but for timed waits: a 1-second poll is reached, a 30-second timeout not.
    patience: ClassVar[float] = 2.0
    #: Whether a job on the virtual clock runs on a drawn schedule (its threads wait at
    #: scheduling points until the plan lets them go); ``False``: the points pass.
    schedules: ClassVar[bool] = True
    #: PCT's depth for the plans drawn (``depth - 1`` priority change points).
    pct_depth: ClassVar[int] = 2
    gate_faults: ClassVar[bool] = True
    #: The contract properties this machine checks; ``None`` checks them all.
    properties: ClassVar[tuple[str, ...] | None] = None
    search: ClassVar[Search] = stats
    #: ``time.monotonic()`` after which no example starts and no step runs (``None``: no
    #: limit); past it the machine raises :class:`OutOfTime`.
    expires: ClassVar[float | None] = None
    #: The topology and violations of the last failing example (after shrinking, the
    #: minimal one), for tools and tests that drive the machine.
    last_failure: ClassVar[tuple[Topology | None, tuple[Any, ...]] | None] = None

    #: What a search's name starts with. Hypothesis seeds a derandomized search (the
    #: ``ci`` profile) from the name of the machine it runs, so this, not the Python
    #: class name, decides which jobs a ``ci`` search draws: the verdict table's counts
    #: and the counterexamples stay the same across releases (it was the class's name in
    #: 0.1). A subclass may set its own to draw other jobs.
    search_prefix: ClassVar[str] = "LifecycleMachine"
    #: The name the search of a :meth:`for_property` machine is seeded from.
    search_name: ClassVar[str | None] = None

    @classmethod
    def for_property(cls, prop: str, **attrs: Any) -> type[BlackBoxMachine]:
        """A subclass that checks only ``prop``, with its own :class:`Search`.

        One machine per property keeps shrinking honest: a bug that also shows, by
        timing, under another property cannot pull the counterexample toward that one.
        ``attrs`` sets other class attributes (``target_factory``, ``deadline``, ...).
        """
        if prop not in PROPERTIES:
            raise ValueError(f"unknown property {prop!r}; expected one of {', '.join(PROPERTIES)}")
        name = "".join(part.title() for part in prop.split("-"))
        body: dict[str, Any] = {
            "properties": (prop,),
            "search": Search(prop),
            "search_name": f"{cls.search_prefix}_{name}",
            **attrs,
        }
        if "target_factory" in body:
            body["target_factory"] = staticmethod(body["target_factory"])
        return type(f"{cls.__name__}_{name}", (cls,), body)

    def __init__(self) -> None:
        super().__init__()
        self.trace = Trace()
        self.probes: Probes | None = None
        self.target: Target | None = None
        self.runner: threading.Thread | None = None
        self.raised: BaseException | None = None
        self.schedule: list[tuple[str, str]] = []
        self._failed = False
        self._done = False
        self._threads_before: set[threading.Thread] = set()
        #: The job modes the target supports (from its ``modes``; batch if it has none).
        self.modes: tuple[str, ...] = ("batch",)
        #: A streaming job: how the driver ended it (``None``: not yet), the other
        #: ending calls in flight, and whether ``close()`` follows the first one.
        self.ending: str | None = None
        self.enders: list[threading.Thread] = []
        self._then_close = False
        self.start_error: BaseException | None = None
        #: The job's clock, if its target runs on virtual time.
        self.clock: VirtualClock | None = None
        #: Whether the driver may fail gates in this job (drawn per job: swarm testing).
        self.gate_faults_here = True
        #: How the driver ends a streaming job that no step ended.
        self.final_ending = "stop"
        #: The plan the job's scheduler follows (drawn), the decisions it must replay
        #: (``None``: none), and the scheduler itself (on virtual time only).
        self.plan: Plan | None = None
        self.forced: tuple[str, ...] | None = None
        self.scheduler: Scheduler | None = None

    def topologies(self) -> st.SearchStrategy[Topology]:
        """The strategy of topologies this machine draws from.

        A search for ``no-use-after-cleanup`` draws only jobs that call a service (the
        others cannot put it to the test), and one for ``no-data-loss`` draws half its
        jobs with a parallel stage: the budget is spent where the bugs are.
        """
        return _search_topologies(self.properties, self.modes)

    # -- the run -------------------------------------------------------------------
    @initialize(data=st.data())
    def start(self, data: Any) -> None:
        _check_time(self.expires)  # before drawing: a draw may cost a second on its own
        target = type(self).target_factory()
        self.modes = target_modes(target)
        topology: Topology = data.draw(self.topologies(), label="topology")
        # Swarm testing, as for the topology's faults: half the jobs have no failed gate.
        self.gate_faults_here = self.gate_faults and data.draw(st.booleans(), label="gate faults")
        # How a streaming job ends if no step ends it: drawn too, so a double ending is
        # as likely at teardown as in a step (always drawn: the choices keep their shape).
        self.final_ending = data.draw(self.endings(at_start=True), label="ending")
        # Who runs next at the job's scheduling points (drawn up front, in one shape),
        # where there is a schedule: on the virtual clock. Elsewhere nothing is drawn, so
        # a wall-clock target's searches draw what they drew before schedules existed.
        if self.virtual_time and self.schedules and getattr(target, "virtual_time", False):
            self.plan = data.draw(plans(self.pct_depth), label="schedule plan")
        self.begin(topology, target)

    def begin(self, topology: Topology, target: Target | None = None) -> None:
        """Build ``topology`` on ``target`` (default: a fresh one) and start the job: a
        batch job's wait, or a streaming job's start, on a harness thread."""
        _check_time(self.expires)
        if target is None:
            target = type(self).target_factory()
        if topology.streaming and "streaming" not in target_modes(target):
            raise HarnessError(
                f"target {target.name!r} does not run streaming jobs (its modes: "
                f"{', '.join(target_modes(target))}); this topology is one:\n"
                f"{topology.describe()}"
            )
        job = f"{target.name}#{type(self).search.next_job(topology.mode)}"
        probes = Probes(topology, self.trace, job=job, gate_timeout=self.deadline)
        self._threads_before = set(threading.enumerate())
        self.target, self.probes = target, probes
        if self.virtual_time and getattr(target, "virtual_time", False):
            self.clock = VirtualClock().__enter__()
            if self.plan is not None and self.schedules:
                # A schedule needs quiescence as a fact: only on the virtual clock.
                self.scheduler = Scheduler(self.plan, timeout=self.deadline, forced=self.forced)
                probes.scheduler = self.scheduler
        try:
            with self.clock.entered() if self.clock is not None else contextlib.nullcontext():
                target.build(probes)
        except Exception as exc:
            if self.clock is not None:
                self.clock.close()
            raise HarnessError(
                f"target {target.name!r} failed to build the job: {type(exc).__name__}: {exc}\n"
                f"{topology.describe()}"
            ) from exc
        probes.declare()
        self.runner = threading.Thread(
            target=self._start_streaming if topology.streaming else self._wait,
            name=f"lifecycle-harness/{job}",
            daemon=True,
        )
        if self.clock is not None:
            self.clock.adopt(self.runner)
        self.runner.start()
        if topology.streaming and self.final_ending == AT_ONCE:
            self.end_now(AT_ONCE)
        self._settle()

    def _await_start(self, *, for_sources: bool = True) -> None:
        """Let ``start()`` return and (``for_sources``) every source run before the job is
        ended (a runtime may take a while to start its threads); a start that outlives
        the deadline is a hang of ``submit(autostop=False)``, recorded with every
        thread's stack."""
        assert self.probes is not None
        starter = self.runner
        if starter is None or starter is threading.current_thread():
            return
        starter.join(self.deadline)
        if not starter.is_alive() and not for_sources:
            return
        if not starter.is_alive():
            # And let every source run before the stop: a job stopped before its sources
            # ran owes nothing, and could not show that it ran at all.
            sources = [f"p{i}.source" for i in range(len(self.probes.topology.pipelines))]
            ends = {f"end:p{i}" for i in range(len(sources))}

            def every_source_ran(events: tuple[Any, ...]) -> bool:
                ran = {str(e.get("node")) for e in events if e.kind is EventKind.ITEM_EMIT}
                ran |= {
                    f"p{e.subject[5:]}.source"
                    for e in events
                    if e.kind is EventKind.GATE_PARK and e.subject in ends
                }
                return all(s in ran for s in sources)

            # Bounded well below the deadline: a target whose job never runs its sources
            # (an adapter that builds nothing) is reported as such, not waited on. On the
            # virtual clock a quiescent job will not run them either: no wait at all.
            limit = min(self.deadline, max(1.0, 20 * self._hold()))
            if self.clock is not None:
                self._settle()
                limit = 0.0 if self.clock.quiescent() else limit
            self.trace.wait_for(every_source_ran, timeout=limit)
        else:
            begin = self.probes.record(EventKind.WAIT_BEGIN, "submit", autostop=False)
            self.probes.record(
                EventKind.WAIT_DEADLINE,
                "submit",
                begin=begin.seq,
                deadline=self.deadline,
                stacks=format_thread_stacks(),
            )

    def _start_streaming(self) -> None:
        """Start a streaming job: ``submit(autostop=False)`` returns at once, and the job
        runs until the driver's ending call. A start that raises gives no verdict."""
        assert self.target is not None
        try:
            self.target.start()  # type: ignore[attr-defined]
        except BaseException as exc:
            self.start_error = exc

    def _ending_call(self, subject: str) -> threading.Thread:
        """Run the ending call ``subject`` (``stop`` or ``close``) on a harness thread,
        recorded as a wait, as ``submit(autostop=True)`` is for a batch job."""
        assert self.target is not None
        assert self.probes is not None
        target, probes = self.target, self.probes

        def call() -> None:
            begin = probes.record(EventKind.WAIT_BEGIN, subject)
            try:
                getattr(target, subject)()
            except BaseException as exc:
                if self.raised is None:
                    self.raised = exc
                probes.record(
                    EventKind.WAIT_END,
                    subject,
                    begin=begin.seq,
                    outcome="raised",
                    reported=probes.reported(exc),
                )
            else:
                probes.record(EventKind.WAIT_END, subject, begin=begin.seq, outcome="returned")

        thread = threading.Thread(
            target=call, name=f"lifecycle-harness/{probes.job}/{subject}", daemon=True
        )
        if self.clock is not None:
            self.clock.adopt(thread)
        thread.start()
        return thread

    def _can_end(self) -> bool:
        return (
            self.probes is not None
            and self.probes.topology.streaming
            and self.ending is None
            and not self._failed
        )

    def endings(self, *, at_start: bool = False) -> st.SearchStrategy[str]:
        """The strategy for how a streaming job ends: one of ``ENDINGS``, or, drawn at the
        start, ``AT_ONCE`` too (else the ending at teardown if no step ends the job)."""
        return _endings(self.properties == ("cleanup-exactly-once",), at_start)

    @precondition(lambda self: self._can_end())
    @rule(data=st.data())
    def end_job(self, data: Any) -> None:
        """End a streaming job the way Hypothesis draws: ``stop()``, ``close()``, two
        ``stop()`` at once, ``stop()`` then ``close()``, or ``stop()`` just as the
        sources' own ends open. Then let the job settle."""
        self.end_now(data.draw(self.endings(), label="ending"))
        self._settle()

    def end_now(self, how: str) -> None:
        """Make the streaming job's ending call(s) ``how`` (one of ``ENDINGS``)."""
        assert self.probes is not None
        if how not in (*ENDINGS, AT_ONCE):
            raise ValueError(f"unknown ending {how!r}; expected one of {(*ENDINGS, AT_ONCE)}")
        _note(f"end the job: {how}")
        self.schedule.append(("end", how))
        self.ending = how
        if how == "stop as the sources end":
            for name in self._parked_gates():
                if name.startswith("end:"):
                    self.probes.record(EventKind.GATE_OPEN, name)
                    self.probes.gates[name].open()
        self._await_start(for_sources=how != AT_ONCE)
        self.probes.stop_requested.set()
        self.runner = self._ending_call("close" if how == "close" else "stop")
        if how == "stop twice at once":
            self.enders.append(self._ending_call("stop"))
        self._then_close = how == "stop, then close"

    def _wait(self) -> None:
        assert self.target is not None
        assert self.probes is not None
        probes = self.probes
        begin = probes.record(EventKind.WAIT_BEGIN, "submit")
        try:
            self.target.wait()
        except BaseException as exc:
            self.raised = exc
            probes.record(
                EventKind.WAIT_END,
                "submit",
                begin=begin.seq,
                outcome="raised",
                reported=probes.reported(exc),
            )
        else:
            probes.record(EventKind.WAIT_END, "submit", begin=begin.seq, outcome="returned")

    def _parked_gates(self) -> list[str]:
        """Closed gates a thread is waiting at, in name order."""
        if self.probes is None:
            return []
        return sorted(
            name for name, gate in self.probes.gates.items() if not gate.is_open and gate.parked
        )

    def _hold(self) -> float:
        """The quiet period: the machine's, or longer if the target asks for it."""
        return max(self.hold, float(getattr(self.target, "hold", 0.0) or 0.0))

    def _settle(self) -> None:
        """Let the job run until it goes quiet (or the deadline passed).

        Every step ends here, so the next gate opens only after everything that can
        happen while it is closed has happened, and each step ends in the same state
        whatever the machine's speed: the invariants see the same thing on replay.
        """
        _check_time(self.expires)
        hold = self._hold()
        if self.clock is None:
            self.trace.wait_idle(hold, timeout=self.deadline)
            return
        # Quiescent is a fact on the clock; where it cannot tell (a thread blocked where
        # it does not see), fall back to the wall-clock quiet period.
        clock = self.clock

        def settle() -> None:
            clock.settle(
                patience=self.patience,
                timeout=min(self.deadline, max(1.0, 20 * hold)),
                fallback=lambda: self.trace.wait_idle(hold, timeout=self.deadline),
            )

        settle()
        # Then the schedule: while threads wait at scheduling points, the plan lets one
        # go, and the job settles again.
        while self.scheduler is not None and self.scheduler.step() is not None:
            _check_time(self.expires)
            settle()

    # The draws below have the same shape whatever the job is doing (a rank, not a choice
    # among the gates parked right now), so a slow machine cannot make Hypothesis see
    # "inconsistent data generation"; which gate the rank reaches is recorded and noted
    # for the failure report.
    @rule(rank=st.integers(0, RANKS - 1))
    def open_gate(self, rank: int) -> None:
        """Open a gate a thread is parked at (if any; see :meth:`gate_at`), then let the
        job settle."""
        self._act(rank, fail=False)

    @precondition(lambda self: self.gate_faults and self.gate_faults_here)
    @rule(rank=st.integers(0, RANKS - 1))
    def fail_gate(self, rank: int) -> None:
        """Fail a parked gate (see :meth:`gate_at`): the parked code raises there (an
        injected fault)."""
        self._act(rank, fail=True)

    def gate_at(self, rank: int) -> str | None:
        """The parked gate a step naming ``rank`` reaches: the first, in (rank, name)
        order, whose rank is ``rank`` or more; past the highest, the first of all.

        A gate's rank is its owner's in the topology (drawn with the part), so deleting
        an unrelated service or pipeline changes neither which gate a step reaches nor,
        with it, the schedule of the rest of the job.
        """
        if self.probes is None:
            return None
        ranks = self.probes.ranks
        parked = sorted(self._parked_gates(), key=lambda name: (ranks.get(name, 0), name))
        return next((g for g in parked if ranks.get(g, 0) >= rank), parked[0] if parked else None)

    def _act(self, rank: int, *, fail: bool) -> None:
        gate = self.gate_at(rank)
        if gate is not None:
            self.act_on(gate, fail=fail)

    def act_on(self, name: str, *, fail: bool) -> None:
        """Open (or fail) gate ``name`` if a thread is parked there, then let the job settle."""
        if self.probes is None or name not in self._parked_gates():
            return
        _note(f"{'fail' if fail else 'open'} gate {name}")
        self.schedule.append(("fail" if fail else "open", name))
        self.probes.record(EventKind.GATE_FAIL if fail else EventKind.GATE_OPEN, name)
        gate = self.probes.gates[name]
        if fail:
            gate.fail(InjectedFault(f"gate {name} failed by the driver"))
        else:
            gate.open()
        self._settle()

    @invariant()
    def contract_holds_so_far(self) -> None:
        """What can already be wrong mid-run (a second cleanup, a call after cleanup, an
        early return, an expired deadline) fails the step; the report then shows the
        whole story, with the job run to its end."""
        if self.probes is None or self._failed:
            return
        if check(self.trace.events(), properties=self.properties, complete=False):
            self._drain()
            self._raise_if(check(self.trace.events(), properties=self.properties))

    def _raise_if(self, violations: list[Any], extra: str = "") -> None:
        if not violations:
            return
        self._failed = True
        assert self.probes is not None
        topology = self.probes.topology
        type(self).last_failure = (topology, tuple(violations))
        events = self.trace.events()
        target = self.target.name if self.target is not None else "?"
        decisions = tuple(self.scheduler.decisions) if self.scheduler is not None else ()
        plan = self.plan if self.scheduler is not None else None
        prop = self.properties[0] if self.properties else violations[0].property
        token = encode(Replay(prop, topology, tuple(self.schedule), plan, decisions))
        story = (
            f"{format_report(violations, events)}\n\ntarget: {target}\ntopology:\n"
            f"{topology.describe()}\nschedule: {format_schedule(self.schedule)}"
            f"{format_decisions(plan, decisions)}\n"
            f"replay exactly this run: --lifecycle-schedule={token}" + extra
        )
        search = type(self).search
        with search.lock:
            search.failures.append(
                Failure(
                    topology,
                    tuple(violations),
                    story,
                    tuple(self.schedule),
                    plan,
                    decisions,
                    events=tuple(events),
                    target=target,
                    target_version=target_version(self.target),
                    property=prop,
                )
            )
        search.count(violations, exercised=True, situations=self._situations())
        raise LifecycleViolation(
            story + "\n\nreplay: run the same command again (the ci profile draws the same "
            "topologies; other profiles replay from Hypothesis's example database), or pin "
            "it with the @reproduce_failure line below",
            violations,
        )

    def _situations(self) -> list[str]:
        """The situations of this job that put the checked properties to the test, as
        ``"<property>: <situation>"``; each is also a Hypothesis event, so
        ``--hypothesis-show-statistics`` counts them."""
        events = self.trace.events()
        found = [
            f"{p}: {s}"
            for p in self.properties or tuple(PROPERTIES)
            for s in PROPERTIES[p].situations(events)
        ]
        if currently_in_test_context():
            for s in found:
                event(s)
        return found

    def _drain(self) -> None:
        """Run the job to its end: open what is parked, one gate at a time, letting the
        job go quiet between; then give the wait its deadline and look for leaked threads.
        """
        assert self.probes is not None
        if self.probes.topology.streaming and self.ending is None:
            # A streaming job the steps never ended: the driver stops it now, and it is
            # judged on that stop like any other.
            self.end_now(self.final_ending)
        assert self.runner is not None
        probes, runner = self.probes, self.runner
        while parked := self._parked_gates():
            probes.record(EventKind.GATE_OPEN, parked[0])
            probes.gates[parked[0]].open()
            self._settle()
        # From here on nothing of the harness may hold the job: a thread that reaches a
        # gate (or a scheduling point) late passes straight through, so the deadline
        # below can only measure the target.
        if self.scheduler is not None:
            self.scheduler.close()
        for name, gate in sorted(probes.gates.items()):
            if not gate.is_open:
                probes.record(EventKind.GATE_OPEN, name)
                gate.open()
        callers = [runner, *self.enders]
        if self._join_or_record_deadline(callers) and self._then_close:
            callers.append(self._ending_call("close"))
            self._join_or_record_deadline(callers[-1:])
        if not any(c.is_alive() for c in callers):
            self._check_threads()
            # A wait that returned early: let the trace show what the job did next (a
            # late cleanup is late, not missing) before it is checked.
            self._settle()

    def _join_or_record_deadline(self, callers: list[threading.Thread]) -> bool:
        """Join the ending calls within the deadline; for each still running, record that
        it outlived its deadline, with every thread's stack. Whether all returned.

        On the virtual clock the deadline is virtual time, and a job that is quiescent
        with no timed wait due before it (every thread blocked in an untimed wait, no
        gate or point holds it: they are all open by now) is deadlocked: recorded at
        once, not waited out. What the clock cannot see keeps the wall-clock deadline.
        """
        assert self.probes is not None
        end = time.monotonic() + self.deadline
        stuck_for = self._stuck(callers, end) if self.clock is not None else None
        for caller in callers:
            caller.join(0.0 if stuck_for else max(0.0, end - time.monotonic()))
        open_waits = {e.seq: e for e in self.trace.events() if e.kind is EventKind.WAIT_BEGIN}
        for e in self.trace.events():
            if e.kind is EventKind.WAIT_END:
                open_waits.pop(int(e.get("begin", -1)), None)
        stuck = [c for c in callers if c.is_alive()]
        if stuck:
            stacks = format_thread_stacks()
            extra: dict[str, Any] = {"stuck": stuck_for} if stuck_for else {}
            for begin in open_waits.values():
                self.probes.record(
                    EventKind.WAIT_DEADLINE,
                    begin.subject,
                    begin=begin.seq,
                    deadline=self.deadline,
                    stacks=stacks,
                    **extra,
                )
        return not stuck

    def _stuck(self, callers: list[threading.Thread], end: float) -> str | None:
        """Run the clock until the ending calls return (``None``) or the job is known
        to be stuck: quiescent with an ending call still blocked and no timed wait due
        within the deadline's virtual time, because none is pending (``"deadlock"``) or
        the next is due after it (``"timer"``). ``None`` too where the clock cannot tell
        by ``end`` (a thread it cannot see): the wall-clock deadline decides."""
        clock = self.clock
        assert clock is not None
        horizon = clock.now() + self.deadline
        hold = self._hold()
        while any(c.is_alive() for c in callers) and time.monotonic() < end:
            quiet = clock.settle(
                patience=max(0.0, horizon - clock.now()),
                timeout=min(max(1.0, 20 * hold), max(0.0, end - time.monotonic())),
                fallback=lambda: False,
            )
            if not quiet:
                return None  # a thread the clock cannot see: the wall-clock deadline
            if not any(c.is_alive() for c in callers):
                return None
            # Quiescent with nothing due: confirm it (no event for a quiet period, still
            # quiescent), so a wake-up in flight is never taken for a deadlock.
            self.trace.wait_idle(hold, timeout=self.deadline)
            if clock.quiescent() and any(c.is_alive() for c in callers):
                due = clock.next_due()
                if due is None:
                    return "deadlock"
                if due > horizon:
                    return "timer"
        return None

    def teardown(self) -> None:
        if self.probes is None or self.runner is None or self._done:
            return
        self._done = True
        try:
            if not self._failed:
                if _abandoned():
                    return  # Ctrl-C, a timeout or a discarded example: release at once
                self._drain()
                self._raise_if(check(self.trace.events(), properties=self.properties))
                self._check_ran()
                self._check_unexplained()
                found = self._situations()
                type(self).search.count(exercised=bool(found), situations=found)
        finally:
            # The verdict is taken: free every gate (and every unbounded source) so
            # nothing of the harness holds the target while it releases what it started.
            self.probes.stop_requested.set()
            if self.scheduler is not None:
                self.scheduler.close()
            for gate in self.probes.gates.values():
                gate.open()
            try:
                if self.target is not None:
                    self._release(self.target)
            finally:
                if self.clock is not None:
                    self.clock.close()

    def _release(self, target: Target) -> None:
        """``target.release()``; on owned time, with the clock kept moving meanwhile.

        A hung job's threads may be in timed waits (a retry loop, a poll) that end only
        when the clock moves, and nobody else moves it now: the release runs on a
        harness thread (real time) while this one lets the clock jump, so those waits
        time out as they would, instead of the release waiting out its own bound.
        """
        clock = self.clock
        if clock is None:
            target.release()
            return
        failed: list[BaseException] = []

        def release() -> None:
            try:
                target.release()
            except BaseException as exc:
                failed.append(exc)

        releaser = threading.Thread(
            target=release,
            name=f"lifecycle-harness/{self.probes.job if self.probes else '?'}/release",
            daemon=True,
        )
        releaser.start()
        hold = self._hold()
        while releaser.is_alive():
            # The verdict is taken: any timed wait may run out now, however far ahead.
            clock.settle(
                patience=_RELEASE_PATIENCE, timeout=max(1.0, 20 * hold), fallback=lambda: False
            )
            releaser.join(hold)
        if failed:
            raise failed[0]

    def _check_threads(self) -> None:
        """Record, as ``thread.alive``, each new thread alive after the target's grace."""
        assert self.target is not None
        assert self.probes is not None
        grace = self.target.grace
        allow = self.target.thread_allowlist
        new = [
            t
            for t in threading.enumerate()
            if t not in self._threads_before
            and t is not self.runner
            and not (allow and t.name.startswith(allow))
        ]
        for t in still_alive(new, grace):
            self.probes.record(EventKind.THREAD_ALIVE, t.name)

    def _check_ran(self) -> None:
        """The target ran what it was given: every service constructed (unless the target
        makes services on demand), every source emitted all its items and reached its end
        (a streaming job's sources: ran at all; nothing more is owed after a wait that
        raised an injected failure). Otherwise no property was tested."""
        assert self.probes is not None
        topology = self.probes.topology
        events = self.trace.events()
        constructed = {e.subject for e in events if e.kind is EventKind.SERVICE_CONSTRUCT}
        emitted = Counter(str(e.get("node")) for e in events if e.kind is EventKind.ITEM_EMIT)
        ended = {e.subject for e in events if e.kind is EventKind.GATE_PARK}
        if self.start_error is not None:
            assert self.target is not None
            raise HarnessError(
                f"target {self.target.name!r} failed to start the streaming job: "
                f"{type(self.start_error).__name__}: {self.start_error}\n"
                f"topology:\n{topology.describe()}"
            ) from self.start_error
        if self.raised is not None and self.probes.reported(self.raised):
            # The ending call reported an injected failure: a runtime may end the rest
            # of the job early then (fail fast), so what did not run is no vacuous run.
            return
        # A runtime that makes each service on its first call (SAGE 0.3) never makes one
        # that nothing called: its sources are the evidence that the job ran.
        on_demand = bool(getattr(self.target, "services_on_demand", False))
        missing = [
            f"service {s.name!r} was never constructed"
            for s in topology.services
            if s.name not in constructed and not on_demand
        ]
        for i, p in enumerate(topology.pipelines):
            n = emitted[f"p{i}.source"]
            if topology.streaming:
                # The driver may stop a streaming job before its sources emitted all;
                # each must have run, though (emitted an item, or reached its end),
                # unless the driver stopped it before they could.
                if n == 0 and f"end:p{i}" not in ended and self.ending != AT_ONCE:
                    missing.append(f"the source of pipeline {i} never ran")
            elif n < p.items:
                missing.append(f"the source of pipeline {i} emitted {n} of its {p.items} items")
            elif f"end:p{i}" not in ended:
                missing.append(f"the source of pipeline {i} never reached its end")
        if missing:
            assert self.target is not None
            raise TargetDidNotRun(
                f"target {self.target.name!r}: the wait completed, but the job never ran as "
                f"built: {'; '.join(missing)}. Its build() must register every service and "
                f"pipeline of the probes, and wait() must run the job to its end.\n"
                f"topology:\n{topology.describe()}"
            )

    def _check_unexplained(self) -> None:
        """Failures nobody injected are evidence, never an excuse.

        Each error a task raised on its own must be one a property of the contract
        attributes (a violation's witness: a call refused because its service's cleanup
        began while the task still ran), or follow from an injected failure (the task
        calls a service whose setup was made to fail). A wait that raised must carry a
        recorded failure, matched by the failure's identity (or its text, for runtimes
        that re-wrap errors). Anything else is an unexplained failure: the property
        checked on this example stands (the trace was still checked), and the search
        reports how many examples ended so, with the story of the first.
        """
        assert self.probes is not None
        events = self.trace.events()
        loose = unexplained_errors(events)
        raised = self.raised
        carried = self.probes.reported(raised) if raised is not None else ()
        if raised is not None and not isinstance(raised, JobHangError) and not carried:
            what = (
                f"the wait raised {type(raised).__name__}: {raised}, which carries none of "
                "the failures recorded in the job (none the harness injected, none a task "
                "raised)"
            )
        elif loose:
            first = loose[0]
            what = (
                f"{first.subject} failed with {first.error}, which nobody injected and no "
                "property of the contract explains"
                + (f" (and {len(loose) - 1} more such failure(s))" if len(loose) > 1 else "")
            )
        else:
            return
        search = type(self).search
        with search.lock:
            search.unexplained += 1
            if search.unexplained_story:
                return
            target = self.target.name if self.target is not None else "?"
            marks = {e.seq for e in loose}
            search.unexplained_story = (
                f"unexplained failure: {what}\n\ntimeline ({len(events)} events, >> marks "
                f"the unexplained failures):\n{format_timeline(events, highlight=marks)}\n\n"
                f"target: {target}\ntopology:\n{self.probes.topology.describe()}\n"
                f"schedule: {format_schedule(self.schedule)}"
            )


def unexplained_errors(events: Sequence[Event]) -> list[Event]:
    """The task errors in ``events`` that nobody injected and nothing explains: not a
    witness of any violation of the contract, and not at a node that calls a service
    whose setup was made to fail."""
    attributed = {seq for v in check(events) for seq in v.seqs}
    calls = {
        e.subject: set(e.get("calls", ()) or ()) for e in events if e.kind is EventKind.NODE_DECLARE
    }
    broken = {
        e.subject
        for e in events
        if e.kind is EventKind.SERVICE_SETUP_END and e.error and e.get("injected", True)
    }
    return [
        e
        for e in events
        if e.kind is EventKind.TASK_ERROR
        and e.get("injected") is False
        and e.seq not in attributed
        and not broken & calls.get(str(e.get("node", e.subject)), set())
    ]


@functools.cache
def _endings(twice: bool, at_start: bool) -> st.SearchStrategy[str]:
    endings = st.sampled_from((*ENDINGS, AT_ONCE) if at_start else ENDINGS)
    if twice:
        # "Exactly once" is put to the test by ending a job twice: half the endings its
        # search draws make two ending calls.
        return st.one_of(endings, st.sampled_from(TWICE))
    return endings


@functools.lru_cache(maxsize=64)
def _search_topologies(
    properties: tuple[str, ...] | None, modes: tuple[str, ...]
) -> st.SearchStrategy[Topology]:
    """The strategy :meth:`BlackBoxMachine.topologies` draws from, built once per
    search shape (a strategy rebuilt for every example cost more than its draw)."""
    drawn = topologies(modes=modes)
    if properties == ("no-use-after-cleanup",):
        # Jobs that call a service, half of them with an item held in flight: a call
        # after the cleanup comes from work still under way when the cleanup began.
        calling = drawn.filter(_calls_a_service)
        return st.one_of(calling, calling.map(_hold_an_item))
    if properties == ("no-data-loss",):
        # Three quarters of the draws hold an item in flight at a gate, two thirds of
        # those at a parallel stage (made parallel if the draw had none): items get lost
        # where one is in flight while the job ends around it, at fan-in above all. The
        # rest are drawn as they come.
        at_fan_in = drawn.map(_make_parallel).map(_hold_an_item)
        return st.one_of(drawn, drawn.map(_hold_an_item), at_fan_in, at_fan_in)
    return drawn


def _calls_a_service(topology: Topology) -> bool:
    return any(s.calls for p in topology.pipelines for s in p.stages) or any(
        s.calls for p in topology.pipelines for s in p.sinks
    )


def _has_parallel_stage(topology: Topology) -> bool:
    return any(stage.parallelism > 1 for p in topology.pipelines for stage in p.stages)


def _make_parallel(topology: Topology) -> Topology:
    """The same job with a parallel stage in the first pipeline that has items: its first
    stage at parallelism 2 at least, or a map of parallelism 2 before its sinks."""
    if _has_parallel_stage(topology):
        return topology
    pipelines = list(topology.pipelines)
    for i, p in enumerate(pipelines):
        if p.items == 0:
            continue
        if p.stages:
            first = dataclasses.replace(p.stages[0], parallelism=2)
            stages: tuple[StageSpec, ...] = (first, *p.stages[1:])
        else:
            stages = (StageSpec(parallelism=2),)
        pipelines[i] = dataclasses.replace(p, stages=stages)
        return dataclasses.replace(topology, pipelines=tuple(pipelines))
    return topology


def _hold_an_item(topology: Topology) -> Topology:
    """The same job with item 0 parked at a gate in the first pipeline that has items and
    no item gate yet: at its first parallel stage, else its first stage, else its sink."""
    pipelines = list(topology.pipelines)
    for i, p in enumerate(pipelines):
        gated = [s.gated_on for s in p.stages] + [s.gated_on for s in p.sinks]
        if p.items == 0 or any(g is not None for g in gated):
            continue
        parallel = [j for j, s in enumerate(p.stages) if s.parallelism > 1]
        if parallel or p.stages:
            j = (parallel or [0])[0]
            stages = list(p.stages)
            stages[j] = dataclasses.replace(stages[j], gated_on=0)
            pipelines[i] = dataclasses.replace(p, stages=tuple(stages))
        else:
            sinks = (dataclasses.replace(p.sinks[0], gated_on=0), *p.sinks[1:])
            pipelines[i] = dataclasses.replace(p, sinks=sinks)
        return dataclasses.replace(topology, pipelines=tuple(pipelines))
    return topology


def _abandoned() -> bool:
    """Whether the example is being abandoned: a ``BaseException`` that is not an
    ``Exception`` is unwinding (Ctrl-C's KeyboardInterrupt, SystemExit, pytest-timeout's
    Failed, Hypothesis's StopTest for an example it discards). It gets no verdict."""
    exc = sys.exc_info()[1]
    return exc is not None and not isinstance(exc, Exception)


def format_decisions(plan: Plan | None, decisions: tuple[str, ...], *, shown: int = 12) -> str:
    """The scheduler's plan and its decisions (the last ``shown`` of them), as lines to
    follow the schedule; nothing when the job ran without a scheduler."""
    if plan is None:
        return ""
    lines = [f"\nplan: {plan.describe()}; {len(decisions)} decision(s) at scheduling points"]
    start = max(0, len(decisions) - shown)
    if start:
        lines.append(f"  ... {start} earlier decision(s)")
    lines += [f"  {i + 1:>3}. {label}" for i, label in enumerate(decisions) if i >= start]
    return "\n".join(lines)


def format_schedule(schedule: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """The gates opened and failed and the ending call, in order:
    ``open cleanup:s0, fail end:p0, end: stop``."""
    return (
        ", ".join(f"{a}: {g}" if a == "end" else f"{a} {g}" for a, g in schedule)
        or "(no gate opened before the drain)"
    )
