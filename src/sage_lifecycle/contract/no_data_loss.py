"""``no-data-loss``: every emitted item reached every sink downstream of it before the wait."""

from __future__ import annotations

from collections.abc import Sequence

from ..trace import Event, EventKind
from ._common import Violation, first_completed_wait, pending_while_parked, violation

__all__ = ["PROPERTY", "SITUATIONS", "SUMMARY", "check", "exercised", "situations"]

PROPERTY = "no-data-loss"
SUMMARY = (
    "in a pipeline without injected faults, every item a source emitted reached every "
    "sink downstream of it before the wait returned (streaming: every item emitted "
    "before the stop was requested)"
)


#: Every situation :func:`situations` may name, in the order it names them.
SITUATIONS = (
    "items reached a sink before the ending call returned",
    "an item was held in flight while the ending call was pending",
    "items passed a parallel stage",
)


def check(events: Sequence[Event], *, complete: bool = True) -> list[Violation]:
    """Match ``item.emit`` against ``item.sink`` per sink node: items that never arrived.

    An item emitted before the ending call returned that reaches its sink only after it
    is ``no-early-return``'s evidence (the call returned while the job still worked);
    this property owns the items that never arrive, so it needs a complete trace.

    Task-create (or task-start) events name each instance's logical ``node``, its
    ``role`` and its ``ancestors``; an item dropped by a filter upstream of a sink
    (``item.drop``) is not owed to it. A pipeline in which a task failed with an
    injected fault owes nothing (the contract's "pipeline without injected faults"):
    its loss was injected; so does one with a node declared to call a service whose
    setup was made to fail (the call cannot succeed). A task error marked
    ``injected=False`` (the harness's probes mark each one) is the runtime's own
    failure, and what it did not deliver is lost; errors without the mark (a user's own
    functions under the fixtures) count as intended.
    """
    wait = first_completed_wait(events)
    if wait is None or not complete:
        return []
    # A batch owes every item emitted before its wait returned; a streaming job ended by
    # stop() or close() owes the items emitted before the stop was requested.
    owed_before = wait.seq
    if wait.subject in ("stop", "close"):
        owed_before = int(wait.get("begin", wait.seq))
    ancestors: dict[str, frozenset[str]] = {}
    ordered: dict[str, tuple[str, ...]] = {}
    sinks: set[str] = set()
    failed: set[str] = set()
    node_of: dict[str, str] = {}
    for e in events:
        if e.kind in (EventKind.NODE_DECLARE, EventKind.TASK_CREATE, EventKind.TASK_START):
            node = str(e.get("node", e.subject))
            node_of[e.subject] = node
            ordered[node] = tuple(e.get("ancestors", ()))
            ancestors[node] = frozenset(ordered[node])
            if e.get("role") == "sink":
                sinks.add(node)
    # A node that calls a service whose setup was made to fail depends on an injected
    # fault: the runtime cannot deliver through it (the call fails, or times out).
    broken = {
        e.subject
        for e in events
        if e.kind is EventKind.SERVICE_SETUP_END and e.error and e.get("injected", True)
    }
    for e in events:
        if e.kind is EventKind.NODE_DECLARE and broken & set(e.get("calls", ())):
            failed.add(str(e.subject))
    uninjected: dict[str, Event] = {}
    for e in events:
        if e.kind is EventKind.TASK_ERROR:
            node = str(e.get("node", node_of.get(e.subject, e.subject)))
            if e.get("injected", True):
                failed.add(node)
            else:
                uninjected.setdefault(node, e)

    emitted: list[Event] = []
    reached: dict[tuple[str, str], Event] = {}
    dropped: dict[str, set[str]] = {}
    for e in events:
        item = e.get("item")
        if item is None:
            continue
        node = str(e.get("node", node_of.get(e.subject, e.subject)))
        if e.kind is EventKind.ITEM_EMIT and e.seq < owed_before:
            emitted.append(e)
        elif e.kind is EventKind.ITEM_SINK:
            reached.setdefault((node, str(item)), e)
        elif e.kind is EventKind.ITEM_DROP:  # when it was dropped is no-early-return's business
            dropped.setdefault(str(item), set()).add(node)

    def root(node: str) -> str:
        """The source a node's items come from (the farthest ancestor), or itself."""
        chain = ordered.get(node, ())
        return chain[-1] if chain else node

    # A pipeline with an injected fault owes nothing, as the contract says: a runtime may
    # react to a failed task by ending its whole pipeline (SAGE 0.3 aborts the item's
    # dispatch, so a sibling sink misses it too).
    faulty = {root(n) for n in failed}
    out: list[Violation] = []
    for sink in sorted(sinks):
        upstream = ancestors.get(sink, frozenset())
        if sink in failed or upstream & failed or root(sink) in faulty:
            continue
        lost: list[Event] = []
        for emit in emitted:
            source = str(emit.get("node", node_of.get(emit.subject, emit.subject)))
            item = str(emit.get("item"))
            if source not in upstream or dropped.get(item, set()) & upstream:
                continue
            if (sink, item) not in reached:
                lost.append(emit)
        if not lost:
            continue
        emit = lost[0]
        more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
        msg = f"item {emit.get('item')!r} from {emit.subject!r} never reached sink {sink!r}{more}"
        cause = next((uninjected[n] for n in (sink, *sorted(upstream)) if n in uninjected), None)
        witnesses = [emit, wait]
        if cause is not None:
            msg += f", after {cause.subject!r} failed with {cause.error}, which nobody injected"
            witnesses.insert(1, cause)
        out.append(violation(PROPERTY, msg, witnesses))
    return out


def situations(events: Sequence[Event]) -> list[str]:
    """The situations in this job that put the property to the test: items reached a
    sink before the ending call returned, and the harder cases, an item held in flight at
    a gate while the ending call was pending, and items through a parallel stage."""
    wait = first_completed_wait(events)
    found = []
    if wait is not None and any(e.kind is EventKind.ITEM_SINK and e.seq < wait.seq for e in events):
        found.append(SITUATIONS[0])
    if pending_while_parked(events, "item:"):
        found.append(SITUATIONS[1])
    parallel = {
        e.subject
        for e in events
        if e.kind is EventKind.NODE_DECLARE and e.get("parallelism", 1) > 1
    }
    if parallel and any(e.kind is EventKind.ITEM_SINK for e in events):
        found.append(SITUATIONS[2])
    return found


def exercised(events: Sequence[Event]) -> bool:
    """Whether the job put the property to the test: any of its :func:`situations`."""
    return bool(situations(events))
