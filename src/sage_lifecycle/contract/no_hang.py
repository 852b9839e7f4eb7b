"""``no-hang``: every wait returns within its deadline; a hang shows the job's thread stacks."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import ERROR_KINDS, Event, EventKind
from ._common import Violation, ending_calls, violation

__all__ = ["PROPERTY", "SITUATIONS", "SUMMARY", "check", "exercised", "situations"]

PROPERTY = "no-hang"
SUMMARY = (
    "the wait returns within the deadline once nothing of the harness holds it; if not, "
    "the failure shows the stacks of the job's threads"
)


#: Every situation :func:`situations` may name, in the order it names them.
SITUATIONS = (
    "the ending call ran to its end or its deadline",
    "the ending call was awaited on a job with a failure in it",
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """A deadline event is a hang; on a complete trace so is a wait that never ended."""
    begins = {e.seq: e for e in events if e.kind is EventKind.WAIT_BEGIN}
    ended: set[int] = set()
    out: list[Violation] = []
    for e in events:
        if e.kind is EventKind.WAIT_DEADLINE:
            begin = begins.get(int(e.get("begin", -1)))
            if e.get("stuck") == "deadlock":
                # Owned time saw it: every thread of the job blocked with nothing due.
                what = (
                    f"{e.subject}() can never return: deadlock (every thread of the job "
                    "was blocked in an untimed wait, no gate held it and no timer was due)"
                )
            elif e.get("stuck") == "timer":
                what = (
                    f"{e.subject}() did not return within its deadline of "
                    f"{_seconds(e.get('deadline'))} s (every thread of the job was blocked, "
                    "no gate held it, and its next timer was due only after the deadline)"
                )
            else:
                what = (
                    f"{e.subject}() did not return within its deadline of "
                    f"{_seconds(e.get('deadline'))} s"
                )
            out.append(
                violation(
                    PROPERTY,
                    what,
                    [begin, e] if begin is not None else [e],
                    detail=str(e.get("stacks", "")),
                )
            )
        elif e.kind is EventKind.WAIT_END:
            ended.add(int(e.get("begin", -1)))
    if complete:
        deadlined = {int(e.get("begin", -1)) for e in events if e.kind is EventKind.WAIT_DEADLINE}
        for seq, begin in begins.items():
            if seq not in ended and seq not in deadlined:
                out.append(violation(PROPERTY, f"{begin.subject}() never returned", [begin]))
    return out


def situations(events: Sequence[Event]) -> list[str]:
    """The situations in this job that put the property to the test: an ending call ran
    to its end or to its deadline, and the harder case, a job with a failure in it."""
    calls = ending_calls(events)
    if not any(end is not None for _, end in calls):
        return []
    found = [SITUATIONS[0]]
    if any(e.kind in ERROR_KINDS and e.error for e in events) or any(
        e.kind is EventKind.GATE_FAIL for e in events
    ):
        found.append(SITUATIONS[1])
    return found


def exercised(events: Sequence[Event]) -> bool:
    """Whether the job put the property to the test: any of its :func:`situations`."""
    return bool(situations(events))


def _seconds(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "?"
