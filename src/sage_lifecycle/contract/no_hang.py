"""``no-hang``: every wait returns within its deadline; a hang shows the job's thread stacks."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, violation

__all__ = ["PROPERTY", "SUMMARY", "check", "exercised"]

PROPERTY = "no-hang"
SUMMARY = (
    "the wait returns within the deadline once nothing of the harness holds it; if not, "
    "the failure shows the stacks of the job's threads"
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


def exercised(events: Sequence[Event]) -> bool:
    """Put to the test when a wait began (it then returns, or its deadline is recorded)."""
    return any(e.kind is EventKind.WAIT_BEGIN for e in events)


def _seconds(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "?"
