"""``no-use-after-cleanup``: no call into a service overlaps or follows its cleanup."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, violation

__all__ = ["PROPERTY", "SUMMARY", "check", "exercised"]

PROPERTY = "no-use-after-cleanup"
SUMMARY = (
    "no call into a service begins after that service's cleanup began, and none is "
    "still running when it begins"
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


def exercised(events: Sequence[Event]) -> bool:
    """Put to the test when a service that was called had its cleanup begin."""
    called = {e.subject for e in events if e.kind is EventKind.SERVICE_CALL_BEGIN}
    return any(e.kind is EventKind.SERVICE_CLEANUP_BEGIN and e.subject in called for e in events)
