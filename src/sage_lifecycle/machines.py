"""Hypothesis state machines that prove the lifecycle contract on a target.

- :class:`LifecycleMachine` (black box): draws a topology, builds it on the target with
  the harness's probes, runs the target's wait on a harness thread, then opens and fails
  gates in an order Hypothesis draws. The contract is checked as an invariant after every
  step (what can already be wrong) and in full at teardown; a wait that outlives its
  deadline fails ``no-hang`` with the stacks of every thread.
- :class:`DispatcherMachine` (white box): drives the reference ``Dispatcher`` directly
  with stop signals in random order, duplicated and concurrent, interleaved with stop
  requests, with invariants on its state.

Both are importable: subclass them for your own runtime::

    class MyRuntimeMachine(LifecycleMachine):
        target_factory = staticmethod(MyTarget)

    TestMyRuntime = MyRuntimeMachine.TestCase
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ._stacks import format_thread_stacks
from .contract import PROPERTIES, check
from .probes import InjectedFault, Probes
from .reference import BaseService, Dispatcher, JobHangError
from .reference.dispatcher import ServiceSpec as RuntimeServiceSpec
from .report import LifecycleViolation, format_report
from .target import ReferenceTarget, Target
from .topology import Topology, topologies
from .trace import EventKind, Trace

__all__ = [
    "ConformanceMachine",
    "DispatcherMachine",
    "HarnessError",
    "LifecycleMachine",
    "WhiteBoxMachine",
    "check_topology",
    "configure",
    "stats",
]

_jobs = itertools.count(1)


class HarnessError(AssertionError):
    """The target broke the harness's expectations in a way no property names
    (an adapter that crashed, a wait that raised although nothing failed)."""


class _Stats:
    """Counts across all machines of this process, for the conformance summary."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Examples started, and examples that ran to a verdict without a violation.
        self.runs = 0
        self.examples = 0
        self.violations: dict[str, int] = {}

    def count(self, violations: list[Any] | tuple[Any, ...] = ()) -> None:
        with self.lock:
            self.examples += 1
            for v in violations:
                self.violations[v.property] = self.violations.get(v.property, 0) + 1


stats = _Stats()


