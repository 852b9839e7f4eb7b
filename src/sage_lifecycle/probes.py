"""Probes: the harness's own services, sources, stages and sinks.

A target adapter wraps these behaviours in its runtime's base classes (SAGE's
``BaseService``, ``BatchFunction``, ...). The probes record every lifecycle event into the
trace themselves, so the harness observes any runtime as a user's code would, and they
park at gates the driver opens or fails: the end of each source, each service's cleanup,
and chosen stage and sink items.

Example (inside an adapter)::

    class Service(BaseService):
        def __init__(self, probe): self.probe = probe; probe.constructed()
        def setup(self): self.probe.setup()
        def call(self, caller, item): return self.probe.call(caller, item)
        def cleanup(self): self.probe.cleanup()
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .clock import VirtualClock
from .gates import Gate
from .schedule import Scheduler
from .topology import PipelineSpec, ServiceSpec, SinkSpec, StageSpec, Topology
from .trace import Event, EventKind, Trace, describe_error

__all__ = [
    "ROUNDS",
    "FailureLog",
    "InjectedFault",
    "Probes",
    "ServiceProbe",
    "SinkProbe",
    "SourceProbe",
    "StageProbe",
]

_CallService = Callable[[str, str], Any]
"""How a probe calls a service through its runtime: ``call(service_name, item)``."""


class InjectedFault(RuntimeError):
    """The failure a probe raises on purpose."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it carries (exception groups, causes, contexts), once."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend(getattr(e, "exceptions", ()))
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def _injected(exc: BaseException) -> bool:
    """Whether ``exc`` is, or carries, a failure the harness injected (an
    :class:`InjectedFault`), through exception groups, causes and contexts, or names one
    in its message (runtimes re-wrap errors by text: "the service's setup failed:
    InjectedFault: ...")."""
    return any(
        isinstance(e, InjectedFault) or InjectedFault.__name__ in str(e) for e in _chain(exc)
    )


