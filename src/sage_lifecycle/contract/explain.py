"""Why a violation contradicts its property, in Elle's manner: "Let" the witness events
(each with its thread), "Then" the ordering facts that contradict the property, each
with its reason.

Example::

    for v in check(events):
        print(explain(v, events))

prints, for SAGE's pre-#878 bug (``python -m sage_lifecycle.demo``)::

    Let:
      A = #6 service.construct 'hello_service' (thread hello_service_world#2/service:...)
    Then:
      - no service.cleanup.begin of 'hello_service' follows A in the job's 38 events, and
        the trace is complete (the job ran to its end and was drained): its cleanup
        never ran
    so service 'hello_service' was never cleaned up, which contradicts
    cleanup-exactly-once: every service that was constructed has exactly one cleanup
    begin and one cleanup end
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..trace import Event, EventKind
from ._common import Violation

__all__ = ["Explanation", "explain", "witness_names"]


@dataclass(frozen=True)
class Explanation:
    """The witnesses named (``let``: ``"A = #8 service.construct 'db' (thread ...)"``),
    the facts that follow from the trace, each with its reason (``then``), and the
    contradiction they add up to (``so``)."""

    let: tuple[str, ...]
    then: tuple[str, ...]
    so: str

    def __str__(self) -> str:
        lines = ["Let:", *(f"  {x}" for x in self.let), "Then:"]
        lines += [f"  - {x}" for x in self.then]
        lines.append(self.so)
        return "\n".join(lines)


def _label(i: int) -> str:
    return string.ascii_uppercase[i] if i < 26 else f"W{i}"


def _event(e: Event) -> str:
    bits = [f"#{e.seq} {e.kind.value} {e.subject!r}"]
    for key in ("method", "caller", "item", "outcome"):
        value = e.get(key)
        if value not in (None, "", ()):
            bits.append(f"{key}={value}")
    if e.error:
        bits.append(f"error={e.error}")
    return " ".join(bits)


def witness_names(violations: Sequence[Violation]) -> dict[int, str]:
    """One letter per witness event of ``violations``, in sequence order: the names the
    explanations of one report share (a witness of two violations keeps its letter)."""
    seqs = sorted({w.seq for v in violations for w in v.witnesses})
    return {seq: _label(i) for i, seq in enumerate(seqs)}


def explain(
    v: Violation, events: Sequence[Event], *, names: Mapping[int, str] | None = None
) -> Explanation:
    """Explain ``v`` from the events of its job (``events`` may hold other jobs too).
    ``names`` gives the witnesses their letters (default: ``A``, ``B``, ... in order)."""
    from . import PROPERTIES

    job = [e for e in events if not v.job or e.job == v.job] or list(events)
    names = dict(names) if names is not None else witness_names([v])
    let = tuple(f"{names[w.seq]} = {_event(w)} (thread {w.thread or '?'})" for w in v.witnesses)
    then: list[str] = []
    for a, b in zip(v.witnesses, v.witnesses[1:], strict=False):
        then.append(
            f"{names[a.seq]} precedes {names[b.seq]} (#{a.seq} < #{b.seq}): the trace "
            "numbers events in the order they happened"
        )
    facts = _FACTS.get(v.property)
    if facts is not None:
        then += facts(v, job, names)
    prop = PROPERTIES.get(v.property)
    statement = f": {prop.summary}" if prop is not None else ""
    so = f"so {v.message}, which contradicts {v.property}{statement}"
    return Explanation(let, tuple(then), so)


def _of(v: Violation, *kinds: EventKind) -> list[Event]:
    return [w for w in v.witnesses if w.kind in kinds]


def _ending(w: Event, names: dict[int, str]) -> str:
    outcome = w.get("outcome", "returned")
    return f"{names[w.seq]} is the ending call's end: {w.subject}() {outcome}"


def _cleanup_exactly_once(v: Violation, job: list[Event], names: dict[int, str]) -> list[str]:
    out: list[str] = []
    construct = _of(v, EventKind.SERVICE_CONSTRUCT)
    service = construct[0].subject if construct else v.witnesses[0].subject
    begins = [w for w in _of(v, EventKind.SERVICE_CLEANUP_BEGIN) if w.subject == service]
    ends = [w for w in _of(v, EventKind.SERVICE_CLEANUP_END) if w.subject == service]
    out += [_ending(w, names) for w in _of(v, EventKind.WAIT_END)]
    for w in v.witnesses:
        if w.error and w not in ends:
            out.append(
                f"{names[w.seq]} is a failure ({w.kind.value} of {w.subject!r}: {w.error}); "
                "a failure never excuses a missing cleanup"
            )
    if len(begins) > 1 or len(ends) > 1:
        twice = begins if len(begins) > 1 else ends
        what = twice[0].kind.value
        out.append(
            f"{' and '.join(names[w.seq] for w in twice)} are both {what} of "
            f"{twice[0].subject!r}: its cleanup ran more than once, where once is owed"
        )
    elif construct and not begins and not ends:
        c = construct[0]
        out.append(
            f"no service.cleanup.begin of {c.subject!r} follows {names[c.seq]} in the job's "
            f"{len(job)} events, and the trace is complete (the job ran to its end and was "
            "drained): its cleanup never ran"
        )
    elif begins and not ends and construct:
        b = begins[0]
        out.append(
            f"no service.cleanup.end of {b.subject!r} follows {names[b.seq]} in the job's "
            f"{len(job)} events: its cleanup began and never ended"
        )
    elif not construct:
        w = v.witnesses[0]
        out.append(
            f"no service.construct of {w.subject!r} precedes {names[w.seq]}: a service was "
            "cleaned that the job never made"
        )
    return out


def _no_early_return(v: Violation, job: list[Event], names: dict[int, str]) -> list[str]:
    waits = _of(v, EventKind.WAIT_END)
    if not waits:
        return []
    wait = waits[0]
    out = [_ending(wait, names) + ", so the job was over for its caller"]
    for w in v.witnesses:
        if w is wait:
            continue
        if w.seq > wait.seq:
            out.append(
                f"{names[w.seq]} belongs to the job ({w.kind.value} of {w.subject!r}) and comes "
                f"after {names[wait.seq]}: the job still ran after the call returned"
            )
        else:
            closing = (
                "service.cleanup.end" if w.kind is EventKind.SERVICE_CLEANUP_BEGIN else "task.stop"
            )
            out.append(
                f"no {closing} of {w.subject!r} lies between {names[w.seq]} and "
                f"{names[wait.seq]}: what {names[w.seq]} began was unfinished when the call "
                "returned"
            )
    return out


def _no_use_after_cleanup(v: Violation, job: list[Event], names: dict[int, str]) -> list[str]:
    cleanups = _of(v, EventKind.SERVICE_CLEANUP_BEGIN)
    calls = _of(v, EventKind.SERVICE_CALL_BEGIN)
    if not cleanups or not calls:
        errors = _of(v, EventKind.TASK_ERROR)
        return [
            f"{names[e.seq]} is a failure nobody injected (injected=false), in a task that "
            "calls the service after its cleanup began: its call was refused"
            for e in errors
        ]
    cleanup, call = cleanups[0], calls[0]
    if call.seq > cleanup.seq:
        return [
            f"{names[call.seq]} is a call into {call.subject!r} that began after "
            f"{names[cleanup.seq]}, the beginning of that service's cleanup"
        ]
    end = next(
        (e for e in job if e.kind is EventKind.SERVICE_CALL_END and e.get("begin") == call.seq),
        None,
    )
    when = f"ends only at #{end.seq}, after it" if end is not None else "never ends"
    return [
        f"{names[call.seq]}, a call into {call.subject!r}, {when}; {names[cleanup.seq]} began "
        "that service's cleanup while the call was still running"
    ]


def _no_hang(v: Violation, job: list[Event], names: dict[int, str]) -> list[str]:
    deadlines = _of(v, EventKind.WAIT_DEADLINE)
    if not deadlines:
        begin = v.witnesses[0]
        return [
            f"no wait.end for {names[begin.seq]} follows it in the job's {len(job)} events, "
            "and the trace is complete: the call never returned"
        ]
    d = deadlines[0]
    out = [
        f"{names[d.seq]} records that {d.subject}() had not returned within its deadline "
        f"({d.get('deadline', '?')} s) once nothing of the harness held the job"
    ]
    stuck = d.get("stuck")
    if stuck == "deadlock":
        out.append(
            "the job's clock saw every thread of the job blocked in an untimed wait with no "
            "timer pending: no thread could ever make progress"
        )
    elif stuck == "timer":
        out.append(
            "the job's clock saw every thread of the job blocked, and its next timer due only "
            "after the deadline"
        )
    return out


def _failure_isolation(v: Violation, job: list[Event], names: dict[int, str]) -> list[str]:
    failure, *rest = v.witnesses
    out = [f"{names[failure.seq]} records a failure: {failure.error}"]
    for w in rest:
        reported = tuple(w.get("reported", ()) or ())
        out.append(
            f"{_ending(w, names)}, carrying the recorded failures {list(reported)}, and "
            f"#{failure.seq} is not among them: the caller never learned of it"
        )
    return out


def _no_data_loss(v: Violation, job: list[Event], names: dict[int, str]) -> list[str]:
    emit = v.witnesses[0]
    waits = _of(v, EventKind.WAIT_END)
    out: list[str] = []
    if waits:
        out.append(
            f"{names[emit.seq]} emitted item {emit.get('item')!r} before {names[waits[0].seq]}, "
            "so the item was owed to every sink downstream"
        )
    item = emit.get("item")
    reached = sorted(
        {str(e.subject) for e in job if e.kind is EventKind.ITEM_SINK and e.get("item") == item}
    )
    where = f"only at {', '.join(reached)}" if reached else "at no sink"
    out.append(
        f"item {item!r} arrived {where} in the job's {len(job)} events, and the trace is "
        "complete (the job ran to its end): it never arrived where the violation says"
    )
    for e in _of(v, EventKind.TASK_ERROR):
        out.append(f"{names[e.seq]} is a failure nobody injected, on the item's way")
    return out


def _no_thread_leak(v: Violation, job: list[Event], names: dict[int, str]) -> list[str]:
    alive = _of(v, EventKind.THREAD_ALIVE)
    out = [
        f"{names[a.seq]} records that thread {a.subject!r} was still alive after the ending call "
        "returned and the target's grace ran out, and it is none of the pools the target "
        "keeps on purpose"
        for a in alive
    ]
    started = _of(v, EventKind.THREAD_START)
    if started:
        out.append(
            f"{', '.join(names[s.seq] for s in started)} started before the ending call "
            "returned, and no thread.joined of them follows"
        )
    return out


_FACTS: dict[str, Callable[[Violation, list[Event], dict[int, str]], list[str]]] = {
    "cleanup-exactly-once": _cleanup_exactly_once,
    "no-early-return": _no_early_return,
    "no-use-after-cleanup": _no_use_after_cleanup,
    "no-hang": _no_hang,
    "failure-isolation": _failure_isolation,
    "no-data-loss": _no_data_loss,
    "no-thread-leak": _no_thread_leak,
}
