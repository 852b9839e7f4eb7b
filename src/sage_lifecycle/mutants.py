"""A catalogue of realistic buggy dispatchers: one bug each, and the property it breaks.

Each mutant is a subclass of the reference :class:`~sage_lifecycle.reference.Dispatcher`
that changes one documented step the way real runtimes get it wrong (SAGE's behaviour
before PR #878 first). The project's own suite proves the harness catches every one:
that is how we know the checks have power. Run a job on one with::

    LocalEnvironment("job", observer=trace, dispatcher_class=MUTANTS["pre_878"].dispatcher)
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from .reference.dispatcher import (
    Dispatcher,
    Item,
    NodeSpec,
    ServiceRuntime,
    TaskRuntime,
    clean_recorded,
)
from .trace import Event, EventKind

__all__ = [
    "MUTANTS",
    "CleansWhenSourcesEnd",
    "CleanupAfterFirstPipeline",
    "CleanupStopsAtFirstFailure",
    "DoubleCleanup",
    "EndingTwiceCleansTwice",
    "JoinsCleanupBriefly",
    "LostErrors",
    "Mutant",
    "Pre878",
    "RacyLastStopSignal",
    "ServicesClearedEarly",
    "SkipsFailedSetupCleanup",
    "SleepsForCleanups",
    "StopDropsInFlight",
    "StopJoinsSourcesOnly",
    "StopsAtFirstSignal",
    "UnbalancedCounter",
    "UnjoinedServiceThread",
    "WaitOnIsRunning",
    "WaitOnSources",
    "WaitOnTasks",
    "WaitsForFailedSetup",
]


class Pre878(Dispatcher):
    """SAGE before PR #878: the last stop signal cleans the tasks but never the services,
    and the wait returns as soon as ``is_running`` is false."""

    def receive_node_stop_signal(self, node: TaskRuntime | str) -> bool:
        accepted = super().receive_node_stop_signal(node)
        with self._cond:
            if accepted and not self.tasks:
                self.is_running = False
                self._cond.notify_all()
        return accepted

    def cleanup_services(self) -> None:
        pass  # the method did not exist before #878: services are never cleaned

    def is_finished(self) -> bool:
        return not self.is_running


class WaitOnIsRunning(Dispatcher):
    """``is_running`` turns false before the service cleanup, and the wait trusts it."""

    def cleanup_services(self) -> None:
        with self._cond:
            self.is_running = False
            self._cond.notify_all()
        super().cleanup_services()

    def is_finished(self) -> bool:
        return not self.is_running


class WaitOnTasks(Dispatcher):
    """The wait returns when every task reported stopped, before services are cleaned."""

    def is_finished(self) -> bool:
        return not self.tasks


class ServicesClearedEarly(Dispatcher):
    """The ``services`` dict is cleared before the cleanups run, and the wait checks
    ``len(services) == 0 and len(tasks) == 0`` as SAGE's does."""

    def cleanup_services(self) -> None:
        with self._cond:
            self.services.clear()
            self._cond.notify_all()
        super().cleanup_services()

    def is_finished(self) -> bool:
        return not self.tasks and not self.services


class CleanupStopsAtFirstFailure(Dispatcher):
    """The cleanup loop gives up at the first service whose cleanup raises."""

    def cleanup_services(self) -> None:
        for runtime in reversed(list(self._registry.values())):
            self.clean_service(runtime)
            if runtime.cleanup_error is not None:
                break
        with self._cond:
            self.services.clear()
            self._cond.notify_all()


class CleanupAfterFirstPipeline(Dispatcher):
    """Services are cleaned when the first pipeline's sink stops, while other pipelines
    still call them (the cleanup runs on the stopping task's thread)."""

    def receive_node_stop_signal(self, node: TaskRuntime | str) -> bool:
        accepted = super().receive_node_stop_signal(node)
        if accepted and isinstance(node, TaskRuntime) and node.node.role == "sink":
            for runtime in self._registry.values():
                runtime.run_cleanup()
        return accepted


