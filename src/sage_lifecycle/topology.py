"""Topologies: what job to build, as plain frozen data, and the Hypothesis strategy for them.

A topology names services (and how their setup and cleanup behave), pipelines (a source
with N items, map/filter stages with parallelism and the services each calls, one or more
sinks), the injected faults and gates, and the job's mode: a ``batch`` job ends with
``submit(autostop=True)``; a ``streaming`` job is started with ``submit(autostop=False)``
and ended by the driver's ``stop()`` or ``close()``, and its sources may be
``unbounded`` (they never end by themselves). It is validated on construction.

Example::

    Topology(
        services=(ServiceSpec("db", cleanup="raises"),),
        pipelines=(PipelineSpec(items=3, sinks=(SinkSpec(calls=("db",)),)),),
    )
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ._checks import is_whole_number

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "MODES",
    "RANKS",
    "CleanupBehaviour",
    "Mode",
    "PipelineSpec",
    "ServiceSpec",
    "SetupBehaviour",
    "SinkSpec",
    "StageSpec",
    "Topology",
    "TopologyError",
    "topologies",
]

#: Ranks drawn by :func:`topologies` (and the range of ranks a driver's step names).
RANKS = 64

Mode = Literal["batch", "streaming"]
MODES: tuple[Mode, ...] = ("batch", "streaming")
SetupBehaviour = Literal["ok", "raises"]
CleanupBehaviour = Literal["ok", "raises"]
_SETUP = ("ok", "raises")
_CLEANUP = ("ok", "raises")


class TopologyError(ValueError):
    """A topology that cannot be built; the message names the value and the fix."""


def _check_index(value: int | None, items: int, what: str) -> None:
    if value is None:
        return
    if not (is_whole_number(value) and value < max(items, 1)):
        raise TopologyError(
            f"{what}={value!r}: must be None or an item index in range({items}) of the pipeline"
        )


def _check_rank(value: int | None, what: str) -> None:
    if value is not None and not is_whole_number(value):
        raise TopologyError(f"{what}(rank={value!r}): must be None or an integer >= 0")


def _check_parallelism(value: int, what: str) -> None:
    if not is_whole_number(value, 1):
        raise TopologyError(f"{what}(parallelism={value!r}): parallelism must be an integer >= 1")


@dataclass(frozen=True)
class ServiceSpec:
    """A service: its name, and whether its setup or its cleanup raises.

    Every service's cleanup parks at a gate (``cleanup:<name>``) that the driver opens:
    a wait that returns while a cleanup is parked has returned early, deterministically.
    ``rank`` is its gates' identity for the driver's steps (see :class:`Topology`).
    """

    name: str
    setup: SetupBehaviour = "ok"
    cleanup: CleanupBehaviour = "ok"
    rank: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_rank(self.rank, "ServiceSpec")
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise TopologyError(
                f"ServiceSpec(name={self.name!r}): a service name must be an identifier"
            )
        if self.setup not in _SETUP:
            raise TopologyError(
                f"ServiceSpec({self.name!r}, setup={self.setup!r}): expected one of {_SETUP}"
            )
        if self.cleanup not in _CLEANUP:
            raise TopologyError(
                f"ServiceSpec({self.name!r}, cleanup={self.cleanup!r}): expected one of {_CLEANUP}"
            )


@dataclass(frozen=True)
class StageSpec:
    """A map or filter stage. A filter keeps the items with an even index.

    ``raises_on`` injects a fault on that item; ``gated_on`` parks that item at a gate.
    """

    kind: Literal["map", "filter"] = "map"
    parallelism: int = 1
    calls: tuple[str, ...] = ()
    raises_on: int | None = None
    gated_on: int | None = None
    rank: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_rank(self.rank, "StageSpec")
        if self.kind not in ("map", "filter"):
            raise TopologyError(f"StageSpec(kind={self.kind!r}): expected 'map' or 'filter'")
        _check_parallelism(self.parallelism, "StageSpec")


@dataclass(frozen=True)
class SinkSpec:
    """A sink; ``gated_on`` parks that item at a gate before the sink consumes it."""

    parallelism: int = 1
    calls: tuple[str, ...] = ()
    gated_on: int | None = None
    rank: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_rank(self.rank, "SinkSpec")
        _check_parallelism(self.parallelism, "SinkSpec")


@dataclass(frozen=True)
class PipelineSpec:
    """A source of ``items`` items, then ``stages`` in a chain, then ``sinks`` (fan-out).

    Every source parks at a gate (``end:p<i>``) after its last item, before it ends the
    batch, so the stages drain while the driver holds the end. An ``unbounded`` source
    (streaming jobs only) never ends by itself: it emits ``items`` items a round and
    parks at a gate after each round (``end:p<i>``, then ``more:p<i>#1``, ...; three
    rounds), so it cannot race ahead of the driver, which draws after which round the
    job is stopped; after its last round it waits, emitting nothing more, for the stop.
    """

    items: int = 1
    stages: tuple[StageSpec, ...] = ()
    sinks: tuple[SinkSpec, ...] = field(default_factory=lambda: (SinkSpec(),))
    unbounded: bool = False
    rank: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_rank(self.rank, "PipelineSpec")
        if not is_whole_number(self.items):
            raise TopologyError(
                f"PipelineSpec(items={self.items!r}): items must be an integer >= 0"
            )
        if not isinstance(self.unbounded, bool):
            raise TopologyError(
                f"PipelineSpec(unbounded={self.unbounded!r}): expected True or False"
            )
        if not self.sinks:
            raise TopologyError(
                "PipelineSpec(sinks=()): a pipeline needs at least one sink; use "
                "sinks=(SinkSpec(),)"
            )
        for i, stage in enumerate(self.stages):
            _check_index(stage.raises_on, self.items, f"stages[{i}].raises_on")
            _check_index(stage.gated_on, self.items, f"stages[{i}].gated_on")
        for i, sink in enumerate(self.sinks):
            _check_index(sink.gated_on, self.items, f"sinks[{i}].gated_on")


@dataclass(frozen=True)
class Topology:
    """A whole job: services, one or more pipelines, and how it ends (``mode``).

    Each part (service, pipeline, stage, sink) has a ``rank``: the identity of its gates
    for the driver's steps. A step names a rank and opens (or fails) the parked gate of
    that rank or the next one up, so which gate a step reaches belongs to the part, not
    to the gate's position among those parked: deleting an unrelated part (shrinking
    does) leaves the schedule of the rest as it was. :func:`topologies` draws ranks;
    ``None`` (the default) ranks a part by its position (services first, then each
    pipeline, its stages and its sinks). Ranks are no part of the job itself: equality
    ignores them.
    """

    services: tuple[ServiceSpec, ...] = ()
    pipelines: tuple[PipelineSpec, ...] = field(default_factory=lambda: (PipelineSpec(),))
    mode: Mode = "batch"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise TopologyError(
                f"Topology(mode={self.mode!r}): expected 'batch' (ends with "
                "submit(autostop=True)) or 'streaming' (ends with stop() or close())"
            )
        if not self.pipelines:
            raise TopologyError(
                "Topology(pipelines=()): a job needs at least one pipeline; use "
                "pipelines=(PipelineSpec(),)"
            )
        if self.mode == "batch" and any(p.unbounded for p in self.pipelines):
            raise TopologyError(
                "Topology: an unbounded source never ends by itself, so a batch job with "
                "one could never end; use mode='streaming' or unbounded=False"
            )
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise TopologyError(f"Topology: duplicate service names {dupes}; names must be unique")
        known = set(names)
        for p, pipeline in enumerate(self.pipelines):
            callers: list[tuple[str, tuple[str, ...]]] = [
                (f"pipelines[{p}].stages[{i}]", s.calls) for i, s in enumerate(pipeline.stages)
            ]
            callers += [
                (f"pipelines[{p}].sinks[{i}]", s.calls) for i, s in enumerate(pipeline.sinks)
            ]
            for where, calls in callers:
                unknown = [c for c in calls if c not in known]
                if unknown:
                    raise TopologyError(
                        f"{where} calls unknown service(s) {unknown}; declare them in "
                        f"Topology(services=...) (declared: {sorted(known)})"
                    )

    @property
    def tasks(self) -> int:
        """How many task instances the job runs."""
        return sum(
            1 + sum(s.parallelism for s in p.stages) + sum(s.parallelism for s in p.sinks)
            for p in self.pipelines
        )

    @property
    def streaming(self) -> bool:
        """Whether the job is streaming: started at once, ended by ``stop()``/``close()``."""
        return self.mode == "streaming"

    def has_faults(self) -> bool:
        """Whether any failure is injected (a raising setup, cleanup or stage)."""
        return any(s.setup == "raises" or s.cleanup == "raises" for s in self.services) or any(
            st.raises_on is not None for p in self.pipelines for st in p.stages
        )

    def describe(self) -> str:
        """One line per service and pipeline, for failure messages."""
        lines = ["mode: streaming (ended by the driver's stop or close)"] if self.streaming else []
        lines += [f"service {s.name}: setup {s.setup}, cleanup {s.cleanup}" for s in self.services]
        for i, p in enumerate(self.pipelines):
            parts = [f"source({p.items} items{', unbounded' if p.unbounded else ''})"]
            for st in p.stages:
                extra = [f"x{st.parallelism}"] if st.parallelism > 1 else []
                extra += [f"calls {','.join(st.calls)}"] if st.calls else []
                extra += [f"raises on #{st.raises_on}"] if st.raises_on is not None else []
                extra += [f"gated on #{st.gated_on}"] if st.gated_on is not None else []
                parts.append(f"{st.kind}({'; '.join(extra)})")
            sinks = []
            for sk in p.sinks:
                extra = [f"x{sk.parallelism}"] if sk.parallelism > 1 else []
                extra += [f"calls {','.join(sk.calls)}"] if sk.calls else []
                extra += [f"gated on #{sk.gated_on}"] if sk.gated_on is not None else []
                sinks.append(f"sink({'; '.join(extra)})")
            parts.append(" + ".join(sinks))
            lines.append(f"pipeline {i}: " + " -> ".join(parts))
        return "\n".join(lines)


def topologies(
    *,
    max_services: int = 3,
    max_pipelines: int = 2,
    max_stages: int = 2,
    max_sinks: int = 2,
    max_items: int = 4,
    max_parallelism: int = 2,
    faults: bool = True,
    gates: bool = True,
    modes: tuple[str, ...] = ("batch",),
) -> SearchStrategy[Topology]:
    """A Hypothesis strategy for topologies within the given sizes.

    Every draw shrinks toward the smallest job: no faults, no item gates, parallelism 1,
    one source -> sink pipeline, and as few services as the failure needs. ``gates``
    allows item gates on stages and sinks; cleanup and source-end gates are always there.
    ``modes`` are the job modes to draw (a target declares the ones it supports); a
    streaming job's sources are bounded or unbounded. Draws shrink toward the first mode.

    Example::

        @given(topologies(max_services=2, faults=False))
        def test_job(topology): ...
    """
    for name, value, low in [
        ("max_services", max_services, 0),
        ("max_pipelines", max_pipelines, 1),
        ("max_stages", max_stages, 0),
        ("max_sinks", max_sinks, 1),
        ("max_items", max_items, 0),
        ("max_parallelism", max_parallelism, 1),
    ]:
        if not is_whole_number(value, low):
            raise TopologyError(f"topologies({name}={value!r}): expected an integer >= {low}")

    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise TopologyError(
            f"topologies(modes={modes!r}): expected a tuple of distinct modes from {MODES}"
        )
    sizes = _Sizes(max_services, max_pipelines, max_stages, max_sinks, max_items, max_parallelism)
    return _topologies(sizes, bool(faults), bool(gates), tuple(modes))


@dataclass(frozen=True)
class _Sizes:
    services: int
    pipelines: int
    stages: int
    sinks: int
    items: int
    parallelism: int


@functools.lru_cache(maxsize=64)
def _topologies(
    sizes: _Sizes, faults: bool, gates: bool, modes: tuple[Mode, ...]
) -> SearchStrategy[Topology]:
    """The strategy itself, built once per set of arguments: Hypothesis validates a new
    strategy (and reads a composite's source) when it is made, which cost more than the
    draw itself when it was rebuilt for every example."""
    from hypothesis import strategies as st

    # Every strategy an example uses is made once and kept: by the shape it depends on
    # (how many services, whether faults are on, how many items), never rebuilt per draw.
    cached = functools.cache
    mode_of = st.sampled_from(modes)
    # Each part's rank is drawn with the part, so it moves with it when shrinking
    # deletes what comes before (see Topology).
    ranks = st.integers(0, RANKS - 1)

    @cached
    def services_of(faulty: bool) -> Any:
        behaviour = st.sampled_from(_SETUP if faulty else ("ok",))
        return st.lists(st.tuples(behaviour, behaviour, ranks), max_size=sizes.services)

    @cached
    def calls_of(services: int) -> Any:
        names = tuple(f"s{i}" for i in range(services))
        if not names:
            return st.just(())
        return st.lists(st.sampled_from(names), max_size=2, unique=True).map(tuple)

    @cached
    def parts_of(services: int, faulty: bool, items: int) -> tuple[Any, Any]:
        """The strategies of a pipeline's stages and sinks."""
        calls = calls_of(services)
        stage = st.builds(
            StageSpec,
            kind=st.sampled_from(("map", "filter")),
            parallelism=st.integers(1, sizes.parallelism),
            calls=calls,
            raises_on=_maybe_index(items, faulty),
            gated_on=_maybe_index(items, gates),
            rank=ranks,
        )
        sink = st.builds(
            SinkSpec,
            parallelism=st.integers(1, sizes.parallelism),
            calls=calls,
            gated_on=_maybe_index(items, gates),
            rank=ranks,
        )
        return (
            st.lists(stage, max_size=sizes.stages),
            st.lists(sink, min_size=1, max_size=sizes.sinks),
        )

    @st.composite
    def pipeline(draw: Any, services: int, faulty: bool, mode: Mode) -> PipelineSpec:
        items = draw(st.integers(1 if sizes.items else 0, sizes.items))
        stages_of, sinks_of = parts_of(services, faulty, items)
        stages = draw(stages_of)
        sinks = draw(sinks_of)
        # Drawn in either mode when streaming is on the menu, so that shrinking a
        # streaming job to a batch one changes one choice and shifts none of the rest.
        unbounded = "streaming" in modes and draw(st.booleans()) and mode == "streaming"
        return PipelineSpec(items, tuple(stages), tuple(sinks), unbounded, rank=draw(ranks))

    @cached
    def pipelines_of(services: int, faulty: bool, mode: Mode) -> Any:
        return st.lists(pipeline(services, faulty, mode), min_size=1, max_size=sizes.pipelines)

    @st.composite
    def build(draw: Any) -> Topology:
        mode: Mode = draw(mode_of) if len(modes) > 1 else modes[0]
        # Swarm testing (Groce et al., ISSTA 2012): each job first draws whether it has
        # injected faults at all, so half the jobs are fault-free. A bug that any failure
        # hides (an ending call that raises skips what follows it) is then reached as
        # often as one that needs a failure; and it shrinks toward no faults.
        faulty = faults and draw(st.booleans())
        # A list shrinks by deleting elements, so a failure sheds the services it does
        # not need.
        drawn = draw(services_of(faulty))
        services = tuple(
            ServiceSpec(f"s{i}", setup=setup, cleanup=cleanup, rank=rank)
            for i, (setup, cleanup, rank) in enumerate(drawn)
        )
        pipelines = draw(pipelines_of(len(services), faulty, mode))
        return Topology(services, tuple(pipelines), mode)

    return build()


def _maybe_index(items: int, enabled: bool) -> Any:
    from hypothesis import strategies as st

    if not enabled or items == 0:
        return st.none()
    return st.none() | st.integers(0, items - 1)
