"""Events and the thread-safe trace that records them.

A trace is an append-only list of :class:`Event`. Every event takes its sequence number
from one counter under one lock at the moment it is recorded, so the order of the list is
the order in which things happened. Record an event *before* the effect it announces
becomes visible (cleanup begin before calling the user's cleanup, wait end right after the
wait call returns): then the log can never show an effect before its cause.

Example::

    trace = Trace()
    trace.record(EventKind.WAIT_BEGIN, "submit", job="demo#1")
    assert trace.events()[0].seq == 1
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, Protocol

__all__ = [
    "ERROR_KINDS",
    "Event",
    "EventKind",
    "NullObserver",
    "Observer",
    "Trace",
    "describe_error",
    "jobs_of",
]


class EventKind(str, enum.Enum):
    """What an event announces. The value is the short name used in timelines."""

    SERVICE_CONSTRUCT = "service.construct"
    SERVICE_SETUP_BEGIN = "service.setup.begin"
    SERVICE_SETUP_END = "service.setup.end"
    SERVICE_CALL_BEGIN = "service.call.begin"
    SERVICE_CALL_END = "service.call.end"
    SERVICE_CALL_REJECTED = "service.call.rejected"
    SERVICE_CLEANUP_BEGIN = "service.cleanup.begin"
    SERVICE_CLEANUP_END = "service.cleanup.end"
    TASK_CREATE = "task.create"
    TASK_START = "task.start"
    TASK_ERROR = "task.error"
    TASK_STOP = "task.stop"
    ITEM_EMIT = "item.emit"
    ITEM_DROP = "item.drop"
    ITEM_SINK = "item.sink"
    THREAD_START = "thread.start"
    THREAD_JOINED = "thread.joined"
    THREAD_ALIVE = "thread.alive"
    NODE_DECLARE = "node.declare"
    GATE_PARK = "gate.park"
    GATE_OPEN = "gate.open"
    GATE_FAIL = "gate.fail"
    WAIT_BEGIN = "wait.begin"
    WAIT_END = "wait.end"
    WAIT_DEADLINE = "wait.deadline"

    def __str__(self) -> str:
        return self.value


#: Kinds whose ``error`` field, when set, is a failure that must reach the caller.
ERROR_KINDS = frozenset(
    {EventKind.SERVICE_SETUP_END, EventKind.SERVICE_CLEANUP_END, EventKind.TASK_ERROR}
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, eq=False)
class Event:
    """One thing that happened, in the order it happened.

    ``subject`` names what the event is about (a service, a task instance, a thread, a
    wait call); ``job`` names the job, so one trace can hold several jobs; ``data`` holds
    the kind-specific details that the checkers read (see docs/events.md).
    Events compare by identity: ``seq`` is unique within a trace.
    """

    seq: int
    kind: EventKind
    subject: str
    job: str = ""
    thread: str = ""
    t_ns: int = 0
    error: str | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def get(self, key: str, default: Any = None) -> Any:
        """Return ``data[key]``, or ``default`` when the event does not carry it."""
        return self.data.get(key, default)

    def __repr__(self) -> str:
        parts = [f"#{self.seq} {self.kind.value} {self.subject!r}"]
        if self.job:
            parts.append(f"job={self.job!r}")
        if self.error is not None:
            parts.append(f"error={self.error!r}")
        parts.extend(f"{k}={_short(v)}" for k, v in self.data.items())
        return f"<Event {' '.join(parts)}>"


def _short(value: Any) -> str:
    """A value's repr, cut short when long (thread stacks go to the report's detail)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} chars)"


def describe_error(exc: BaseException) -> str:
    """The one-line form of an exception used in events: ``"Type: message"``."""
    text = str(exc)
    name = type(exc).__qualname__
    return f"{name}: {text}" if text else name


class Observer(Protocol):
    """Receives lifecycle events from a runtime. :class:`Trace` is the usual observer."""

    def record(
        self,
        kind: EventKind,
        subject: str,
        *,
        job: str = "",
        error: str | None = None,
        **data: Any,
    ) -> Event | None:
        """Record that ``kind`` happened to ``subject`` now; return the event if kept."""
        ...


class NullObserver:
    """An observer that keeps nothing, for runtimes run without a trace."""

    def record(
        self,
        kind: EventKind,
        subject: str,
        *,
        job: str = "",
        error: str | None = None,
        **data: Any,
    ) -> Event | None:
        return None


class Trace:
    """An append-only, thread-safe list of events with one global sequence number.

    ``record`` takes the sequence number, the clock reading and the appending under one
    lock, so ``seq`` order, time order and list order agree. Readers get snapshots.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._events: list[Event] = []
        self._t0 = time.perf_counter_ns()

    def record(
        self,
        kind: EventKind,
        subject: str,
        *,
        job: str = "",
        error: str | None = None,
        **data: Any,
    ) -> Event:
        """Append an event for ``kind``/``subject`` and return it."""
        kind = EventKind(kind)
        thread = threading.current_thread().name
        frozen = MappingProxyType(data) if data else _EMPTY
        with self._lock:
            event = Event(
                seq=len(self._events) + 1,
                kind=kind,
                subject=subject,
                job=job,
                thread=thread,
                t_ns=time.perf_counter_ns() - self._t0,
                error=error,
                data=frozen,
            )
            self._events.append(event)
            self._changed.notify_all()
        return event

    def events(self) -> tuple[Event, ...]:
        """A snapshot of every event recorded so far, in sequence order."""
        with self._lock:
            return tuple(self._events)

    def of_kind(self, *kinds: EventKind) -> list[Event]:
        """The events of the given kinds, in sequence order."""
        wanted = set(kinds)
        return [e for e in self.events() if e.kind in wanted]

    def wait_for(self, predicate: Any, *, timeout: float) -> bool:
        """Block until ``predicate(events)`` is true or ``timeout`` seconds pass.

        Returns whether the predicate became true. Event-driven: it wakes on each record.
        """
        with self._changed:
            return bool(self._changed.wait_for(lambda: predicate(tuple(self._events)), timeout))

    def wait_idle(self, quiet: float, *, timeout: float) -> bool:
        """Block until no event was recorded for ``quiet`` seconds, or ``timeout`` passed.

        Returns whether the trace went quiet. Used to hold a gate closed until everything
        that can happen without it has happened.
        """
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                if not self._changed.wait_for(
                    partial(_grew, self._events, len(self._events)), min(quiet, remaining)
                ):
                    return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

    def __repr__(self) -> str:
        return f"<Trace {len(self)} events>"


def _grew(events: list[Event], seen: int) -> bool:
    return len(events) != seen


def jobs_of(events: Sequence[Event]) -> dict[str, list[Event]]:
    """Split events by job, keeping sequence order within each job."""
    by_job: dict[str, list[Event]] = {}
    for event in events:
        by_job.setdefault(event.job, []).append(event)
    return by_job