class LifecycleMachine(RuleBasedStateMachine):
    """Black-box conformance of a target against the whole lifecycle contract.

    Class attributes configure it: ``target_factory`` (a callable returning a fresh
    :class:`~sage_lifecycle.target.Target`), ``deadline`` (seconds the wait may take
    once every gate is open), ``hold`` (seconds of quiet before a gate opens: everything
    that can happen while the gate is closed happens first), ``gate_faults`` (whether the
    driver may fail gates as well as open them). Override ``topologies()`` to change the
    jobs drawn.
    """

    target_factory: ClassVar[Callable[[], Target]] = ReferenceTarget
    deadline: ClassVar[float] = 30.0
    hold: ClassVar[float] = 0.005
    gate_faults: ClassVar[bool] = True
    #: The contract properties this machine checks; ``None`` checks them all.
    properties: ClassVar[tuple[str, ...] | None] = None
    #: The topology and violations of the last failing example (after shrinking, the
    #: minimal one), for tools and tests that drive the machine.
    last_failure: ClassVar[tuple[Topology | None, tuple[Any, ...]] | None] = None

    @classmethod
    def for_property(cls, prop: str) -> type[LifecycleMachine]:
        """A subclass that checks only ``prop``.

        One machine per property keeps shrinking honest: a bug that also shows, by
        timing, under another property cannot pull the counterexample toward that one.
        """
        if prop not in PROPERTIES:
            raise ValueError(f"unknown property {prop!r}; expected one of {', '.join(PROPERTIES)}")
        name = "".join(part.title() for part in prop.split("-"))
        return type(f"{cls.__name__}_{name}", (cls,), {"properties": (prop,)})

    def __init__(self) -> None:
        super().__init__()
        self.trace = Trace()
        self.probes: Probes | None = None
        self.target: Target | None = None
        self.runner: threading.Thread | None = None
        self.raised: BaseException | None = None
        self._failed = False
        self._threads_before: set[threading.Thread] = set()

    def topologies(self) -> Any:
        """The strategy of topologies this machine draws from."""
        return topologies()

    # -- the run -------------------------------------------------------------------
    @initialize(data=st.data())
    def start(self, data: Any) -> None:
        topology: Topology = data.draw(self.topologies(), label="topology")
        with stats.lock:
            stats.runs += 1
        target = type(self).target_factory()
        job = f"{target.name}#{next(_jobs)}"
        probes = Probes(topology, self.trace, job=job, gate_timeout=self.deadline)
        self._threads_before = set(threading.enumerate())
        self.target, self.probes = target, probes
        try:
            target.build(probes)
        except Exception as exc:
            raise HarnessError(
                f"target {target.name!r} failed to build the job: {type(exc).__name__}: {exc}\n"
                f"{topology.describe()}"
            ) from exc
        probes.declare()
        self.runner = threading.Thread(
            target=self._wait, name=f"lifecycle-harness/{job}", daemon=True
        )
        self.runner.start()
        self._settle()

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
        self.trace.wait_idle(self._hold(), timeout=self.deadline)

    # The draws below have the same shape whatever the job is doing (an index, not a
    # choice among the gates parked right now), so a slow machine cannot make Hypothesis
    # see "inconsistent data generation"; which gate the index picks is recorded and
    # noted for the failure report.
    @rule(choice=st.integers(0, 7))
    def open_gate(self, choice: int) -> None:
        """Open one of the gates a thread is parked at (if any), then let the job settle."""
        self._act(choice, fail=False)

    @precondition(lambda self: self.gate_faults)
    @rule(choice=st.integers(0, 7))
    def fail_gate(self, choice: int) -> None:
        """Fail one of the parked gates: the parked code raises there (an injected fault)."""
        self._act(choice, fail=True)

    def _act(self, choice: int, *, fail: bool) -> None:
        parked = self._parked_gates()
        if not parked or self.probes is None:
            return
        name = parked[choice % len(parked)]
        note(f"{'fail' if fail else 'open'} gate {name}")
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
        type(self).last_failure = (
            self.probes.topology if self.probes is not None else None,
            tuple(violations),
        )
        events = self.trace.events()
        topology = self.probes.topology.describe() if self.probes is not None else ""
        target = self.target.name if self.target is not None else "?"
        stats.count(violations)
        raise LifecycleViolation(
            f"{format_report(violations, events)}\n\ntarget: {target}\ntopology:\n{topology}"
            "\n\nreplay: run the same command again (Hypothesis's example database replays "
            "this counterexample first), or pin it with the @reproduce_failure line below" + extra,
            violations,
        )

    def _drain(self) -> None:
        """Run the job to its end: open what is parked, one gate at a time, letting the
        job go quiet between; then give the wait its deadline and look for leaked threads.
        """
        assert self.probes is not None
        assert self.runner is not None
        probes, runner = self.probes, self.runner
        while parked := self._parked_gates():
            probes.record(EventKind.GATE_OPEN, parked[0])
            probes.gates[parked[0]].open()
            self._settle()
        # From here on nothing of the harness may hold the job: a thread that reaches a
        # gate late (a slow machine outlasted the hold) passes straight through, so the
        # deadline below can only measure the target.
        for name, gate in sorted(probes.gates.items()):
            if not gate.is_open:
                probes.record(EventKind.GATE_OPEN, name)
                gate.open()
        runner.join(self.deadline)
        if runner.is_alive():
            begin = next(e for e in self.trace.events() if e.kind is EventKind.WAIT_BEGIN)
            probes.record(
                EventKind.WAIT_DEADLINE,
                "submit",
                begin=begin.seq,
                deadline=self.deadline,
                stacks=format_thread_stacks(),
            )
        else:
            self._check_threads()

    def teardown(self) -> None:
        if self.probes is None or self.runner is None:
            return
        try:
            if not self._failed:
                self._drain()
                self._raise_if(check(self.trace.events(), properties=self.properties))
                self._check_unexplained()
                stats.count()
        finally:
            # The verdict is taken: free every gate so nothing of the harness holds the
            # target while it releases what it started.
            for gate in self.probes.gates.values():
                gate.open()
            if self.target is not None:
                self.target.release()

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
        end = time.monotonic() + grace
        for t in new:
            t.join(max(0.0, end - time.monotonic()))
        for t in new:
            if t.is_alive():
                self.probes.record(EventKind.THREAD_ALIVE, t.name)

    def _check_unexplained(self) -> None:
        """A wait that raised although nothing it raised was an injected failure."""
        assert self.probes is not None
        if self.raised is None or isinstance(self.raised, JobHangError):
            return
        if not self.probes.reported(self.raised):
            raise HarnessError(
                f"the wait raised {type(self.raised).__name__}: {self.raised}, which carries "
                "none of the failures the harness injected:\n"
                f"{self.probes.topology.describe()}"
            ) from self.raised


