"""Topologies: validated on construction, drawn by a strategy that shrinks to the smallest job."""

from __future__ import annotations

import threading

import pytest
from hypothesis import find, given

from sage_lifecycle.probes import ROUNDS, InjectedFault, Probes
from sage_lifecycle.topology import (
    PipelineSpec,
    ServiceSpec,
    SinkSpec,
    StageSpec,
    Topology,
    TopologyError,
    topologies,
)
from sage_lifecycle.trace import EventKind, Trace


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ServiceSpec("my db"), "a service name must be an identifier"),
        (lambda: ServiceSpec("db", cleanup="gated"), r"cleanup='gated'\): expected one of"),  # type: ignore[arg-type]
        (lambda: StageSpec(parallelism=0), r"parallelism=0\): parallelism must be an integer >= 1"),
        (lambda: StageSpec(kind="flatmap"), "expected 'map' or 'filter'"),  # type: ignore[arg-type]
        (lambda: PipelineSpec(items=-1), "items must be an integer >= 0"),
        (lambda: PipelineSpec(sinks=()), "needs at least one sink"),
        (
            lambda: PipelineSpec(items=2, stages=(StageSpec(raises_on=5),)),
            r"stages\[0\].raises_on=5: must be None or an item index in range\(2\)",
        ),
        (lambda: Topology(pipelines=()), "needs at least one pipeline"),
        (
            lambda: Topology((ServiceSpec("a"), ServiceSpec("a"))),
            r"duplicate service names \['a'\]",
        ),
        (
            lambda: Topology(pipelines=(PipelineSpec(sinks=(SinkSpec(calls=("db",)),)),)),
            r"pipelines\[0\].sinks\[0\] calls unknown service\(s\) \['db'\]; declare them",
        ),
        (lambda: Topology(mode="stream"), r"mode='stream'\): expected 'batch' .* or 'streaming'"),  # type: ignore[arg-type]
        (
            lambda: Topology(pipelines=(PipelineSpec(unbounded=True),)),
            "a batch job with one could never end; use mode='streaming' or unbounded=False",
        ),
        (lambda: PipelineSpec(unbounded=1), r"unbounded=1\): expected True or False"),  # type: ignore[arg-type]
    ],
)
def test_impossible_topologies_are_refused_with_the_value_and_the_fix(
    build: object, message: str
) -> None:
    with pytest.raises(TopologyError, match=message):
        build()  # type: ignore[operator]


def test_strategy_arguments_are_checked_when_declared() -> None:
    with pytest.raises(
        TopologyError, match=r"topologies\(max_pipelines=0\): expected an integer >= 1"
    ):
        topologies(max_pipelines=0)
    with pytest.raises(TopologyError, match=r"topologies\(modes=\('batch', 'batch'\)\)"):
        topologies(modes=("batch", "batch"))


@given(topologies(modes=("batch", "streaming")))
def test_both_modes_are_drawn_valid_and_only_streaming_has_unbounded_sources(
    topology: Topology,
) -> None:
    assert topology.mode in ("batch", "streaming")
    if not topology.streaming:
        assert not any(p.unbounded for p in topology.pipelines)


def test_a_streaming_topology_describes_its_mode_and_unbounded_sources() -> None:
    described = Topology(
        pipelines=(PipelineSpec(items=2, unbounded=True),), mode="streaming"
    ).describe()
    assert described.splitlines() == [
        "mode: streaming (ended by the driver's stop or close)",
        "pipeline 0: source(2 items, unbounded) -> sink()",
    ]


@given(topologies())
def test_drawn_topologies_are_valid_and_within_bounds(topology: Topology) -> None:
    assert 1 <= len(topology.pipelines) <= 2
    assert len(topology.services) <= 3
    for p in topology.pipelines:
        assert 1 <= p.items <= 4
        assert len(p.stages) <= 2
        assert 1 <= len(p.sinks) <= 2
    assert topology.tasks >= 2
    assert topology.describe().count("pipeline") == len(topology.pipelines)