class CleansWhenSourcesEnd(Dispatcher):
    """The services are cleaned as soon as every source has ended (on the last source's
    thread), while stages and sinks still hold items in flight that call them."""

    def receive_node_stop_signal(self, node: TaskRuntime | str) -> bool:
        accepted = super().receive_node_stop_signal(node)
        if accepted and isinstance(node, TaskRuntime) and node.node.role == "source":
            with self._cond:
                sources_left = any(name.startswith("source") for name in self.tasks)
            if not sources_left:
                for runtime in self._registry.values():
                    runtime.run_cleanup()
        return accepted


def _clean_here(dispatcher: Dispatcher, runtime: ServiceRuntime) -> None:
    """Run a service's cleanup on the calling thread, recorded, with no guard against a
    second one; a failure is logged and collected, as the controller does."""
    if runtime.instance is not None:
        clean_recorded(dispatcher, runtime)


class DoubleCleanup(Dispatcher):
    """Two paths both clean the services: the last stop signal's thread and the
    controller (the race #878's fix opened when two last signals arrive together)."""

    def receive_node_stop_signal(self, node: TaskRuntime | str) -> bool:
        accepted = super().receive_node_stop_signal(node)
        if accepted and not self.tasks:
            for runtime in self._registry.values():
                _clean_here(self, runtime)
        return accepted


class SkipsFailedSetupCleanup(Dispatcher):
    """A service whose ``setup()`` raised is shut down without its ``cleanup()``, though it
    was constructed (what isage-kernel 0.2.5.3 does); the wait itself is correct."""

    def clean_service(self, runtime: ServiceRuntime) -> None:
        if runtime.setup_error is not None:
            with runtime._lock:
                runtime.cleaned = True  # run_cleanup() now does nothing
        super().clean_service(runtime)


class _StopsAtFirstSignal(TaskRuntime):
    def stage_ended(self) -> bool:
        # The first instance to end speaks for the whole stage.
        return self.node_end.end_one() == self.node.parallelism - 1


class StopsAtFirstSignal(Dispatcher):
    """A parallel stage tells downstream it ended when its first instance ends, not its
    last: downstream stops at that signal, and items a slower instance still sends are
    dropped."""

    task_class = _StopsAtFirstSignal


class WaitOnSources(Dispatcher):
    """The wait returns when the sources finished, before the sinks drained."""

    def is_finished(self) -> bool:
        return not any(t.node.role == "source" for t in self.tasks.values())


class UnbalancedCounter(Dispatcher):
    """A failing cleanup never decrements the pending-cleanup counter: the wait hangs."""

    _pending = -1

    def cleanup_services(self) -> None:
        with self._cond:
            self._pending = len(self._registry)
        super().cleanup_services()

    def clean_service(self, runtime: ServiceRuntime) -> None:
        super().clean_service(runtime)
        with self._cond:
            if runtime.cleanup_error is None:
                self._pending -= 1
            self._cond.notify_all()

    def is_finished(self) -> bool:
        return super().is_finished() and self._pending == 0


class WaitsForFailedSetup(Dispatcher):
    """A call waits for its service to become ready, up to a call timeout of a minute,
    instead of failing when the service's setup failed: a service whose setup raised
    never becomes ready, so every call to it waits out the timeout (SAGE 0.2.5.3 waits
    out its 10 s call timeout alike). A job with such a call outlives its deadline."""

    call_timeout = 60.0

    def call_service(self, caller: str, name: str, *args: Any, **kwargs: Any) -> Any:
        runtime = self._registry.get(name)
        if runtime is not None:
            runtime.setup_done.wait()
            with self._cond:
                self._cond.wait_for(lambda: runtime.state == "ready", self.call_timeout)
        return super().call_service(caller, name, *args, **kwargs)


class UnjoinedServiceThread(Dispatcher):
    """Each service is cleaned from the controller, but its worker thread is never told to
    exit nor joined: it stays parked on its request queue after the wait returned."""

    def clean_service(self, runtime: ServiceRuntime) -> None:
        with runtime._lock:
            runtime.state = "closing"  # refuse new calls, as the reference does
        runtime.run_cleanup()
        self.forget_service(runtime)


