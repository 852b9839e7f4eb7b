"""``failure-isolation``: a failure stops neither other cleanups nor the wait, and is reported."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import ERROR_KINDS, Event, EventKind
from ._common import Violation, completed_waits, violation

PROPERTY = "failure-isolation"
SUMMARY = (
    "a service whose setup or cleanup raises, or a task that raises, does not stop any "
    "other service's cleanup, nor the wait from returning; the error reaches the caller "
    "or the report, never silently lost"
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """For each failure: was it reported by a later wait, and did everything else finish?

    A completed wait lists the failures it raised in ``data['reported']`` (sequence
    numbers of the failing events). A failure that happened before a wait returned and
    that no wait reported was lost. On a complete trace, a failure must also be followed
    by every other service's cleanup end and by the end of every wait.
    """
    failures = [e for e in events if e.kind in ERROR_KINDS and e.error is not None]
    if not failures:
        return []
    waits = completed_waits(events)
    reported: set[int] = set()
    for w in waits:
        reported.update(int(s) for s in w.get("reported", ()))
    constructed = {e.subject: e for e in events if e.kind is EventKind.SERVICE_CONSTRUCT}
    cleaned = {e.subject for e in events if e.kind is EventKind.SERVICE_CLEANUP_END}
    begins = [e for e in events if e.kind is EventKind.WAIT_BEGIN]
    ended = {int(e.get("begin", -1)) for e in events if e.kind is EventKind.WAIT_END}

    out: list[Violation] = []
    for f in failures:
        later_waits = [w for w in waits if w.seq > f.seq]
        if later_waits and f.seq not in reported:
            out.append(
                violation(
                    PROPERTY,
                    f"{f.kind.value} of {f.subject!r} failed with {f.error}, but "
                    f"{later_waits[0].subject}() did not report it",
                    [f, later_waits[0]],
                )
            )
    if complete:
        first = failures[0]
        for name, construct in constructed.items():
            if name not in cleaned and name != first.subject:
                out.append(
                    violation(
                        PROPERTY,
                        f"after {first.subject!r} failed with {first.error}, service "
                        f"{name!r} was never cleaned up",
                        [first, construct],
                    )
                )
        for begin in begins:
            if begin.seq not in ended and begin.seq < first.seq:
                out.append(
                    violation(
                        PROPERTY,
                        f"after {first.subject!r} failed with {first.error}, "
                        f"{begin.subject}() never returned",
                        [begin, first],
                    )
                )
    return out