def test_failures_shrink_toward_the_smallest_job() -> None:
    # Any job that needs a service shrinks to one service and one source -> sink pipeline.
    smallest = find(topologies(), lambda t: len(t.services) >= 1)
    assert smallest == Topology((ServiceSpec("s0"),), (PipelineSpec(items=1),))


@given(topologies(faults=False, gates=False))
def test_faults_and_gates_can_be_switched_off(topology: Topology) -> None:
    assert not topology.has_faults()
    assert all(s.gated_on is None for p in topology.pipelines for s in p.stages)
    assert all(s.gated_on is None for p in topology.pipelines for s in p.sinks)


def test_describe_names_every_fault_and_gate() -> None:
    t = Topology(
        (ServiceSpec("db", setup="raises"),),
        (
            PipelineSpec(
                items=3,
                stages=(StageSpec("filter", 2, ("db",), raises_on=1, gated_on=0),),
                sinks=(SinkSpec(gated_on=2),),
            ),
        ),
    )
    text = t.describe()
    assert "service db: setup raises, cleanup ok" in text
    assert "filter(x2; calls db; raises on #1; gated on #0)" in text
    assert "sink(gated on #2)" in text
    assert t.has_faults()


def test_an_unbounded_source_emits_in_rounds_parked_at_a_gate_after_each() -> None:
    """It cannot race ahead of the driver: each round of items ends at a gate, and once the
    stop is requested (or after its last round) it emits nothing more."""
    topology = Topology(pipelines=(PipelineSpec(items=2, unbounded=True),), mode="streaming")
    trace = Trace()
    probes = Probes(topology, trace, job="j", gate_timeout=10.0)
    source = probes.sources[0]
    got: list[str | None] = []

    def pull(n: int) -> threading.Thread:
        def run() -> None:
            for _ in range(n):
                got.append(source.next())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def parked_at(name: str) -> None:
        assert trace.wait_for(
            lambda events: any(e.kind is EventKind.GATE_PARK and e.subject == name for e in events),
            timeout=10.0,
        ), f"the source never parked at {name}"

    puller = pull(3)
    parked_at("end:p0")
    assert got == ["p0#0", "p0#1"]
    probes.gates["end:p0"].open()
    puller.join(10.0)
    assert got == ["p0#0", "p0#1", "p0#2"]
    puller = pull(1)
    puller.join(10.0)
    assert got[-1] == "p0#3"
    puller = pull(1)
    parked_at("more:p0#1")
    probes.stop_requested.set()
    probes.gates["more:p0#1"].open()
    puller.join(10.0)
    assert not puller.is_alive()
    assert got[-1] is None
    assert not source.ended
    assert ROUNDS == 3
    assert "more:p0#2" in probes.gates
    assert not probes.gates["more:p0#2"].parked


def test_one_failure_surfacing_at_two_places_is_reported_at_both() -> None:
    """A failed gate raises the same exception object wherever it surfaces (the cleanup
    it held, then the task that re-raised it): both records are matched by what the wait
    raised, so failure-isolation never calls one of them lost."""
    topology = Topology(services=(ServiceSpec("s0"),))
    probes = Probes(topology, Trace(), job="j", gate_timeout=10.0)
    fault = InjectedFault("gate cleanup:s0 failed by the driver")
    probes.failure(EventKind.SERVICE_CLEANUP_END, "s0", fault)
    probes.failure(EventKind.TASK_ERROR, "p0.sink0", fault, node="p0.sink0")
    probes.failure(EventKind.TASK_ERROR, "p0.source", InjectedFault("source broke"))
    cleanup, sink, source = (e.seq for e in probes.trace.events())
    wrapped = RuntimeError("job failed")
    wrapped.__cause__ = fault
    assert probes.reported(wrapped) == (cleanup, sink)
    assert probes.reported(RuntimeError("job failed")) == ()
    assert probes.reported(RuntimeError("1 failure: InjectedFault: source broke")) == (source,)
