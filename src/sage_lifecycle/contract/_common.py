"""What every checker shares: the violation type and small trace queries."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..trace import Event, EventKind

__all__ = [
    "Violation",
    "completed_waits",
    "ending_calls",
    "first_completed_wait",
    "gate_stays",
    "overlap",
    "pending_while_parked",
]


@dataclass(frozen=True, eq=False)
class Violation:
    """A broken contract property and the few events that prove it.

    ``property`` is a stable id from the DESIGN table; ``message`` says what happened in
    one sentence; ``witnesses`` are the smallest set of events that shows it, in sequence
    order; ``detail`` carries long evidence such as thread stacks.
    """

    property: str
    message: str
    witnesses: tuple[Event, ...]
    job: str = ""
    detail: str = ""

    @builtins.property  # the field 'property' shadows the builtin in this class body
    def seqs(self) -> tuple[int, ...]:
        """Sequence numbers of the witness events."""
        return tuple(e.seq for e in self.witnesses)

    def __str__(self) -> str:
        where = f" [job {self.job}]" if self.job else ""
        lines = [f"{self.property}{where}: {self.message}"]
        lines.extend(f"    {w!r}" for w in self.witnesses)
        return "\n".join(lines)

    __repr__ = __str__


def violation(
    prop: str, message: str, witnesses: Iterable[Event], *, detail: str = ""
) -> Violation:
    """Build a violation with witnesses sorted by sequence number and the job they share."""
    ordered = tuple(sorted(witnesses, key=lambda e: e.seq))
    job = ordered[0].job if ordered else ""
    return Violation(prop, message, ordered, job=job, detail=detail)


def completed_waits(events: Sequence[Event]) -> list[Event]:
    """Wait-end events of waits that returned or raised (not those cut off by a deadline)."""
    return [e for e in events if e.kind is EventKind.WAIT_END and e.get("outcome") != "deadline"]


def first_completed_wait(events: Sequence[Event]) -> Event | None:
    """The first wait that returned or raised, or ``None``."""
    waits = completed_waits(events)
    return waits[0] if waits else None


def ending_calls(events: Sequence[Event]) -> list[tuple[Event, Event | None]]:
    """Each ending call's begin and its end (a ``wait.end`` or its ``wait.deadline``; ``None``
    while it has neither), in the order the calls began."""
    ends: dict[int, Event] = {}
    for e in events:
        if e.kind in (EventKind.WAIT_END, EventKind.WAIT_DEADLINE) and e.get("begin") is not None:
            ends.setdefault(int(e.get("begin")), e)
    return [(e, ends.get(e.seq)) for e in events if e.kind is EventKind.WAIT_BEGIN]


def gate_stays(events: Sequence[Event]) -> list[tuple[str, Event, Event | None]]:
    """Each stay of a thread at a gate: the gate, its ``gate.park`` and the ``gate.open`` or
    ``gate.fail`` that released it (``None``: still parked)."""
    parked: dict[str, list[Event]] = {}
    stays: list[tuple[str, Event, Event | None]] = []
    released: dict[int, Event] = {}
    for e in events:
        if e.kind is EventKind.GATE_PARK:
            parked.setdefault(e.subject, []).append(e)
        elif e.kind in (EventKind.GATE_OPEN, EventKind.GATE_FAIL):
            for park in parked.pop(e.subject, []):
                released[park.seq] = e
    for e in events:
        if e.kind is EventKind.GATE_PARK:
            stays.append((e.subject, e, released.get(e.seq)))
    return stays


def overlap(a: tuple[Event, Event | None], b: tuple[Event, Event | None]) -> bool:
    """Whether two spans of the trace (a begin and an end, ``None``: not ended) overlap."""
    a_end = a[1].seq if a[1] is not None else float("inf")
    b_end = b[1].seq if b[1] is not None else float("inf")
    return a[0].seq < b_end and b[0].seq < a_end


def pending_while_parked(events: Sequence[Event], prefix: str) -> bool:
    """Whether an ending call was pending while a thread was parked at a gate whose name
    starts with ``prefix`` (``cleanup:``, ``end:``, ``item:``)."""
    calls = ending_calls(events)
    return any(
        overlap(call, (park, release))
        for name, park, release in gate_stays(events)
        if name.startswith(prefix)
        for call in calls
    )
