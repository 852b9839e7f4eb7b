"""Readable text for traces and violations: the timeline, the failure story, the assert."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from .contract import PROPERTIES, Violation, by_property, check
from .contract.explain import explain, witness_names
from .trace import Event, Trace

__all__ = ["LifecycleViolation", "assert_contract", "format_report", "format_timeline"]

_MARK = ">>"


def _describe(e: Event) -> str:
    bits = [e.subject]
    for key in ("method", "caller", "node", "item", "outcome", "reported"):
        value = e.get(key)
        if key == "node" and e.subject.startswith(f"{value}["):
            continue  # the task instance's name already says its node
        if value not in (None, (), ""):
            bits.append(f"{key}={value}")
    if e.error is not None:
        bits.append(f"error={e.error}")
    return " ".join(bits)


def format_timeline(
    events: Sequence[Event],
    *,
    highlight: Collection[int] = (),
    limit: int = 60,
) -> str:
    """Render events as a table, one line each, marking ``highlight`` sequence numbers.

    Long traces keep the highlighted events with two neighbours each, plus the head and
    the tail, and say how many lines they left out.
    """
    if not events:
        return "    (no events)"
    keep: set[int] = set()
    if len(events) <= limit:
        keep = set(range(len(events)))
    else:
        index = {e.seq: i for i, e in enumerate(events)}
        for s in highlight:
            i = index.get(s)
            if i is not None:
                keep.update(range(max(0, i - 2), min(len(events), i + 3)))
        budget = max(limit - len(keep), 6)
        keep.update(range(min(budget // 2, len(events))))
        keep.update(range(max(0, len(events) - budget // 2), len(events)))
    t0 = events[0].t_ns
    width = max(len(e.thread) for e in events)
    lines = [f"       {'seq':>5} {'t(ms)':>9}  {'thread':<{width}}  event"]
    skipped = 0
    for i, e in enumerate(events):
        if i not in keep:
            skipped += 1
            continue
        if skipped:
            lines.append(f"       {'...':>5} ({skipped} events left out)")
            skipped = 0
        mark = _MARK if e.seq in highlight else "  "
        ms = (e.t_ns - t0) / 1e6
        lines.append(
            f"    {mark} {e.seq:>5} {ms:>9.3f}  {e.thread:<{width}}  "
            f"{e.kind.value:<22} {_describe(e)}"
        )
    if skipped:
        lines.append(f"       {'...':>5} ({skipped} events left out)")
    return "\n".join(lines)


def format_report(violations: Sequence[Violation], events: Sequence[Event]) -> str:
    """The failure story: each violation with its witnesses, then the marked timeline."""
    if not violations:
        return "lifecycle contract holds"
    head = ", ".join(f"{p} ({n})" for p, n in by_property(violations).items())
    lines = [f"lifecycle contract violated: {head}", ""]
    names = witness_names(violations)
    for v in violations:
        where = f" [job {v.job}]" if v.job else ""
        lines.append(f"{v.property}{where}: {v.message}")
        summary = PROPERTIES[v.property].summary if v.property in PROPERTIES else ""
        if summary:
            lines.append(f"  property: {summary}")
        lines.append("  witnesses:")
        lines.extend(f"    {w!r}" for w in v.witnesses)
        lines.append("  why:")
        lines.extend(f"    {line}" for line in str(explain(v, events, names=names)).splitlines())
        if v.detail:
            lines.append("  detail:")
            lines.extend(f"    {line}" for line in v.detail.splitlines())
        lines.append("")
    highlight = {s for v in violations for s in v.seqs}
    lines.append(f"timeline ({len(events)} events, {_MARK} marks witnesses):")
    lines.append(format_timeline(events, highlight=highlight))
    return "\n".join(lines)


class LifecycleViolation(AssertionError):
    """Raised by :func:`assert_contract`; ``violations`` holds what was found."""

    def __init__(self, message: str, violations: Sequence[Violation]) -> None:
        super().__init__(message)
        self.violations = tuple(violations)


def assert_contract(
    trace: Trace | Sequence[Event],
    *,
    properties: Iterable[str] | None = None,
    complete: bool = True,
) -> None:
    """Fail with the story and the timeline if ``trace`` breaks the lifecycle contract.

    Example::

        env.submit(autostop=True)
        assert_contract(lifecycle_trace, properties=["no-early-return"])
    """
    __tracebackhide__ = True
    events = trace.events() if isinstance(trace, Trace) else tuple(trace)
    violations = check(events, properties=properties, complete=complete)
    if violations:
        raise LifecycleViolation(format_report(violations, events), violations)
