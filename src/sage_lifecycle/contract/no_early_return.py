"""``no-early-return``: the call that ends the job returns only after the job is over."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, first_completed_wait, pending_while_parked, violation

__all__ = ["PROPERTY", "SITUATIONS", "SUMMARY", "check", "exercised", "situations"]

PROPERTY = "no-early-return"
SUMMARY = (
    "the call that ends the job (submit(autostop=True); for a streaming job stop() or "
    "close()) returns only after every service's cleanup ended and every task stopped"
)


#: Every situation :func:`situations` may name, in the order it names them.
SITUATIONS = (
    "the ending call was pending while a cleanup was parked",
    "the ending call was pending while a task was parked at a gate",
)

# Events the harness records about the job rather than the job's own doing, and a
# join (the thread may have ended long before: no-thread-leak's "alive" check decides):
# they may follow the ending call without the runtime having done anything late.
_HARNESS_KINDS = frozenset(
    {
        EventKind.THREAD_JOINED,
        EventKind.NODE_DECLARE,
        EventKind.GATE_PARK,
        EventKind.GATE_OPEN,
        EventKind.GATE_FAIL,
        EventKind.WAIT_BEGIN,
        EventKind.WAIT_END,
        EventKind.WAIT_DEADLINE,
        EventKind.THREAD_ALIVE,
    }
)
_TASK_KINDS = frozenset(
    {
        EventKind.TASK_CREATE,
        EventKind.TASK_START,
        EventKind.TASK_ERROR,
        EventKind.TASK_STOP,
        EventKind.ITEM_EMIT,
        EventKind.ITEM_DROP,
        EventKind.ITEM_SINK,
    }
)


def _family(e: Event) -> tuple[str, str]:
    """What a late event is about: one violation per service, task or thread."""
    if e.kind.value.startswith("service."):
        return "service", e.subject
    if e.kind in _TASK_KINDS:
        return "task", e.subject
    return "thread", e.subject


def _late(e: Event) -> str:
    """How a late event reads after "returned before ...": what was still to come."""
    if e.kind is EventKind.SERVICE_CLEANUP_BEGIN:
        return f"the cleanup of service {e.subject!r} began"
    if e.kind is EventKind.SERVICE_CLEANUP_END:
        return f"the cleanup of service {e.subject!r} ended"
    if e.kind is EventKind.TASK_STOP:
        return f"task {e.subject!r} stopped"
    if e.kind is EventKind.ITEM_SINK:
        return f"item {e.get('item')!r} reached sink {e.subject!r}"
    if e.kind is EventKind.ITEM_EMIT:
        return f"source {e.subject!r} emitted item {e.get('item')!r}"
    if e.kind is EventKind.SERVICE_CALL_BEGIN:
        return f"{e.get('caller', '?')} called {e.subject}.{e.get('method', '?')}()"
    return f"{e.kind.value} of {e.subject!r}"


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """The first completed wait is the ending call; nothing of the job may come after it.

    Two kinds of evidence, one violation per service, task or thread:

    - an event of the job recorded after the ending call returned (a cleanup that began
      or ended later, a task that stopped later, an item that reached a sink later, ...):
      witnesses are the wait-end and that event;
    - a cleanup that had begun, or a task that had started, and had not ended when the
      call returned and never did (or not yet, mid-run): witnesses are its start and the
      wait-end.

    A cleanup that never began at all is not this property's: it is a missing cleanup
    (``cleanup-exactly-once``), whatever the wait did. One linear pass over the trace.
    """
    wait = first_completed_wait(events)
    if wait is None:
        return []
    cleanups: dict[str, Event] = {}  # begun and not ended when the call returned
    tasks: dict[str, Event] = {}  # created or started and not stopped by then
    found: dict[tuple[str, str], Violation] = {}
    for e in events:
        if e.seq < wait.seq:
            if e.kind is EventKind.SERVICE_CLEANUP_BEGIN:
                cleanups.setdefault(e.subject, e)
            elif e.kind is EventKind.SERVICE_CLEANUP_END:
                cleanups.pop(e.subject, None)
            elif e.kind in (EventKind.TASK_CREATE, EventKind.TASK_START):
                tasks.setdefault(e.subject, e)
            elif e.kind is EventKind.TASK_STOP:
                tasks.pop(e.subject, None)
            continue
        if e.seq == wait.seq or e.kind in _HARNESS_KINDS:
            continue
        key = _family(e)
        if key not in found:
            found[key] = violation(
                PROPERTY, f"{wait.subject}() returned before {_late(e)}", [wait, e]
            )
    tail = " and never did" if complete else " yet"
    for name, begin in cleanups.items():
        found.setdefault(
            ("service", name),
            violation(
                PROPERTY,
                f"{wait.subject}() returned while the cleanup of service {name!r} was "
                f"running: it had not ended{tail}",
                [begin, wait],
            ),
        )
    for name, start in tasks.items():
        found.setdefault(
            ("task", name),
            violation(
                PROPERTY,
                f"{wait.subject}() returned, but the task {name!r} had not stopped{tail}",
                [start, wait],
            ),
        )
    return sorted(found.values(), key=lambda v: v.seqs)


def situations(events: Sequence[Event]) -> list[str]:
    """The situations in this job that put the property to the test: the ending call was
    pending while the job still had work held back (a cleanup parked, a task parked at a
    gate), so a call that returns early would return before it."""
    found = []
    if pending_while_parked(events, "cleanup:"):
        found.append(SITUATIONS[0])
    if any(pending_while_parked(events, p) for p in ("end:", "item:", "more:")):
        found.append(SITUATIONS[1])
    return found


def exercised(events: Sequence[Event]) -> bool:
    """Whether the job put the property to the test: any of its :func:`situations`."""
    return bool(situations(events))
