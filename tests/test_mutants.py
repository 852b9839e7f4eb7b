"""Every property has power: each buggy dispatcher is caught by the property it breaks,
and the reference passes the very same scenario.

Scenarios hold gates closed until the wait returned (a bug) or a hold time passed (for a
correct dispatcher the wait cannot return while a gate is closed). The hold time can only
make a bug go unnoticed, never make a correct dispatcher fail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sage_lifecycle import PROPERTIES as PROPERTIES_BY_ID
from sage_lifecycle import EventKind, Trace, check
from sage_lifecycle._stacks import format_thread_stacks
from sage_lifecycle.clock import VirtualClock
from sage_lifecycle.gates import Gate
from sage_lifecycle.mutants import MUTANTS
from sage_lifecycle.reference import (
    BaseService,
    BatchFunction,
    Dispatcher,
    JobFailed,
    JobHangError,
    LocalEnvironment,
    SinkFunction,
    SourceFunction,
)
from sage_lifecycle.schedule import Plan, Scheduler
from sage_lifecycle.trace import Event

K = EventKind
DEADLINE = 30.0
HOLD = 0.05  # how long a correct dispatcher's gates stay closed before the driver opens them


@dataclass
class Run:
    trace: Trace
    errors: list[BaseException] = field(default_factory=list)

    def properties(self) -> set[str]:
        return {v.property for v in check(self.trace.events())}


def submitting(env: LocalEnvironment, errors: list[BaseException]) -> threading.Thread:
    """A harness thread (not started) that runs ``submit(autostop=True)`` and keeps what
    it raised in ``errors``."""

    def submit() -> None:
        try:
            env.submit(autostop=True)
        except BaseException as exc:
            errors.append(exc)

    return threading.Thread(target=submit, name="harness-submit", daemon=True)


def drive(
    env: LocalEnvironment,
    gates: list[Gate],
    *,
    release_when: Callable[[tuple[Event, ...]], bool] | None = None,
    hold: float,
) -> list[BaseException]:
    """Run ``submit(autostop=True)`` in a harness thread and open the gates when the wait
    has returned, ``release_when(events)`` holds, or ``hold`` seconds passed."""
    errors: list[BaseException] = []
    trace = env.observer
    assert isinstance(trace, Trace)
    submitter = submitting(env, errors)
    submitter.start()

    def released(events: tuple[Event, ...]) -> bool:
        if any(e.kind is K.WAIT_END for e in events):
            return True
        return release_when is not None and release_when(events)

    trace.wait_for(released, timeout=hold)
    for gate in gates:
        gate.open()
    submitter.join(DEADLINE)
    assert not submitter.is_alive(), "the harness thread outlived its deadline"
    # A wait that returned early: let the job run to its own end before it is checked,
    # so a cleanup that begins late is seen as late, not as missing.
    assert env.dispatcher is not None
    env.dispatcher.settle(DEADLINE)
    return errors


def finish(env: LocalEnvironment) -> None:
    """After checking: let a buggy job end so that no thread outlives the test."""
    assert env.dispatcher is not None
    stuck = env.dispatcher.release(DEADLINE)
    assert not stuck, f"threads still alive: {stuck}"


# -- scenarios ---------------------------------------------------------------------------


class Hello(BaseService):
    def hello(self) -> str:
        return "hello"


class CallsHello(SinkFunction):
    def execute(self, data: Any) -> None:
        self.call_service("hello", method="hello")


def hello_world(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """SAGE's hello_service_world: one service, source -> sink calling it."""
    trace = Trace()
    env = LocalEnvironment("hello", observer=trace, dispatcher_class=dispatcher)
    env.register_service("hello", Hello)
    env.from_batch([1, 2, 3]).sink(CallsHello)
    return env, Run(trace, drive(env, [], hold=hold))