class LostErrors(Dispatcher):
    """The wait returns normally although a setup, cleanup or task failed."""

    def wait(
        self, subject: str = "submit", timeout: float | None = None, *, begin: Event | None = None
    ) -> None:
        with self._lock:
            self._errors_raised = True
        super().wait(subject, timeout, begin=begin)


# -- streaming: the call that ends a job started with submit(autostop=False) -------------


class StopJoinsSourcesOnly(Dispatcher):
    """``stop()`` asks the sources to stop and returns once they have, while stages still
    drain and before any service is cleaned (what SAGE 0.3's streaming handle does: it
    joins the source threads only)."""

    def stop(self, subject: str = "stop", timeout: float | None = None) -> None:
        begin = self.begin_wait(subject)
        self.request_stop()
        limit = self.deadline if timeout is None else timeout
        with self._cond:
            self._cond.wait_for(
                lambda: not any(name.startswith("source") for name in self.tasks), limit
            )
        self.waited = True
        self.record(
            EventKind.WAIT_END,
            subject,
            begin=begin.seq if begin is not None else -1,
            outcome="returned",
        )


class EndingTwiceCleansTwice(Dispatcher):
    """Every ending call cleans the services on the caller's thread, whether or not an
    earlier one (a second ``stop()``, ``close()`` after ``stop()``) already did, and
    whether or not the job failed."""

    def stop(self, subject: str = "stop", timeout: float | None = None) -> None:
        with self._lock:
            again = getattr(self, "_ended_once", False)
            self._ended_once = True
        try:
            super().stop(subject, timeout)
        finally:
            if again:
                for runtime in self._registry.values():
                    with runtime._lock:
                        runtime.cleaned = False  # "not cleaned by this call": cleaned again
                    with contextlib.suppress(Exception):  # a failing cleanup fails again
                        runtime.run_cleanup()

    def close(self, timeout: float | None = None) -> None:
        self.stop("close", timeout)  # no check for a job that already ended


class _DiscardingInput:
    """A task's input queue that, once a stop is requested, hands out only stop signals:
    the items still queued are discarded."""

    def __init__(self, queue: Any, stop_requested: Any) -> None:
        self._queue, self._stop = queue, stop_requested

    def put(self, message: Any) -> None:
        self._queue.put(message)

    def get(self) -> Any:
        while True:
            message = self._queue.get()
            if not (isinstance(message, Item) and self._stop.is_set()):
                return message


class _DropsQueuedOnStop(TaskRuntime):
    def __init__(self, dispatcher: Dispatcher, node: NodeSpec, index: int) -> None:
        super().__init__(dispatcher, node, index)
        self.queue = _DiscardingInput(self.queue, dispatcher.stop_requested)  # type: ignore[assignment]

    def emit(self, item: Any) -> None:
        # Once a stop is requested, stages stop forwarding: what is in flight is dropped.
        if self.node.role != "source" and self.dispatcher.stop_requested.is_set():
            return
        super().emit(item)


class StopDropsInFlight(Dispatcher):
    """Once ``stop()`` is requested, stages and sinks drop the items they still hold or
    have queued, though their sources emitted them before the stop: they never reach
    the sinks."""

    task_class = _DropsQueuedOnStop


class SleepsForCleanups(Dispatcher):
    """The wait blocks until every task stopped, then sleeps 50 ms "to let the cleanups
    finish", and returns, whether they did or not. A driver that opens the next gate after
    a few milliseconds of quiet lets the parked cleanup end during the sleep; on the
    harness's virtual clock the sleep ends first, as it would on a slow cleanup."""

    _slept = False

    def is_finished(self) -> bool:
        return not self.tasks and self._slept

    def wait(
        self, subject: str = "submit", timeout: float | None = None, *, begin: Any = None
    ) -> None:
        if begin is None:
            begin = self.begin_wait(subject)
        limit = self.deadline if timeout is None else timeout
        with self._cond:
            self._cond.wait_for(lambda: not self.tasks, limit)
        time.sleep(0.05)  # "let the cleanups finish"
        with self._cond:
            self._slept = True
        super().wait(subject, timeout, begin=begin)


