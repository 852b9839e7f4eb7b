"""Topologies: validated on construction, drawn by a strategy that shrinks to the smallest job."""

from __future__ import annotations

import pytest
from hypothesis import find, given

from sage_lifecycle.topology import (
    PipelineSpec,
    ServiceSpec,
    SinkSpec,
    StageSpec,
    Topology,
    TopologyError,
    topologies,
)


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
