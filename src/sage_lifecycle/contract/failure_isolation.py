"""``failure-isolation``: a failure reaches the caller, never silently lost."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import ERROR_KINDS, Event
from ._common import Violation, completed_waits, violation

__all__ = ["PROPERTY", "SITUATIONS", "SUMMARY", "check", "exercised", "situations"]

PROPERTY = "failure-isolation"
SUMMARY = (
    "a service whose setup or cleanup raises, or a task that raises, does not stop any "
    "other service's cleanup, nor the wait from returning; the error reaches the caller "
    "or the report, never silently lost"
)


#: Every situation :func:`situations` may name, in the order it names them.
SITUATIONS = (
    "a service's setup failed before the ending call completed",
    "a service's cleanup failed before the ending call completed",
    "a task failed before the ending call completed",
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """Each failure that happened before a wait completed must be reported by a wait.

    A completed wait lists the failures it raised in ``data['reported']`` (sequence
    numbers of the failing events); a failure no wait reported was lost. What a failure
    may also cause is another property's evidence, so each fact has one verdict: a
    service left uncleaned is ``cleanup-exactly-once``, a wait that never returned is
    ``no-hang``, a failure recorded after the ending call returned is ``no-early-return``.
    """
    waits = completed_waits(events)
    reported: set[int] = set()
    for w in waits:
        reported.update(int(s) for s in w.get("reported", ()))
    ending = {w.seq for w in waits}
    pending: list[Event] = []
    out: list[Violation] = []
    for e in events:  # one pass: each failure meets the first wait that completed after it
        if e.kind in ERROR_KINDS and e.error is not None:
            pending.append(e)
        elif e.seq in ending:
            for f in pending:
                if f.seq not in reported:
                    out.append(
                        violation(
                            PROPERTY,
                            f"{f.kind.value} of {f.subject!r} failed with {f.error}, but "
                            f"{e.subject}() did not report it",
                            [f, e],
                        )
                    )
            pending.clear()
    return out


_KINDS = {
    "service.setup.end": SITUATIONS[0],
    "service.cleanup.end": SITUATIONS[1],
    "task.error": SITUATIONS[2],
}


def situations(events: Sequence[Event]) -> list[str]:
    """The situations in this job that put the property to the test: a setup, a cleanup
    or a task failed before an ending call completed (the call must then report it)."""
    waits = completed_waits(events)
    if not waits:
        return []
    kinds = {
        e.kind.value for e in events if e.kind in ERROR_KINDS and e.error and e.seq < waits[-1].seq
    }
    return [text for kind, text in _KINDS.items() if kind in kinds]


def exercised(events: Sequence[Event]) -> bool:
    """Whether the job put the property to the test: any of its :func:`situations`."""
    return bool(situations(events))