def gated_cleanup(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """The service's cleanup parks at a gate: the wait must not return before it ends."""
    gate = Gate("cleanup", timeout=DEADLINE)

    class Slow(BaseService):
        def cleanup(self) -> None:
            gate.pass_through()

    trace = Trace()
    env = LocalEnvironment("gated-cleanup", observer=trace, dispatcher_class=dispatcher)
    env.register_service("slow", Slow)
    env.from_batch([1, 2, 3]).sink(lambda x: None)
    return env, Run(trace, drive(env, [gate], hold=hold))


class Closing(BaseService):
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail = name, fail

    def cleanup(self) -> None:
        if self.fail:
            raise OSError(f"{self.name}: cannot close")


def failing_cleanup(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """Three services, the middle one's cleanup raises; deadline short enough to see a hang."""
    trace = Trace()
    env = LocalEnvironment("failing", observer=trace, dispatcher_class=dispatcher, deadline=2.0)
    env.register_service("a", Closing, "a")
    env.register_service("b", Closing, "b", fail=True)
    env.register_service("c", Closing, "c")
    env.from_batch([1]).sink(lambda x: None)
    return env, Run(trace, drive(env, [], hold=hold))


def two_pipelines(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """Two pipelines share a service; the second's source is held until the first ended."""
    gate = Gate("second-source", timeout=DEADLINE)

    class HeldSource(BatchFunction):
        def __init__(self) -> None:
            self.items = iter([1, 2])

        def execute(self) -> Any:
            gate.pass_through()
            return next(self.items, None)

    trace = Trace()
    env = LocalEnvironment("two-pipelines", observer=trace, dispatcher_class=dispatcher)
    env.register_service("hello", Hello)
    env.from_batch([1]).sink(CallsHello)
    env.from_batch(HeldSource).sink(CallsHello)

    def first_pipeline_done_or_cleanup(events: tuple[Event, ...]) -> bool:
        return any(e.kind is K.SERVICE_CLEANUP_END for e in events)

    return env, Run(
        trace, drive(env, [gate], release_when=first_pipeline_done_or_cleanup, hold=hold)
    )


def gated_sink(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """The sink parks at a gate on its first item: the wait must not return before it drained."""
    gate = Gate("sink", timeout=DEADLINE)
    trace = Trace()
    env = LocalEnvironment("gated-sink", observer=trace, dispatcher_class=dispatcher)
    env.from_batch([1, 2, 3]).sink(lambda x: gate.pass_through())
    return env, Run(trace, drive(env, [gate], hold=hold))


def gated_calling_sink(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """The sink parks on its first item, then calls the service: held until a cleanup
    ended (or ``hold``), its call must still find the service alive."""
    gate = Gate("sink", timeout=DEADLINE)

    class ParksThenCalls(SinkFunction):
        def execute(self, data: Any) -> None:
            if data == 1:
                gate.pass_through()
            self.call_service("hello", method="hello")

    trace = Trace()
    env = LocalEnvironment("gated-calling-sink", observer=trace, dispatcher_class=dispatcher)
    env.register_service("hello", Hello)
    env.from_batch([1, 2]).sink(ParksThenCalls)

    def cleaned(events: tuple[Event, ...]) -> bool:
        return any(e.kind is K.SERVICE_CLEANUP_END for e in events)

    return env, Run(trace, drive(env, [gate], release_when=cleaned, hold=hold))


def gated_parallel_map(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """A map of two instances, one parked on its item until the sink stopped (or ``hold``):
    the sink must wait for a stop signal from both instances before it stops."""
    gate = Gate("map", timeout=DEADLINE)

    def park_on_two(x: int) -> int:
        if x == 2:
            gate.pass_through()
        return x

    trace = Trace()
    env = LocalEnvironment("parallel-map", observer=trace, dispatcher_class=dispatcher)
    env.from_batch([1, 2]).map(park_on_two, parallelism=2).sink(lambda x: None)

    def sink_stopped(events: tuple[Event, ...]) -> bool:
        return any(e.kind is K.TASK_STOP and e.subject.startswith("sink") for e in events)

    return env, Run(trace, drive(env, [gate], release_when=sink_stopped, hold=hold))


class BrokenSetup(BaseService):
    def setup(self) -> None:
        raise OSError("no route to the vector store")


def failed_setup(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """A service whose setup raises was still constructed: it must still be cleaned."""
    trace = Trace()
    env = LocalEnvironment("failed-setup", observer=trace, dispatcher_class=dispatcher)
    env.register_service("broken", BrokenSetup)
    env.from_batch([1]).sink(lambda x: None)
    return env, Run(trace, drive(env, [], hold=hold))


def _never_quiet() -> bool:
    """The fallback of a scenario on the virtual clock: its job must go quiescent."""
    raise AssertionError("the job never went quiescent\n" + format_thread_stacks())


class CallsBroken(SinkFunction):
    def execute(self, data: Any) -> None:
        self.call_service("broken", method="hello")


def calling_a_failed_setup(
    dispatcher: type[Dispatcher], hold: float
) -> tuple[LocalEnvironment, Run]:
    """A sink calls a service whose setup raised, on the harness's virtual clock (a wait
    with a timeout is seen, and jumped, when the job is quiet): the call must fail at
    once, and the job end with the setup's error, within its 30 s deadline."""
    trace = Trace()
    env = LocalEnvironment(
        "calls-failed-setup", observer=trace, dispatcher_class=dispatcher, deadline=30.0
    )
    env.register_service("broken", BrokenSetup)
    env.from_batch([1]).sink(CallsBroken)
    errors: list[BaseException] = []

    submitter = submitting(env, errors)
    with VirtualClock() as clock:
        clock.adopt(submitter)
        submitter.start()
        # Quiet with no timed wait due within the next 100 virtual seconds: the job ended
        # (or hangs for good). Each settle jumps at most 200 timed waits.
        while submitter.is_alive():
            clock.settle(patience=100.0, timeout=DEADLINE, fallback=_never_quiet)
            if clock.quiescent() and (clock.next_due() or float("inf")) > clock.now() + 100:
                break
        submitter.join(DEADLINE)
    assert not submitter.is_alive(), "the harness thread outlived its deadline"
    assert env.dispatcher is not None
    env.dispatcher.settle(DEADLINE)
    return env, Run(trace, errors)


# -- streaming scenarios: the job runs until the ending call ---------------------------


class Counting(SourceFunction):
    """A streaming source: ``n`` items, then nothing more until the job is stopped."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.i = n, 0

    def execute(self) -> Any:
        if self.i < self.n:
            self.i += 1
            return self.i
        return None


def drive_stream(
    env: LocalEnvironment,
    gates: list[Gate],
    *,
    endings: tuple[str, ...] = ("stop",),
    ready: Callable[[], bool] | None = None,
    hold: float,
) -> list[BaseException]:
    """Start the streaming job, wait until ``ready()`` says the job is where the
    scenario wants it (by default: until every item was delivered),
    make the ending calls one after the other in a harness thread, and open the gates
    when the first returned or ``hold`` seconds passed."""
    errors: list[BaseException] = []
    trace = env.observer
    assert isinstance(trace, Trace)
    env.submit(autostop=False)
    assert ready() if ready is not None else trace.wait_for(_all_sunk, timeout=DEADLINE)

    def end() -> None:
        for ending in endings:
            try:
                getattr(env, ending)()
            except BaseException as exc:
                errors.append(exc)

    ender = threading.Thread(target=end, name="harness-stop", daemon=True)
    ender.start()
    trace.wait_for(lambda events: any(e.kind is K.WAIT_END for e in events), timeout=hold)
    for gate in gates:
        gate.open()
    ender.join(DEADLINE)
    assert not ender.is_alive(), "the harness thread outlived its deadline"
    assert env.dispatcher is not None
    env.dispatcher.settle(DEADLINE)
    return errors


def _all_sunk(events: tuple[Event, ...]) -> bool:
    return sum(e.kind is K.ITEM_SINK for e in events) >= 3


def streaming_gated_cleanup(
    dispatcher: type[Dispatcher], hold: float
) -> tuple[LocalEnvironment, Run]:
    """A streaming job whose service cleanup parks at a gate: stop() must wait for it."""
    gate = Gate("cleanup", timeout=DEADLINE)

    class Slow(BaseService):
        def cleanup(self) -> None:
            gate.pass_through()

    trace = Trace()
    env = LocalEnvironment("stream-cleanup", observer=trace, dispatcher_class=dispatcher)
    env.register_service("slow", Slow)
    env.from_source(Counting, 3).sink(lambda x: None)
    return env, Run(trace, drive_stream(env, [gate], hold=hold))


def streaming_stop_then_close(
    dispatcher: type[Dispatcher], hold: float
) -> tuple[LocalEnvironment, Run]:
    """hello_service_world as a streaming job, ended by stop() and then close()."""
    trace = Trace()
    env = LocalEnvironment("stream-hello", observer=trace, dispatcher_class=dispatcher)
    env.register_service("hello", Hello)
    env.from_source(Counting, 3).sink(CallsHello)
    return env, Run(trace, drive_stream(env, [], endings=("stop", "close"), hold=hold))


def streaming_in_flight(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """A map holds the first item at a gate, the others queue behind it; the stop comes
    while they are in flight, and every one of them is owed to the sink."""
    gate = Gate("map", timeout=DEADLINE)

    def park_on_first(x: int) -> int:
        if x == 1:
            gate.pass_through()
        return x

    trace = Trace()
    env = LocalEnvironment("stream-in-flight", observer=trace, dispatcher_class=dispatcher)
    env.from_source(Counting, 3).map(park_on_first).sink(lambda x: None)

    def open_after_the_stop_request() -> None:
        assert env.dispatcher is not None
        env.dispatcher.stop_requested.wait(DEADLINE)
        gate.open()

    opener = threading.Thread(target=open_after_the_stop_request, daemon=True)

    def emitted_and_parked() -> bool:
        gate.wait_parked(1, timeout=DEADLINE)
        opener.start()  # the job was submitted: it opens the gate once stop() asked
        return trace.wait_for(
            lambda events: sum(e.kind is K.ITEM_EMIT for e in events) == 3, timeout=DEADLINE
        )

    run = Run(trace, drive_stream(env, [], ready=emitted_and_parked, hold=hold))
    opener.join(DEADLINE)
    assert not opener.is_alive()
    return env, run


Scenario = Callable[[type[Dispatcher], float], tuple[LocalEnvironment, Run]]
#: For each mutant, the scenario that exposes its bug.
RACING = (
    "stop signal of sink",
    "stop signal of source",
    "counted the stop signal of source",
    "counted the stop signal of sink",
)


def racing_last_signals(dispatcher: type[Dispatcher], hold: float) -> tuple[LocalEnvironment, Run]:
    """A source and its sink stop at once, on a schedule: the sink's stop signal is
    delivered before the source's, and (where the dispatcher marks it) each is counted
    before either looks whether it was the last."""
    return scheduled_last_signals(dispatcher, RACING)


def scheduled_last_signals(
    dispatcher: type[Dispatcher], order: tuple[str, ...]
) -> tuple[LocalEnvironment, Run]:
    """The last two stop signals of a source -> sink job, on the harness's virtual clock:
    each time the job is quiescent, the point named by the next prefix of ``order`` is
    released (a prefix no thread is parked at is skipped: the dispatcher has no such
    point, or the job already ended)."""
    scheduler = Scheduler(Plan(), timeout=DEADLINE)
    trace = Trace()
    env = LocalEnvironment(
        "racing", observer=trace, dispatcher_class=dispatcher, scheduling_point=scheduler.point
    )
    env.register_service("db", Closing, "db")
    env.from_batch([1]).sink(lambda x: None)
    errors: list[BaseException] = []

    submitter = submitting(env, errors)
    with VirtualClock() as clock:
        clock.adopt(submitter)
        submitter.start()
        for prefix in order:
            clock.settle(patience=2.0, timeout=DEADLINE, fallback=_never_quiet)
            parked = [label for label in scheduler.parked() if label.startswith(prefix)]
            if parked:
                scheduler.release(parked[0])
        scheduler.close()
        submitter.join(DEADLINE)
    assert not submitter.is_alive(), "the harness thread outlived its deadline"
    assert env.dispatcher is not None
    env.dispatcher.settle(DEADLINE)
    return env, Run(trace, errors)


EXPOSED_BY: dict[str, Scenario] = {
    "pre_878": hello_world,
    "wait_on_is_running": gated_cleanup,
    "wait_on_tasks": gated_cleanup,
    "services_cleared_early": gated_cleanup,
    "cleanup_stops_at_first_failure": failing_cleanup,
    "cleanup_after_first_pipeline": two_pipelines,
    "double_cleanup": hello_world,
    "wait_on_sources": gated_sink,
    "stops_at_first_signal": gated_parallel_map,
    "skips_failed_setup_cleanup": failed_setup,
    "unbalanced_counter": failing_cleanup,
    "waits_for_failed_setup": calling_a_failed_setup,
    "unjoined_service_thread": hello_world,
    "lost_errors": failing_cleanup,
    "stop_joins_sources_only": streaming_gated_cleanup,
    "ending_twice_cleans_twice": streaming_stop_then_close,
    "stop_drops_in_flight": streaming_in_flight,
    "sleeps_for_cleanups": gated_cleanup,
    "joins_cleanup_briefly": gated_cleanup,
    "cleans_when_sources_end": gated_calling_sink,
    "racy_last_stop_signal": racing_last_signals,
}
SCENARIOS = sorted(set(EXPOSED_BY.values()), key=lambda s: s.__name__)


def test_every_mutant_has_a_scenario_and_every_property_a_mutant() -> None:
    from sage_lifecycle import PROPERTIES

    assert set(EXPOSED_BY) == set(MUTANTS)
    assert {m.breaks for m in MUTANTS.values()} == set(PROPERTIES)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_caught_by_the_property_it_breaks(name: str) -> None:
    mutant = MUTANTS[name]
    # Hold the gates until the buggy wait returns: the bug shows whatever the machine's load.
    env, run = EXPOSED_BY[name](mutant.dispatcher, DEADLINE)
    found = run.properties()
    finish(env)
    assert mutant.breaks in found, (
        f"{name} ({mutant.summary}) was not caught by {mutant.breaks}; found {sorted(found)}"
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_reference_passes_every_scenario(scenario: Scenario) -> None:
    env, run = scenario(Dispatcher, HOLD)
    violations = check(run.trace.events())
    finish(env)
    assert violations == []
    injected: dict[str, list[str]] = {
        "failing_cleanup": ["b: cannot close"],
        "failed_setup": ["no route to the vector store"],
        "calling_a_failed_setup": [
            "no route to the vector store",
            "sink1:CallsBroken[0] called broken.hello(), but the service's setup failed: "
            "OSError: no route to the vector store",
        ],
    }
    for err in run.errors:  # only the injected faults, reported together
        assert isinstance(err, JobFailed)
        assert [str(e) for e in err.exceptions] == injected[scenario.__name__]


def test_the_racy_mutant_cleans_twice_only_on_the_racing_schedule() -> None:
    """The race is the schedule's: the same job with the sink's signal counted and looked
    at before the source's is delivered cleans once."""
    mutant = MUTANTS["racy_last_stop_signal"]
    serial = (
        "stop signal of sink",
        "counted the stop signal of sink",
        "stop signal of source",
        "counted the stop signal of source",
    )
    env, run = scheduled_last_signals(mutant.dispatcher, serial)
    found = run.properties()
    finish(env)
    assert found == set()
    env, run = scheduled_last_signals(mutant.dispatcher, RACING)
    found = run.properties()
    finish(env)
    assert found == {"cleanup-exactly-once"}


def test_pre_878_story_names_the_property_the_witnesses_and_the_timeline() -> None:
    from sage_lifecycle.report import format_report

    env, run = hello_world(MUTANTS["pre_878"].dispatcher, DEADLINE)
    events = run.trace.events()
    violations = check(events)
    finish(env)
    text = format_report(violations, events)
    assert "cleanup-exactly-once" in text
    assert "service 'hello' was never cleaned up" in text
    # The wait did nothing wrong: it returned after everything that ever happened. The
    # missing cleanup is one fact with one verdict, not an early return as well.
    assert "no-early-return" not in text
    assert ">>" in text
    assert "wait.end" in text


def test_the_hang_mutant_fails_with_a_deadline_not_a_stuck_suite() -> None:
    env, run = failing_cleanup(MUTANTS["unbalanced_counter"].dispatcher, DEADLINE)
    finish(env)
    assert [type(e) for e in run.errors] == [JobHangError]


def test_the_demo_catches_pre_878_in_plain_text() -> None:
    """``python -m sage_lifecycle.demo`` (the README points new users at it): exit 0, the
    bug caught, and no raw RST markup in what it prints."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "sage_lifecycle.demo"],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SAGE's pre-#878 bug caught by cleanup-exactly-once" in done.stdout
    assert "``" not in done.stdout


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_violation_is_explained_let_then_so(name: str) -> None:
    """Elle's manner, for every property (each is some mutant's): "Let" names each witness
    with its thread, "Then" gives the facts of the property beyond the order of the
    witnesses, each with its reason, and the last line names the property contradicted."""
    from sage_lifecycle.contract.explain import explain, witness_names

    mutant = MUTANTS[name]
    env, run = EXPOSED_BY[name](mutant.dispatcher, DEADLINE)
    events = run.trace.events()
    violations = [v for v in check(events) if v.property == mutant.breaks]
    finish(env)
    assert violations
    names = witness_names(violations)
    for v in violations:
        why = explain(v, events, names=names)
        assert [line.split(" = ")[0] for line in why.let] == [names[s] for s in v.seqs]
        for line, w in zip(why.let, v.witnesses, strict=True):
            assert line.startswith(f"{names[w.seq]} = #{w.seq} {w.kind.value} ")
            assert line.endswith(f"(thread {w.thread})"), line
        own = [t for t in why.then if " precedes " not in t]
        assert own, f"{name}: no fact of {v.property} in {why.then}"
        assert why.so == (
            f"so {v.message}, which contradicts {v.property}: "
            f"{PROPERTIES_BY_ID[v.property].summary}"
        )
        assert str(why).startswith("Let:\n")