class FailureLog:
    """Every failure recorded, by the exception object's identity, to match what a wait
    raised against them.

    The same object can surface at several places (a setup error raised again in the
    task that called the service): each place's event is kept, and each is matched.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._errors: dict[int, tuple[BaseException, list[int]]] = {}

    def add(self, exc: BaseException, event: Event | None = None) -> None:
        """Remember ``exc``, and that ``event`` recorded it (if given)."""
        seqs = [] if event is None else [event.seq]
        with self._lock:
            known = self._errors.get(id(exc))
            if known is not None and known[0] is exc:
                known[1].extend(seqs)
            else:
                self._errors[id(exc)] = (exc, seqs)

    def has(self, exc: BaseException) -> bool:
        """Whether this very exception object was recorded (its _chain not searched)."""
        with self._lock:
            known = self._errors.get(id(exc))
            return known is not None and known[0] is exc

    def knows(self, raised: BaseException) -> bool:
        """Whether ``raised`` is, or carries, a failure recorded here (by identity)."""
        with self._lock:
            return any(
                id(e) in self._errors and self._errors[id(e)][0] is e for e in _chain(raised)
            )

    def reported(self, raised: BaseException | None) -> tuple[int, ...]:
        """Sequence numbers of the recorded failures that ``raised`` carries.

        Matches by identity through exception groups, causes and contexts, and, for
        runtimes that re-wrap errors, by the failure's text appearing in the message.
        """
        if raised is None:
            return ()
        found: set[int] = set()
        texts: list[str] = []
        with self._lock:
            errors = dict(self._errors)
        for exc in _chain(raised):
            texts.append(str(exc))
            if id(exc) in errors and errors[id(exc)][0] is exc:
                found.update(errors[id(exc)][1])
        blob = "\n".join(texts)
        for exc, seqs in errors.values():
            if str(exc) and str(exc) in blob:
                found.update(seqs)
        return tuple(sorted(found))


#: How many rounds of its items an unbounded source emits, each ended at a gate, before
#: it only waits for the stop.
ROUNDS = 3


def _item_index(item: str) -> int:
    """The index of an item key ``"p0#3"``."""
    return int(item.rsplit("#", 1)[1])


class Probes:
    """Everything the harness hands to a target for one topology: behaviours and gates."""

    def __init__(self, topology: Topology, trace: Trace, *, job: str, gate_timeout: float) -> None:
        self.topology = topology
        self.trace = trace
        self.job = job
        self.gates: dict[str, Gate] = {}
        self.gate_timeout = gate_timeout
        #: Set by the driver just before it calls a streaming job's ending call: an
        #: unbounded source waits for it after its items (it never ends by itself).
        self.stop_requested = threading.Event()
        #: The harness's scheduler, when the job runs on a schedule (virtual time only):
        #: :meth:`point` parks there until it lets the thread go.
        self.scheduler: Scheduler | None = None
        self.failures = FailureLog()
        #: Each gate's rank: its owner's (see :class:`~sage_lifecycle.topology.Topology`).
        self.ranks: dict[str, int] = {}
        position = itertools.count()

        def rank(part: Any) -> int:
            here = next(position)
            return here if part.rank is None else int(part.rank)

        service_ranks = [rank(s) for s in topology.services]
        self.services = {s.name: ServiceProbe(self, s) for s in topology.services}
        self.sources: list[SourceProbe] = []
        self.stages: list[list[StageProbe]] = []
        self.sinks: list[list[SinkProbe]] = []
        for i, p in enumerate(topology.pipelines):
            source = SourceProbe(self, i, p, rank(p))
            self.sources.append(source)
            upstream: tuple[str, ...] = (source.node,)
            stages = []
            for j, st in enumerate(p.stages):
                stage = StageProbe(self, i, j, st, upstream, rank(st))
                stages.append(stage)
                upstream = (stage.node, *upstream)
            self.stages.append(stages)
            self.sinks.append(
                [SinkProbe(self, i, j, sk, upstream, rank(sk)) for j, sk in enumerate(p.sinks)]
            )
        for s, r in zip(self.topology.services, service_ranks, strict=True):
            self._gate(f"cleanup:{s.name}", r)

    def declare(self) -> None:
        """Record the job's nodes (roles and ancestors) before the runtime starts."""
        for source in self.sources:
            self.record(EventKind.NODE_DECLARE, source.node, role="source", ancestors=())
        for stages, sinks in zip(self.stages, self.sinks, strict=True):
            for stage in stages:
                self.record(
                    EventKind.NODE_DECLARE,
                    stage.node,
                    role=stage.spec.kind,
                    ancestors=stage.ancestors,
                    calls=stage.spec.calls,
                    parallelism=stage.spec.parallelism,
                )
            for sink in sinks:
                self.record(
                    EventKind.NODE_DECLARE,
                    sink.node,
                    role="sink",
                    ancestors=sink.ancestors,
                    calls=sink.spec.calls,
                )

    # -- recording -----------------------------------------------------------------
    def record(
        self, kind: EventKind, subject: str, *, error: str | None = None, **data: Any
    ) -> Event:
        return self.trace.record(kind, subject, job=self.job, error=error, **data)

    def failure(
        self, kind: EventKind, subject: str, exc: BaseException, **data: Any
    ) -> BaseException:
        """Record a failure event for ``exc`` and remember it, to match what the wait raises."""
        event = self.record(kind, subject, error=describe_error(exc), **data)
        self.failures.add(exc, event)
        return exc

    def reported(self, raised: BaseException | None) -> tuple[int, ...]:
        """Sequence numbers of the recorded failures that ``raised`` carries."""
        return self.failures.reported(raised)

    # -- gates ---------------------------------------------------------------------
    def _gate(self, name: str, rank: int) -> Gate:
        gate = self.gates.get(name)
        if gate is None:
            gate = self.gates[name] = Gate(name, timeout=self.gate_timeout)
            self.ranks[name] = rank
        return gate

    def point(self, label: str) -> None:
        """A scheduling point: with a scheduler, wait until it lets this thread go (it
        decides the order of the threads parked at points); without one, pass."""
        scheduler = self.scheduler
        if scheduler is not None:
            scheduler.point(label)

    def pass_gate(self, name: str) -> None:
        """Park at gate ``name`` (recorded) until the driver opens or fails it."""
        gate = self.gates[name]
        self.record(EventKind.GATE_PARK, name)
        gate.pass_through()


