"""The lifecycle contract: one pure checker per property of the DESIGN table.

Each checker is a function ``check(events, *, complete=True) -> list[Violation]`` over one
job's events. :func:`check` splits a trace by job and runs the selected checkers.

Example::

    from sage_lifecycle.contract import check
    violations = check(trace.events())
    assert not violations, format_report(violations, trace.events())
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..trace import Event, jobs_of
from . import (
    cleanup_exactly_once,
    failure_isolation,
    no_data_loss,
    no_early_return,
    no_hang,
    no_thread_leak,
    no_use_after_cleanup,
)
from ._common import Violation

__all__ = [
    "PROPERTIES",
    "Checker",
    "Property",
    "Violation",
    "by_property",
    "check",
    "parse_properties",
]

#: A property's checker: ``checker(events, *, complete=True) -> list[Violation]``.
Checker = Callable[..., list[Violation]]


@dataclass(frozen=True)
class Property:
    """A contract property: its stable id, one-line statement, checker, and the
    situations in a job's trace that put it to the test (a PASS needs at least one job
    with one: ``exercised``)."""

    id: str
    summary: str
    checker: Checker
    #: The situations of one job's trace that put the property to the test, each a
    #: phrase (``"the ending call was pending while a cleanup was parked"``).
    situations: Callable[[Sequence[Event]], list[str]]
    #: Every situation ``situations`` may name, in order.
    known_situations: tuple[str, ...] = ()

    def exercised(self, events: Sequence[Event]) -> bool:
        """Whether a job's trace put the property to the test: any of its situations."""
        return bool(self.situations(events))


#: Every property, in the order of the DESIGN table.
PROPERTIES: dict[str, Property] = {
    m.PROPERTY: Property(m.PROPERTY, m.SUMMARY, m.check, m.situations, m.SITUATIONS)
    for m in (
        cleanup_exactly_once,
        no_early_return,
        no_use_after_cleanup,
        no_hang,
        failure_isolation,
        no_data_loss,
        no_thread_leak,
    )
}


def parse_properties(value: object, *, where: str) -> tuple[str, ...]:
    """Turn ``"all"``, ``None`` or a comma-separated list into known property ids.

    Raises ``ValueError`` naming the bad id, ``where`` it came from, and the valid ids.
    """
    if value is None:
        return tuple(PROPERTIES)
    given: list[object]
    if isinstance(value, str):
        given = [p.strip() for p in value.split(",")]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        given = list(value)
    else:
        given = [value]
    if not all(isinstance(p, str) for p in given):
        raise ValueError(
            f"lifecycle properties {value!r} from {where}: expected 'all', a comma-separated "
            "string or a list of property ids, for example properties=['no-hang']"
        )
    items = [p.strip() for p in given if isinstance(p, str) and p.strip()]
    if items == ["all"] or not items:
        return tuple(PROPERTIES)
    unknown = [p for p in items if p not in PROPERTIES]
    if unknown:
        raise ValueError(
            f"unknown lifecycle propert{'ies' if len(unknown) > 1 else 'y'} "
            f"{', '.join(map(repr, unknown))} from {where}; "
            f"expected 'all' or a comma-separated list of: {', '.join(PROPERTIES)}"
        )
    return tuple(dict.fromkeys(items))


def by_property(violations: Iterable[Violation]) -> dict[str, int]:
    """How many violations each property has, in the order the properties first appear."""
    counts: dict[str, int] = {}
    for v in violations:
        counts[v.property] = counts.get(v.property, 0) + 1
    return counts


def check(
    events: Sequence[Event],
    *,
    properties: Iterable[str] | None = None,
    complete: bool = True,
) -> list[Violation]:
    """Check ``events`` against the selected properties (all by default), job by job.

    ``complete=False`` checks only what can already be wrong mid-run (safety): a second
    cleanup, a call after cleanup, a wait that returned early, a deadline that expired.
    """
    selected = parse_properties(properties, where="check(properties=...)")
    out: list[Violation] = []
    for job_events in jobs_of(events).values():
        for pid in selected:
            out.extend(PROPERTIES[pid].checker(job_events, complete=complete))
    return out
