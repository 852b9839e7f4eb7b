"""What every checker shares: the violation type and small trace queries."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..trace import Event, EventKind

__all__ = ["Violation", "completed_waits", "first_completed_wait"]


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
