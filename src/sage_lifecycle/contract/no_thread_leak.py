"""``no-thread-leak``: threads the job started are not alive when the wait returns."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, completed_waits, violation

__all__ = ["PROPERTY", "SITUATIONS", "SUMMARY", "check", "exercised", "situations"]

PROPERTY = "no-thread-leak"
SUMMARY = (
    "threads the job started are not alive when the wait returns (strict for the "
    "reference dispatcher; an allow-list and grace period for black-box targets)"
)


#: Every situation :func:`situations` may name, in the order it names them.
SITUATIONS = (
    "the job's threads were looked at after the ending call returned",
    "a task or setup had failed when the threads were looked at",
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """Two kinds of evidence, each deterministic for a given run.

    Black-box: the harness records ``thread.alive`` for each thread the job started that
    it found still running after the wait returned and the target's grace period ran
    out; each one is a leak. Strict: a runtime that reports ``thread.start`` and
    ``thread.joined`` (the reference does) promises to join every thread it starts; on a
    complete trace, a thread started before the wait returned and never joined is a
    leak. (A thread joined a moment after the wait returned is not evidence by itself:
    it may have ended before; the alive check decides.)
    """
    out: list[Violation] = []
    joined: set[str] = set()
    for e in events:
        if e.kind is EventKind.THREAD_JOINED:
            joined.add(e.subject)
        elif e.kind is EventKind.THREAD_ALIVE:
            out.append(
                violation(
                    PROPERTY,
                    f"thread {e.subject!r} was still alive after the wait returned",
                    [e],
                )
            )
    waits = completed_waits(events)
    if not complete or not waits:
        return out
    wait = waits[0]
    never = [
        e
        for e in events
        if e.seq < wait.seq and e.kind is EventKind.THREAD_START and e.subject not in joined
    ]
    if never:
        names = ", ".join(repr(e.subject) for e in never)
        out.append(
            violation(
                PROPERTY,
                f"{len(never)} thread(s) started before {wait.subject}() returned were never "
                f"joined: {names}",
                [*never[:3], wait],
            )
        )
    return out


def situations(events: Sequence[Event]) -> list[str]:
    """The situations in this job that put the property to the test: the ending call
    returned and the job's threads were looked at (the harness checks every black-box job
    after its wait; the reference reports its joins), and the harder case, a job with a
    failure in it (a thread left behind by the failure)."""
    if not completed_waits(events):
        return []
    found = [SITUATIONS[0]]
    if any(
        e.kind is EventKind.TASK_ERROR or (e.kind is EventKind.SERVICE_SETUP_END and e.error)
        for e in events
    ):
        found.append(SITUATIONS[1])
    return found


def exercised(events: Sequence[Event]) -> bool:
    """Whether the job put the property to the test: any of its :func:`situations`."""
    return bool(situations(events))