class ServiceProbe:
    """A service that records construction, setup, calls and cleanup, and parks or fails."""

    def __init__(self, probes: Probes, spec: ServiceSpec) -> None:
        self.probes = probes
        self.spec = spec
        self.name = spec.name

    def constructed(self) -> None:
        self.probes.record(EventKind.SERVICE_CONSTRUCT, self.name)

    def setup(self) -> None:
        p = self.probes
        p.record(EventKind.SERVICE_SETUP_BEGIN, self.name)
        if self.spec.setup == "raises":
            raise p.failure(
                EventKind.SERVICE_SETUP_END,
                self.name,
                InjectedFault(f"setup of {self.name} failed"),
                injected=True,
            )
        p.record(EventKind.SERVICE_SETUP_END, self.name)

    def call(self, caller: str, item: str) -> str:
        p = self.probes
        p.point(f"call {self.name} from {caller} with {item}")
        begin = p.record(EventKind.SERVICE_CALL_BEGIN, self.name, method="call", caller=caller)
        p.record(EventKind.SERVICE_CALL_END, self.name, begin=begin.seq, method="call")
        p.point(f"return from {self.name} to {caller} with {item}")
        return item

    def cleanup(self) -> None:
        p = self.probes
        p.record(EventKind.SERVICE_CLEANUP_BEGIN, self.name)
        try:
            p.pass_gate(f"cleanup:{self.name}")
            if self.spec.cleanup == "raises":
                raise InjectedFault(f"cleanup of {self.name} failed")
        except Exception as exc:
            raise p.failure(EventKind.SERVICE_CLEANUP_END, self.name, exc) from None
        p.record(EventKind.SERVICE_CLEANUP_END, self.name)


