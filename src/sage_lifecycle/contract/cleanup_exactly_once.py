"""``cleanup-exactly-once``: every constructed service has one cleanup begin and one end."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import ERROR_KINDS, Event, EventKind
from ._common import Violation, ending_calls, pending_while_parked, violation

__all__ = ["PROPERTY", "SITUATIONS", "SUMMARY", "check", "exercised", "situations"]

PROPERTY = "cleanup-exactly-once"
SUMMARY = "every service that was constructed has exactly one cleanup begin and one cleanup end"


#: Every situation :func:`situations` may name, in the order it names them.
SITUATIONS = (
    "a constructed service owed its cleanup when the job was ended",
    "the job was ended twice",
    "a cleanup was parked while the ending call was pending",
    "a service whose setup failed owed its cleanup",
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """Find services cleaned twice (always) or never (only once the job is ``complete``).

    A cleanup that began and never ended is reported here only when the job has no wait
    at all: otherwise it is the ending call's fault (``no-early-return``, it returned
    while the cleanup ran) or a hang (``no-hang``). A missing cleanup names the failure
    that came before it, if any (a failed setup, another service's failed cleanup):
    that is the story, the property is still this one.
    """
    constructed: dict[str, Event] = {}
    begins: dict[str, list[Event]] = {}
    ends: dict[str, list[Event]] = {}
    setup_failed: dict[str, Event] = {}
    first_failure: Event | None = None
    has_wait = False
    for e in events:
        if e.kind is EventKind.SERVICE_CONSTRUCT:
            constructed.setdefault(e.subject, e)
        elif e.kind is EventKind.SERVICE_CLEANUP_BEGIN:
            begins.setdefault(e.subject, []).append(e)
        elif e.kind is EventKind.SERVICE_CLEANUP_END:
            ends.setdefault(e.subject, []).append(e)
        elif e.kind is EventKind.WAIT_BEGIN:
            has_wait = True
        if e.kind in ERROR_KINDS and e.error is not None:
            if first_failure is None:
                first_failure = e
            if e.kind is EventKind.SERVICE_SETUP_END:
                setup_failed.setdefault(e.subject, e)

    out: list[Violation] = []
    for name in sorted(set(constructed) | set(begins) | set(ends)):
        b, n = begins.get(name, []), ends.get(name, [])
        if name not in constructed:
            out.append(
                violation(
                    PROPERTY,
                    f"service {name!r} was cleaned up but never constructed",
                    (b + n)[:2],
                )
            )
            continue
        construct = constructed[name]
        if len(b) > 1:
            out.append(
                violation(
                    PROPERTY,
                    f"service {name!r} cleanup began {len(b)} times",
                    [construct, *b[:2]],
                )
            )
        elif len(n) > 1:
            out.append(
                violation(
                    PROPERTY,
                    f"service {name!r} cleanup ended {len(n)} times",
                    [construct, *n[:2]],
                )
            )
        elif complete and not b:
            cause = setup_failed.get(name, first_failure)
            why = ""
            if cause is not None and cause.subject == name:
                why = f" (its setup failed with {cause.error})"
            elif cause is not None:
                why = f" (after {cause.kind.value} of {cause.subject!r} failed with {cause.error})"
            witnesses = [construct] if cause is None else [construct, cause]
            out.append(
                violation(PROPERTY, f"service {name!r} was never cleaned up{why}", witnesses)
            )
        elif complete and not n and not has_wait:
            out.append(
                violation(
                    PROPERTY,
                    f"service {name!r} cleanup began but never ended",
                    [construct, b[0]],
                )
            )
    return out


def situations(events: Sequence[Event]) -> list[str]:
    """The situations in this job that put the property to the test: a constructed
    service owed its cleanup when the job was ended, and the harder cases (ended twice, a
    cleanup parked while the ending call was pending, a setup that failed)."""
    if not any(e.kind is EventKind.SERVICE_CONSTRUCT for e in events) or not ending_calls(events):
        return []
    found = [SITUATIONS[0]]
    if len(ending_calls(events)) > 1:
        found.append(SITUATIONS[1])
    if pending_while_parked(events, "cleanup:"):
        found.append(SITUATIONS[2])
    if any(e.kind is EventKind.SERVICE_SETUP_END and e.error for e in events):
        found.append(SITUATIONS[3])
    return found


def exercised(events: Sequence[Event]) -> bool:
    """Whether the job put the property to the test: any of its :func:`situations`."""
    return bool(situations(events))
