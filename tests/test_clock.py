"""The virtual clock: job threads' time jumps when the job is quiescent, nobody else's does,
and quiet is a fact the driver can wait for.

The ``time.sleep`` calls here run in the job's threads, on the virtual clock: they are the
behaviour under test, never synchronisation (the test's own thread waits on events and
joins, each with a deadline).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sage_lifecycle import EventKind, check
from sage_lifecycle.clock import VirtualClock
from sage_lifecycle.gates import Gate
from sage_lifecycle.machines import BlackBoxMachine, Search
from sage_lifecycle.reference import Dispatcher
from sage_lifecycle.reference_target import ReferenceTarget
from sage_lifecycle.report import LifecycleViolation
from sage_lifecycle.resolve import resolve_target
from sage_lifecycle.target import Target
from sage_lifecycle.topology import PipelineSpec, ServiceSpec, SinkSpec, Topology
from sage_lifecycle.trace import Event

LIMIT = 30.0  # every wait here has a deadline; none is reached when the clock works


@pytest.fixture
def clock() -> Iterator[VirtualClock]:
    with VirtualClock() as c:
        yield c
    assert time.sleep.__module__ == "time", "the clock left time.sleep patched"


def job_thread(clock: VirtualClock, fn: Callable[[], None], name: str = "job") -> threading.Thread:
    thread = threading.Thread(target=fn, name=name, daemon=True)
    clock.adopt(thread)
    thread.start()
    return thread


def settle(clock: VirtualClock, patience: float = 2.0) -> bool:
    def no_fallback() -> bool:
        raise AssertionError("the job never became quiescent")

    return clock.settle(patience=patience, fallback=no_fallback, timeout=LIMIT)


def test_a_sleep_ends_at_once_when_the_job_is_quiescent(clock: VirtualClock) -> None:
    done = threading.Event()
    seen: list[float] = []

    def sleeper() -> None:
        t0 = time.monotonic()
        time.sleep(1.5)
        seen.append(time.monotonic() - t0)
        done.set()

    real0 = time.monotonic()
    thread = job_thread(clock, sleeper)
    assert settle(clock)
    assert done.wait(LIMIT)
    thread.join(LIMIT)
    assert seen[0] >= 1.5, "virtual time ran short of the sleep"
    assert clock.jumped >= 1.4
    # The test's own thread is not the job's: its clock never jumped.
    assert time.monotonic() - real0 < clock.jumped + LIMIT
    assert not clock.owns(threading.current_thread())


def test_timed_waits_wake_in_deadline_order(clock: VirtualClock) -> None:
    order: list[str] = []
    lock = threading.Lock()

    def sleeper(name: str, seconds: float) -> Callable[[], None]:
        def run() -> None:
            time.sleep(seconds)
            with lock:
                order.append(name)

        return run

    threads = [
        job_thread(clock, sleeper("late", 0.2), "late"),
        job_thread(clock, sleeper("early", 0.05), "early"),
        job_thread(clock, sleeper("middle", 0.1), "middle"),
    ]
    assert settle(clock)
    for t in threads:
        t.join(LIMIT)
    assert order == ["early", "middle", "late"]
    assert clock.jumps == 3


def test_an_untimed_wait_is_quiescent_and_a_notify_makes_it_run(clock: VirtualClock) -> None:
    event = threading.Event()
    resumed = threading.Event()
    gate = threading.Event()

    def waiter() -> None:
        event.wait()
        resumed.set()
        gate.wait()  # blocks again, untimed

    thread = job_thread(clock, waiter)
    assert settle(clock)
    assert clock.quiescent()
    assert not resumed.is_set()
    event.set()  # the notifier marks it running before it wakes
    assert settle(clock)
    assert resumed.is_set()
    gate.set()
    thread.join(LIMIT)
    assert not thread.is_alive()


def test_a_timed_join_of_a_thread_parked_at_a_gate_times_out_in_virtual_time(
    clock: VirtualClock,
) -> None:
    """The bounded join of a background cleanup: it returns while the cleanup is parked."""
    gate = Gate("cleanup", timeout=LIMIT)
    joined: list[bool] = []

    def controller() -> None:
        cleaner = threading.Thread(target=gate.pass_through, name="cleaner", daemon=True)
        cleaner.start()  # adopted: started by a job thread
        cleaner.join(0.1)
        joined.append(cleaner.is_alive())

    thread = job_thread(clock, controller)
    assert settle(clock)
    thread.join(LIMIT)
    assert joined == [True], "the join should have timed out with the cleaner parked"
    assert gate.parked == 1, "a gate keeps real time: the jump must not time it out"
    gate.open()
    assert settle(clock)


def test_a_queue_get_with_a_timeout_runs_on_virtual_time(clock: VirtualClock) -> None:
    q: queue.Queue[int] = queue.Queue()
    got: list[str] = []

    def consumer() -> None:
        try:
            q.get(timeout=1.0)
            got.append("item")
        except queue.Empty:
            got.append("empty")

    thread = job_thread(clock, consumer)
    assert settle(clock)
    thread.join(LIMIT)
    assert got == ["empty"]


def test_a_wait_beyond_the_patience_is_left_alone(clock: VirtualClock) -> None:
    event = threading.Event()
    woke: list[bool] = []

    def poller() -> None:
        woke.append(event.wait(30.0))

    thread = job_thread(clock, poller)
    assert settle(clock, patience=2.0)
    assert woke == []
    assert clock.jumps == 0
    event.set()
    thread.join(LIMIT)
    assert woke == [True]


def test_closing_the_clock_wakes_its_sleepers_and_restores_time() -> None:
    with VirtualClock() as clock:
        done = threading.Event()

        def sleeper() -> None:
            time.sleep(600)
            done.set()

        thread = job_thread(clock, sleeper)
        assert settle(clock, patience=0.0)
        assert not done.is_set()
    assert done.wait(LIMIT), "close() must wake the job's pending timed waits"
    thread.join(LIMIT)
    assert time.sleep.__module__ == "time"
    assert threading.Condition.wait.__module__ == "threading"


# -- hangs seen on owned time --------------------------------------------------------------


class _SleepsPastItsDeadline(Dispatcher):
    """The wait sleeps 100 s before it waits: a timer beyond the deadline."""

    def wait(self, subject: str = "submit", timeout: float | None = None, **kw: Any) -> None:
        time.sleep(100.0)
        super().wait(subject, timeout, **kw)


class _WaitsForever(Dispatcher):
    """The wait blocks on an event nothing sets, with no timeout: a deadlock."""

    def wait(self, subject: str = "submit", timeout: float | None = None, **kw: Any) -> None:
        super().wait(subject, timeout, **kw)
        threading.Event().wait()


def _run_once(target: Callable[[], Target], topology: Topology) -> tuple[Event, ...]:
    """One job on the black-box machine (5 s deadline, virtual time), its whole trace."""

    class Once(BlackBoxMachine):
        pass

    Once.target_factory = staticmethod(target)
    Once.deadline = 5.0
    Once.search = Search()
    m = Once()
    with contextlib.suppress(LifecycleViolation):
        m.begin(topology)
        m.teardown()
    m.teardown()
    return m.trace.events()


def test_a_deadlock_is_reported_as_one_when_the_job_is_quiescent() -> None:
    """Once every gate is open, each of the job's threads is blocked with nothing due:
    the driver records the hang then, as a deadlock, instead of waiting out the
    deadline (a job thread blocked forever would have cost the whole of it)."""
    events = _run_once(lambda: ReferenceTarget(_WaitsForever), Topology())
    (deadline,) = [e for e in events if e.kind is EventKind.WAIT_DEADLINE]
    assert deadline.get("stuck") == "deadlock"
    assert "threading.Event().wait()" in str(deadline.get("stacks"))
    assert [v.message for v in check(events, properties=("no-hang",))] == [
        "submit() can never return: deadlock (every thread of the job was blocked in an "
        "untimed wait, no gate held it and no timer was due)"
    ]


@pytest.mark.parametrize(
    "target",
    [lambda: ReferenceTarget(_SleepsPastItsDeadline), resolve_target("mutant:unbalanced_counter")],
    ids=["sleeps past its deadline", "unbalanced_counter"],
)
def test_a_timer_due_after_the_deadline_is_a_hang_reported_at_once(
    target: Callable[[], Target],
) -> None:
    """unbalanced_counter never counts a failed cleanup: its wait blocks until the
    dispatcher's own 60 s limit, after the harness's 5 s deadline."""
    topology = Topology(services=(ServiceSpec("s0", cleanup="raises"),))
    events = _run_once(target, topology)
    (deadline,) = [e for e in events if e.kind is EventKind.WAIT_DEADLINE]
    assert deadline.get("stuck") == "timer"
    assert [v.message for v in check(events, properties=("no-hang",))] == [
        "submit() did not return within its deadline of 5 s (every thread of the job was "
        "blocked, no gate held it, and its next timer was due only after the deadline)"
    ]


def test_the_reference_is_never_taken_for_a_deadlock() -> None:
    topology = Topology(
        services=(ServiceSpec("s0", cleanup="raises"), ServiceSpec("s1")),
        pipelines=(PipelineSpec(items=2, sinks=(SinkSpec(parallelism=2, calls=("s1",)),)),),
    )
    events = _run_once(resolve_target("reference"), topology)
    assert [e for e in events if e.kind is EventKind.WAIT_DEADLINE] == []
    assert check(events) == []
