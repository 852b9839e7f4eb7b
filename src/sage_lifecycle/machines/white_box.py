"""The white-box machine: the reference ``Dispatcher`` itself under stop signals in any
order (:class:`WhiteBoxMachine`)."""

from __future__ import annotations

import itertools
import threading
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from .._stacks import format_thread_stacks
from ..contract import check
from ..reference import BaseService, Dispatcher, ServiceFactory
from ..report import LifecycleViolation, format_report
from ..trace import EventKind, Trace
from ._common import _check_time

__all__ = ["WhiteBoxFinding", "WhiteBoxMachine"]

_white_box_jobs = itertools.count(1)


class _Recorded(BaseService):
    """A service for the white-box machine: the dispatcher itself records its lifecycle."""


class _VirtualTasks(Dispatcher):
    """The reference dispatcher with named tasks and no task threads: the machine
    delivers their stop signals itself."""

    def start_virtual(self, services: list[ServiceFactory], tasks: list[str]) -> None:
        with self._cond:
            self.tasks = {name: None for name in tasks}  # type: ignore[misc]
        self.start(services, [])


class WhiteBoxFinding(AssertionError):
    """An invariant of the white-box machine that failed, with the property it breaks."""

    def __init__(self, prop: str, message: str) -> None:
        super().__init__(f"{prop}: {message}")
        self.property = prop


def _finding(prop: str, holds: bool, message: str) -> None:
    if not holds:
        raise WhiteBoxFinding(prop, message)


class WhiteBoxMachine(RuleBasedStateMachine):
    """White-box: the reference ``Dispatcher`` under stop signals in any order.

    Signals arrive in random order, duplicated, and concurrently from several threads,
    interleaved with a background ``stop`` wait. Invariants: services are cleaned only
    once every task stopped, ``tasks`` is exactly the tasks not yet signalled, each
    duplicate is counted and ignored, and the contract holds on the dispatcher's trace.
    ``dispatcher_class`` may be a subclass to test (a mutant, say).
    """

    dispatcher_class: ClassVar[type[Dispatcher]] = Dispatcher
    deadline: ClassVar[float] = 30.0
    expires: ClassVar[float | None] = None

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
        _check_time(self.expires)
        cls = type("WhiteBox", (_VirtualTasks, self.dispatcher_class), {})
        d: _VirtualTasks = cls(
            f"white-box#{next(_white_box_jobs)}", observer=self.trace, deadline=self.deadline
        )
        self.names = [f"t{i}" for i in range(tasks)]
        specs = [ServiceFactory(f"s{i}", _Recorded) for i in range(services)]
        d.start_virtual(specs, self.names)
        self.dispatcher = d

    @rule(data=st.data(), concurrent=st.booleans())
    def signal(self, data: Any, concurrent: bool) -> None:
        _check_time(self.expires)
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
        expected = set(self.names) - self.stopped
        _finding(
            "no-hang",
            remaining <= expected,
            f"stop signals of {sorted(remaining - expected)} were sent but are not counted: "
            "the batch can never complete",
        )
        _finding(
            "no-early-return",
            remaining >= expected,
            f"tasks {sorted(expected - remaining)} were counted as stopped but sent no stop "
            "signal: the batch can complete early",
        )
        _finding(
            "cleanup-exactly-once",
            duplicates == self.sent - len(self.stopped),
            f"{self.sent - len(self.stopped)} duplicate stop signals were sent, "
            f"{duplicates} counted as duplicates: a duplicate can complete the batch again",
        )
        cleanups = self.trace.of_kind(EventKind.SERVICE_CLEANUP_BEGIN)
        _finding(
            "no-use-after-cleanup",
            not cleanups or self.stopped == set(self.names),
            f"cleanup began while tasks {sorted(set(self.names) - self.stopped)} had not stopped",
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
            _finding(
                "no-hang",
                not self.background.is_alive(),
                "stop() did not return once every task had stopped\n" + format_thread_stacks(),
            )
            _finding(
                "failure-isolation",
                not self.background_error,
                f"stop() raised although nothing failed: {self.background_error!r}",
            )
        else:
            d.wait("submit")
        _finding("no-early-return", d.is_finished(), "the wait returned before the job finished")
        alive = [t.name for t in d.threads() if t.is_alive()]
        _finding("no-thread-leak", not alive, f"threads still alive after the wait: {alive}")
        violations = check(self.trace.events())
        if violations:
            raise LifecycleViolation(format_report(violations, self.trace.events()), violations)
        cleaned = [e.subject for e in self.trace.of_kind(EventKind.SERVICE_CLEANUP_END)]
        _finding(
            "cleanup-exactly-once",
            sorted(cleaned) == sorted(self._service_names()),
            f"services constructed: {sorted(self._service_names())}; cleanups ended: "
            f"{sorted(cleaned)}",
        )

    def _service_names(self) -> list[str]:
        return [e.subject for e in self.trace.of_kind(EventKind.SERVICE_CONSTRUCT)]