# -- white box ------------------------------------------------------------------------


class _Recorded(BaseService):
    """A service for the white-box machine: the dispatcher itself records its lifecycle."""


class _VirtualTasks(Dispatcher):
    """The reference dispatcher with named tasks and no task threads: the machine
    delivers their stop signals itself."""

    def start_virtual(self, services: list[RuntimeServiceSpec], tasks: list[str]) -> None:
        with self._cond:
            self.tasks = {name: None for name in tasks}  # type: ignore[misc]
        self.start(services, [])


class DispatcherMachine(RuleBasedStateMachine):
    """White-box: the reference ``Dispatcher`` under stop signals in any order.

    Signals arrive in random order, duplicated, and concurrently from several threads,
    interleaved with a background ``stop`` wait. Invariants: services are cleaned only
    once every task stopped, ``tasks`` is exactly the tasks not yet signalled, each
    duplicate is counted and ignored, and the contract holds on the dispatcher's trace.
    ``dispatcher_class`` may be a subclass to test (a mutant, say).
    """

    dispatcher_class: ClassVar[type[Dispatcher]] = Dispatcher
    deadline: ClassVar[float] = 30.0
    #: False for targets that are not built on the reference dispatcher: nothing to drive.
    enabled: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.trace = Trace()
        self.dispatcher: _VirtualTasks | None = None
        self.names: list[str] = []
        self.stopped: set[str] = set()
        self.sent = 0
        self.background: threading.Thread | None = None
        self.background_error: list[BaseException] = []

    @initialize(tasks=st.integers(1, 6), services=st.integers(0, 3))
    def start(self, tasks: int, services: int) -> None:
        if not self.enabled:
            import pytest

            pytest.skip("the white-box machine drives reference-based targets only")
        cls = type("WhiteBox", (_VirtualTasks, self.dispatcher_class), {})
        d: _VirtualTasks = cls(
            f"white-box#{next(_jobs)}", observer=self.trace, deadline=self.deadline
        )
        self.names = [f"t{i}" for i in range(tasks)]
        specs = [RuntimeServiceSpec(f"s{i}", _Recorded) for i in range(services)]
        d.start_virtual(specs, self.names)
        self.dispatcher = d

    @rule(data=st.data(), concurrent=st.booleans())
    def signal(self, data: Any, concurrent: bool) -> None:
        names = data.draw(
            st.lists(st.sampled_from(self.names), min_size=1, max_size=4), label="stop signals"
        )
        d = self.dispatcher
        assert d is not None
        self.sent += len(names)
        if not concurrent:
            for n in names:
                d.receive_node_stop_signal(n)
        else:
            barrier = threading.Barrier(len(names))

            def send(n: str) -> None:
                barrier.wait(timeout=self.deadline)
                d.receive_node_stop_signal(n)

            threads = [threading.Thread(target=send, args=(n,), name=f"signal-{n}") for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join(self.deadline)
                if t.is_alive():
                    raise AssertionError(f"{t.name} hung\n{format_thread_stacks()}")
        self.stopped.update(names)
        if self.stopped == set(self.names):
            # The last signal completes the batch: let the controller finish its cleanup
            # so the invariants see the same state on every replay.
            d.settle(self.deadline)

    @precondition(lambda self: self.background is None)
    @rule()
    def stop_in_background(self) -> None:
        d = self.dispatcher
        assert d is not None

        def stop() -> None:
            try:
                d.request_stop()
                d.wait("stop")
            except BaseException as exc:
                self.background_error.append(exc)

        self.background = threading.Thread(target=stop, name="white-box-stop", daemon=True)
        self.background.start()

    @invariant()
    def state_is_consistent(self) -> None:
        d = self.dispatcher
        if d is None:
            return
        with d._cond:
            remaining = set(d.tasks)
            duplicates = d.duplicate_stop_signals
        assert remaining == set(self.names) - self.stopped, (remaining, self.stopped)
        assert duplicates == self.sent - len(self.stopped), (duplicates, self.sent)
        cleanups = self.trace.of_kind(EventKind.SERVICE_CLEANUP_BEGIN)
        if cleanups:
            assert self.stopped == set(self.names), (
                f"cleanup began while tasks {sorted(set(self.names) - self.stopped)} "
                "had not stopped"
            )
        violations = check(self.trace.events(), complete=False)
        if violations:
            raise LifecycleViolation(format_report(violations, self.trace.events()), violations)

    def teardown(self) -> None:
        d = self.dispatcher
        if d is None:
            return
        for n in self.names:
            d.receive_node_stop_signal(n)
        if self.background is not None:
            self.background.join(self.deadline)
            assert not self.background.is_alive(), format_thread_stacks()
            assert not self.background_error, self.background_error
        else:
            d.wait("submit")
        assert d.is_finished()
        assert not [t for t in d.threads() if t.is_alive()]
        violations = check(self.trace.events())
        if violations:
            raise LifecycleViolation(format_report(violations, self.trace.events()), violations)
        cleaned = [e.subject for e in self.trace.of_kind(EventKind.SERVICE_CLEANUP_END)]
        assert sorted(cleaned) == sorted(s for s in self._service_names()), cleaned

    def _service_names(self) -> list[str]:
        return [e.subject for e in self.trace.of_kind(EventKind.SERVICE_CONSTRUCT)]


class ConformanceMachine(LifecycleMachine):
    """The black-box machine the conformance suite runs; :func:`configure` sets it up."""


class WhiteBoxMachine(DispatcherMachine):
    """The white-box machine the conformance suite runs (reference-based targets only)."""


def configure(
    target_factory: Callable[[], Target],
    *,
    deadline: float,
    hold: float,
    dispatcher: type[Dispatcher] | None,
) -> None:
    """Point the conformance machines at a target (the plugin calls this)."""
    ConformanceMachine.target_factory = staticmethod(target_factory)
    ConformanceMachine.deadline = deadline
    ConformanceMachine.hold = hold
    WhiteBoxMachine.deadline = deadline
    WhiteBoxMachine.enabled = dispatcher is not None
    if dispatcher is not None:
        WhiteBoxMachine.dispatcher_class = dispatcher


def check_topology(
    target_factory: Callable[[], Target],
    topology: Topology,
    *,
    deadline: float = 30.0,
    properties: tuple[str, ...] | None = None,
) -> list[Any]:
    """Run one topology through the black-box machine and return the violations found.

    The gates open in name order once the job has gone quiet; no step is drawn. Useful
    to keep a finding as a regression test::

        found = check_topology(resolve_target("sage"), topology)
        assert {v.property for v in found} == {"no-early-return"}
    """
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    class One(LifecycleMachine):
        def topologies(self) -> Any:
            return st.just(topology)

    One.target_factory = staticmethod(target_factory)
    One.deadline = deadline
    One.properties = properties
    try:
        run_state_machine_as_test(
            One,
            settings=settings(
                max_examples=1,
                phases=[Phase.generate],
                deadline=None,
                database=None,
                stateful_step_count=1,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except LifecycleViolation as exc:
        return list(exc.violations)
    return []
