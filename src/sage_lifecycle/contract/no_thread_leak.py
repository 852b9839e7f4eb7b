"""``no-thread-leak``: threads the job started are not alive when the wait returns."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, completed_waits, violation

PROPERTY = "no-thread-leak"
SUMMARY = (
    "threads the job started are not alive when the wait returns (strict for the "
    "reference dispatcher; an allow-list and grace period for black-box targets)"
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """Strict form: each ``thread.start`` before a wait has its ``thread.joined`` before it.

    Black-box form: the harness records ``thread.alive`` for each thread it found still
    running after the wait returned and its grace period ran out; each one is a leak.
    """
    out: list[Violation] = []
    joined: dict[str, Event] = {}
    for e in events:
        if e.kind is EventKind.THREAD_JOINED:
            joined.setdefault(e.subject, e)
        elif e.kind is EventKind.THREAD_ALIVE:
            out.append(
                violation(
                    PROPERTY,
                    f"thread {e.subject!r} was still alive after the wait returned",
                    [e],
                )
            )
    waits = completed_waits(events)
    if not waits:
        return out
    wait = waits[0]
    unjoined: list[Event] = []
    late: list[tuple[Event, Event]] = []
    for e in events:
        if e.seq > wait.seq:
            break
        if e.kind is not EventKind.THREAD_START:
            continue
        j = joined.get(e.subject)
        if j is None:
            unjoined.append(e)
        elif j.seq > wait.seq:
            late.append((e, j))
    if unjoined:
        names = ", ".join(repr(e.subject) for e in unjoined)
        out.append(
            violation(
                PROPERTY,
                f"{len(unjoined)} thread(s) not joined when {wait.subject}() returned: {names}",
                [*unjoined[:3], wait],
            )
        )
    if late:
        names = ", ".join(repr(start.subject) for start, _ in late)
        out.append(
            violation(
                PROPERTY,
                f"{len(late)} thread(s) joined only after {wait.subject}() returned: {names}",
                [late[0][0], wait, late[0][1]],
            )
        )
    return out