class JoinsCleanupBriefly(Dispatcher):
    """The services are cleaned on a background thread, which the controller joins for at
    most 0.1 s before it declares every service gone (a cleanup that takes longer is
    still running when the wait returns)."""

    def cleanup_services(self) -> None:
        cleaner = self.spawn("cleanup", super().cleanup_services)
        cleaner.join(0.1)
        with self._cond:
            self.services.clear()
            self._cond.notify_all()


class RacyLastStopSignal(Dispatcher):
    """The services are cleaned by whichever stop signal looks last: a task's signal is
    counted under the lock, but whether it was the last is read after the lock is let go
    (check-then-act). When two last tasks stop at once and the second one's signal is
    counted before the first one looks, both see no task left and both clean every
    service. Rare by chance; a schedule that runs the two signals in that order shows it
    every time."""

    def receive_node_stop_signal(self, node: TaskRuntime | str) -> bool:
        name = node if isinstance(node, str) else node.name
        with self._cond:
            if name not in self.tasks:
                self.duplicate_stop_signals += 1
                return False
            del self.tasks[name]
        self.point(f"counted the stop signal of {name}")  # the lock is let go here
        if not self.tasks:  # looks last
            for runtime in reversed(list(self._registry.values())):
                runtime.cleaned = True  # the service's own thread will not clean it again
                _clean_here(self, runtime)
            with self._cond:
                self._batch_complete = True
                self._cond.notify_all()
        return True

    def clean_service(self, runtime: ServiceRuntime) -> None:
        # The last signal cleaned it: the controller only ends its thread and forgets it.
        runtime.shut_down()
        if runtime.thread is not None:
            self.join_thread(runtime.thread)
        self.forget_service(runtime)


@dataclass(frozen=True)
class Mutant:
    """A buggy dispatcher and the contract property its bug breaks."""

    name: str
    dispatcher: type[Dispatcher]
    breaks: str

    @property
    def summary(self) -> str:
        """The bug in one paragraph of plain text (the docstring, without RST markup)."""
        doc = (self.dispatcher.__doc__ or "").replace("``", "")
        return " ".join(doc.split())


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant("pre_878", Pre878, "cleanup-exactly-once"),
        Mutant("wait_on_is_running", WaitOnIsRunning, "no-early-return"),
        Mutant("wait_on_tasks", WaitOnTasks, "no-early-return"),
        Mutant("services_cleared_early", ServicesClearedEarly, "no-early-return"),
        Mutant(
            "cleanup_stops_at_first_failure", CleanupStopsAtFirstFailure, "cleanup-exactly-once"
        ),
        Mutant("skips_failed_setup_cleanup", SkipsFailedSetupCleanup, "cleanup-exactly-once"),
        Mutant("cleanup_after_first_pipeline", CleanupAfterFirstPipeline, "no-use-after-cleanup"),
        Mutant("double_cleanup", DoubleCleanup, "cleanup-exactly-once"),
        Mutant("wait_on_sources", WaitOnSources, "no-early-return"),
        Mutant("stops_at_first_signal", StopsAtFirstSignal, "no-data-loss"),
        Mutant("unbalanced_counter", UnbalancedCounter, "no-hang"),
        Mutant("waits_for_failed_setup", WaitsForFailedSetup, "no-hang"),
        Mutant("unjoined_service_thread", UnjoinedServiceThread, "no-thread-leak"),
        Mutant("lost_errors", LostErrors, "failure-isolation"),
        Mutant("stop_joins_sources_only", StopJoinsSourcesOnly, "no-early-return"),
        Mutant("ending_twice_cleans_twice", EndingTwiceCleansTwice, "cleanup-exactly-once"),
        Mutant("stop_drops_in_flight", StopDropsInFlight, "no-data-loss"),
        Mutant("sleeps_for_cleanups", SleepsForCleanups, "no-early-return"),
        Mutant("cleans_when_sources_end", CleansWhenSourcesEnd, "no-use-after-cleanup"),
        Mutant("joins_cleanup_briefly", JoinsCleanupBriefly, "no-early-return"),
        Mutant("racy_last_stop_signal", RacyLastStopSignal, "cleanup-exactly-once"),
    )
}
