"""``no-early-return``: the wait returns only after every cleanup ended and every task stopped."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, completed_waits, violation

PROPERTY = "no-early-return"
# A task counts from its creation when the runtime announces it, else from its start.
_TASK_BEGINNINGS = frozenset({EventKind.TASK_CREATE, EventKind.TASK_START})
SUMMARY = (
    "the wait call (submit(autostop=True)) returns only after every service's cleanup "
    "ended and every task stopped"
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """Each completed wait must come after the end of everything started before it.

    A safety property: a wait that returned while a cleanup or task was unfinished is a
    violation at that moment, so it is checked on incomplete traces too. The witness is
    the wait-end and the end that came after it, or the start that never ended.
    """
    out: list[Violation] = []
    for wait in completed_waits(events):
        started: dict[tuple[str, str], Event] = {}
        for e in events:
            if e.seq > wait.seq:
                break
            if e.kind is EventKind.SERVICE_CONSTRUCT:
                started[("service", e.subject)] = e
            elif e.kind in _TASK_BEGINNINGS:
                started.setdefault(("task", e.subject), e)
        finished: dict[tuple[str, str], Event] = {}
        for e in events:
            if e.kind is EventKind.SERVICE_CLEANUP_END:
                finished.setdefault(("service", e.subject), e)
            elif e.kind is EventKind.TASK_STOP:
                finished.setdefault(("task", e.subject), e)
        for key, start in started.items():
            what, name = key
            end = finished.get(key)
            noun = "cleanup of service" if what == "service" else "task"
            verb = "ended" if what == "service" else "stopped"
            if end is None:
                out.append(
                    violation(
                        PROPERTY,
                        f"{wait.subject}() returned, but the {noun} {name!r} had not {verb}"
                        + (" and never did" if complete else " yet"),
                        [start, wait],
                    )
                )
            elif end.seq > wait.seq:
                out.append(
                    violation(
                        PROPERTY,
                        f"{wait.subject}() returned before the {noun} {name!r} {verb}",
                        [wait, end],
                    )
                )
    return out
