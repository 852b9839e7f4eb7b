"""``cleanup-exactly-once``: every constructed service has one cleanup begin and one end."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, violation

PROPERTY = "cleanup-exactly-once"
SUMMARY = "every service that was constructed has exactly one cleanup begin and one cleanup end"


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """Find services cleaned twice (always) or never (only once the job is ``complete``)."""
    constructed: dict[str, Event] = {}
    begins: dict[str, list[Event]] = {}
    ends: dict[str, list[Event]] = {}
    for e in events:
        if e.kind is EventKind.SERVICE_CONSTRUCT:
            constructed.setdefault(e.subject, e)
        elif e.kind is EventKind.SERVICE_CLEANUP_BEGIN:
            begins.setdefault(e.subject, []).append(e)
        elif e.kind is EventKind.SERVICE_CLEANUP_END:
            ends.setdefault(e.subject, []).append(e)

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
            out.append(violation(PROPERTY, f"service {name!r} was never cleaned up", [construct]))
        elif complete and not n:
            out.append(
                violation(
                    PROPERTY,
                    f"service {name!r} cleanup began but never ended",
                    [construct, b[0]],
                )
            )
    return out