class _TaskProbe:
    node: str

    def __init__(self, probes: Probes) -> None:
        self.probes = probes

    def _guarded(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; record any failure as this task's error before it propagates.

        The event says whether the harness injected the failure (``injected``): an
        error the runtime raised on its own is evidence against it, never an excuse
        for what the failed task did not deliver.
        """
        try:
            return fn()
        except Exception as exc:
            raise self.probes.failure(
                EventKind.TASK_ERROR, self.node, exc, node=self.node, injected=_injected(exc)
            ) from None

    def _calls(self, calls: tuple[str, ...], item: str, call: _CallService) -> None:
        for service in calls:
            call(service, item)


class SourceProbe(_TaskProbe):
    """A source: ``next()`` returns item keys ``"p0#0"``, ``"p0#1"``, ... then ``None``.

    A bounded source's ``None`` is its end (``ended`` turns true): a batch adapter
    returns it as is, a streaming adapter returns the runtime's end marker (SAGE's
    ``StopSignal``) instead. An unbounded source (``spec.unbounded``) never ends: it
    emits its items in rounds of ``spec.items`` and parks at a gate after each round
    (``end:p<i>``, then ``more:p<i>#1``, ... up to :data:`ROUNDS` rounds), so it cannot
    race ahead of the driver, which draws after which round to stop. Once the stop is
    requested, or after its last round, it waits for the stop and then answers ``None``
    ("nothing now") on every call; ``ended`` stays false.
    """

    def __init__(self, probes: Probes, index: int, spec: PipelineSpec, rank: int) -> None:
        super().__init__(probes)
        self.spec = spec
        self.index = index
        self.node = f"p{index}.source"
        self._next = 0
        self._parked = 0  # rounds ended at their gate
        probes._gate(f"end:p{index}", rank)
        if spec.unbounded:
            for r in range(1, ROUNDS):
                probes._gate(f"more:p{index}#{r}", rank)

    @property
    def ended(self) -> bool:
        """Whether a bounded source has passed its end (its ``None`` means the end)."""
        return not self.spec.unbounded and self._parked > 0

    def _round_gate(self) -> str:
        return f"end:p{self.index}" if self._parked == 0 else f"more:p{self.index}#{self._parked}"

    def next(self) -> str | None:
        rounds = ROUNDS if self.spec.unbounded else 1
        while self._parked < rounds:
            if self._next < self.spec.items * (self._parked + 1):
                item = f"p{self.index}#{self._next}"
                self._next += 1
                self.probes.point(f"emit {item}")
                self.probes.record(EventKind.ITEM_EMIT, self.node, node=self.node, item=item)
                return item
            gate = self._round_gate()
            self._parked += 1
            self._guarded(functools.partial(self.probes.pass_gate, gate))
            if not self.spec.unbounded or self.probes.stop_requested.is_set():
                break
        if self.spec.unbounded:
            # Bounded by the gate deadline: a harness that never stops the job (a bug of
            # ours) cannot hold the runtime forever.
            with VirtualClock.real_time():
                self.probes.stop_requested.wait(self.probes.gate_timeout)
        return None


class _ItemProbe(_TaskProbe):
    """A stage or sink: one node, its ancestors, and maybe a gate on one item."""

    def __init__(
        self,
        probes: Probes,
        node: str,
        ancestors: tuple[str, ...],
        gated_on: int | None,
        rank: int,
    ) -> None:
        super().__init__(probes)
        self.node = node
        self.ancestors = ancestors
        self.gated_on = gated_on
        if gated_on is not None:
            probes._gate(f"item:{node}#{gated_on}", rank)

    def _park_if_gated(self, item: str) -> int:
        """Take ``item`` (a scheduling point: the hand-over from upstream), and park at
        this node's gate if it is the gated one; return the item's index."""
        self.probes.point(f"take {item} at {self.node}")
        k = _item_index(item)
        if self.gated_on == k:
            self.probes.pass_gate(f"item:{self.node}#{k}")
        return k


class StageProbe(_ItemProbe):
    """A map (returns the item) or filter (keeps even indexes) that may call, park or fail."""

    def __init__(
        self,
        probes: Probes,
        pipeline: int,
        index: int,
        spec: StageSpec,
        ancestors: tuple[str, ...],
        rank: int,
    ) -> None:
        super().__init__(probes, f"p{pipeline}.stage{index}", ancestors, spec.gated_on, rank)
        self.spec = spec

    def process(self, item: str, call: _CallService) -> Any:
        return self._guarded(lambda: self._process(item, call))

    def _process(self, item: str, call: _CallService) -> Any:
        k = self._park_if_gated(item)
        if self.spec.raises_on == k:
            raise InjectedFault(f"{self.node} failed on item {item}")
        self._calls(self.spec.calls, item, call)
        if self.spec.kind == "filter":
            keep = k % 2 == 0
            if not keep:
                self.probes.record(EventKind.ITEM_DROP, self.node, node=self.node, item=item)
            return keep
        return item


class SinkProbe(_ItemProbe):
    """A sink that may park on one item, records what reached it, and calls services."""

    def __init__(
        self,
        probes: Probes,
        pipeline: int,
        index: int,
        spec: SinkSpec,
        ancestors: tuple[str, ...],
        rank: int,
    ) -> None:
        super().__init__(probes, f"p{pipeline}.sink{index}", ancestors, spec.gated_on, rank)
        self.spec = spec

    def consume(self, item: str, call: _CallService) -> None:
        self._guarded(lambda: self._consume(item, call))

    def _consume(self, item: str, call: _CallService) -> None:
        self._park_if_gated(item)
        self.probes.record(EventKind.ITEM_SINK, self.node, node=self.node, item=item)
        self._calls(self.spec.calls, item, call)
