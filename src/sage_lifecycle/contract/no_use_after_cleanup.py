"""``no-use-after-cleanup``: no call into a service overlaps or follows its cleanup."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, overlap, violation

__all__ = ["PROPERTY", "SITUATIONS", "SUMMARY", "check", "exercised", "situations"]

PROPERTY = "no-use-after-cleanup"
SUMMARY = (
    "no call into a service begins after that service's cleanup began, and none is "
    "still running when it begins"
)


#: Every situation :func:`situations` may name, in the order it names them.
SITUATIONS = (
    "a call was in flight when its service's cleanup was released",
    "a service that the job called had its cleanup begin",
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """Pair call begins and ends by ``data['begin']`` and compare them with cleanup begin."""
    cleanup_begin: dict[str, Event] = {}
    call_end: dict[int, Event] = {}
    for e in events:
        if e.kind is EventKind.SERVICE_CLEANUP_BEGIN:
            cleanup_begin.setdefault(e.subject, e)
        elif e.kind is EventKind.SERVICE_CALL_END and e.get("begin") is not None:
            call_end[int(e.get("begin"))] = e

    out: list[Violation] = []
    for e in events:
        if e.kind is not EventKind.SERVICE_CALL_BEGIN:
            continue
        cleanup = cleanup_begin.get(e.subject)
        if cleanup is None:
            continue
        method = e.get("method", "?")
        caller = e.get("caller", "?")
        if e.seq > cleanup.seq:
            out.append(
                violation(
                    PROPERTY,
                    f"{caller} called {e.subject}.{method}() after its cleanup began",
                    [cleanup, e],
                )
            )
            continue
        end = call_end.get(e.seq)
        if end is None:
            out.append(
                violation(
                    PROPERTY,
                    f"cleanup of {e.subject!r} began while {caller}'s call to "
                    f"{method}() was still running (it never ended)",
                    [e, cleanup],
                )
            )
        elif end is not None and end.seq > cleanup.seq:
            out.append(
                violation(
                    PROPERTY,
                    f"cleanup of {e.subject!r} began while {caller}'s call to "
                    f"{method}() was still running",
                    [e, cleanup, end],
                )
            )
    out += _refused_calls(events, cleanup_begin)
    return out


def _refused_calls(events: Sequence[Event], cleanup_begin: dict[str, Event]) -> list[Violation]:
    """A task that calls a service failing, with an error nobody injected, after that
    service's cleanup began: the task was still running when the cleanup began, and its
    call was refused (or failed) because of it. The harness's probes say which failures
    they injected (``injected``); a trace without that mark is not judged here."""
    calls: dict[str, tuple[str, ...]] = {}
    out: list[Violation] = []
    for e in events:
        if e.kind is EventKind.NODE_DECLARE:
            calls[e.subject] = tuple(e.get("calls", ()) or ())
        elif e.kind is EventKind.TASK_ERROR and e.get("injected") is False:
            node = str(e.get("node", e.subject))
            for service in calls.get(node, ()):
                cleanup = cleanup_begin.get(service)
                if cleanup is not None and cleanup.seq < e.seq:
                    out.append(
                        violation(
                            PROPERTY,
                            f"{node}, which calls {service}, failed after the cleanup of "
                            f"{service!r} began ({e.error}): it was still running when the "
                            "cleanup began",
                            [cleanup, e],
                        )
                    )
                    break
    return out


def situations(events: Sequence[Event]) -> list[str]:
    """The situations in this job that put the property to the test: a call into a
    service was in flight when the driver released its cleanup, or a service that the
    job called had its cleanup begin (a later call would then be a use after cleanup)."""
    found = []
    calls = [
        (
            e,
            next(
                (
                    x
                    for x in events
                    if x.kind is EventKind.SERVICE_CALL_END and x.get("begin") == e.seq
                ),
                None,
            ),
        )
        for e in events
        if e.kind is EventKind.SERVICE_CALL_BEGIN
    ]
    releases = [
        e
        for e in events
        if e.kind in (EventKind.GATE_OPEN, EventKind.GATE_FAIL) and e.subject.startswith("cleanup:")
    ]
    if any(
        r.subject == f"cleanup:{begin.subject}" and overlap((begin, end), (r, r))
        for begin, end in calls
        for r in releases
    ):
        found.append(SITUATIONS[0])
    called = {begin.subject for begin, _ in calls}
    if any(e.kind is EventKind.SERVICE_CLEANUP_BEGIN and e.subject in called for e in events):
        found.append(SITUATIONS[1])
    return found


def exercised(events: Sequence[Event]) -> bool:
    """Whether the job put the property to the test: any of its :func:`situations`."""
    return bool(situations(events))
