"""The state machines: the reference passes, every mutant is caught by the property its
documentation names (under the loaded profile: ``ci`` in CI), pre-#878 shrinks to the
smallest job, and the white-box machine holds on the reference dispatcher."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from sage_lifecycle.machines import (
    AT_ONCE,
    BlackBoxMachine,
    Outcome,
    Search,
    WhiteBoxMachine,
    run_search,
    stats,
)
from sage_lifecycle.mutants import MUTANTS
from sage_lifecycle.probes import Probes
from sage_lifecycle.reference import Dispatcher
from sage_lifecycle.reference_target import ReferenceTarget
from sage_lifecycle.report import LifecycleViolation
from sage_lifecycle.resolve import resolve_target
from sage_lifecycle.topology import RANKS, PipelineSpec, ServiceSpec, SinkSpec, StageSpec, Topology
from sage_lifecycle.trace import EventKind, Trace

NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


def test_reference_passes_the_black_box_machine() -> None:
    before = stats.examples
    run_state_machine_as_test(BlackBoxMachine, settings=settings(database=None))
    assert stats.examples - before >= settings().max_examples // 2


@pytest.mark.deep  # deselected by default; .ci/run runs it with -m deep
@pytest.mark.timeout(900)  # about three minutes on 2 cores; the suite's default is 120 s
def test_reference_passes_the_deep_profile() -> None:
    """At least 2,000 topologies against the reference, whatever profile the suite runs,
    with streaming jobs in the mix (the reference runs both modes)."""
    before, modes_before = stats.examples, dict(stats.modes)
    run_state_machine_as_test(
        BlackBoxMachine,
        settings=settings(settings.get_profile("deep"), max_examples=2000, database=None),
    )
    assert stats.examples - before >= 2000
    for mode in ("batch", "streaming"):
        assert stats.modes[mode] - modes_before.get(mode, 0) >= 500, dict(stats.modes)


def test_reference_dispatcher_passes_the_white_box_machine() -> None:
    run_state_machine_as_test(WhiteBoxMachine, settings=settings(database=None))


#: Each mutant's minimal counterexample: the topology (as ``describe()`` prints it) and the
#: steps its ``ci`` search shrinks to. A regression in shrinking, or in the draws that
#: feed it, changes one of these.
MINIMAL: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "cleans_when_sources_end": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> map(gated on #0) -> sink(calls s0)",
        ),
        (("open", "end:p0"), ("open", "item:p0.stage0#0")),
    ),
    "cleanup_after_first_pipeline": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink(calls s0; gated on #0) + sink()",
        ),
        (("open", "end:p0"), ("open", "item:p0.sink0#0")),
    ),
    "cleanup_stops_at_first_failure": (
        (
            "service s0: setup ok, cleanup ok",
            "service s1: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("fail", "end:p0"), ("fail", "cleanup:s1")),
    ),
    "double_cleanup": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"), ("open", "cleanup:s0")),
    ),
    "ending_twice_cleans_twice": (
        (
            "mode: streaming (ended by the driver's stop or close)",
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("fail", "end:p0"), ("fail", "cleanup:s0"), ("end", "stop twice at once")),
    ),
    "joins_cleanup_briefly": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "lost_errors": (
        (
            "service s0: setup ok, cleanup raises",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (),
    ),
    "pre_878": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "racy_last_stop_signal": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "waits_for_failed_setup": (
        (
            "service s0: setup raises, cleanup ok",
            "pipeline 0: source(1 items) -> sink(calls s0)",
        ),
        (("open", "end:p0"),),
    ),
    "services_cleared_early": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "skips_failed_setup_cleanup": (
        (
            "service s0: setup raises, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (),
    ),
    "sleeps_for_cleanups": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "stop_drops_in_flight": (
        (
            "mode: streaming (ended by the driver's stop or close)",
            "pipeline 0: source(1 items) -> map(x2; gated on #0) -> sink()",
        ),
        (("end", "stop"), ("open", "end:p0"), ("open", "item:p0.stage0#0")),
    ),
    "stop_joins_sources_only": (
        (
            "mode: streaming (ended by the driver's stop or close)",
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("end", "stop"), ("open", "end:p0")),
    ),
    "stops_at_first_signal": (
        ("pipeline 0: source(1 items) -> map(x2; gated on #0) -> sink()",),
        (("open", "end:p0"), ("open", "item:p0.stage0#0")),
    ),
    "unbalanced_counter": (
        (
            "service s0: setup ok, cleanup raises",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "unjoined_service_thread": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "wait_on_is_running": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "wait_on_sources": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
    "wait_on_tasks": (
        (
            "service s0: setup ok, cleanup ok",
            "pipeline 0: source(1 items) -> sink()",
        ),
        (("open", "end:p0"),),
    ),
}


@pytest.mark.slow  # 21 ci searches with shrinking: .ci/run runs them (-m slow)
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_mutant_is_caught_and_shrinks_to_its_minimal_counterexample(name: str) -> None:
    """The conformance search for the mutant's property FAILs with its own story, on the
    smallest job that shows the bug: the one pinned in :data:`MINIMAL`."""
    mutant = MUTANTS[name]
    # A hang is a bug here: a short deadline finds it quickly (on owned time the
    # deadlock is seen at once anyway). No false alarm is possible because every mutant
    # is buggy; the reference's suite uses the generous default.
    machine = BlackBoxMachine.for_property(
        mutant.breaks,
        target_factory=resolve_target(f"mutant:{name}"),
        deadline=2.0 if mutant.breaks == "no-hang" else 30.0,
    )
    # Always the ci profile (derandomized, 100 topologies a search), whatever profile is
    # loaded: CI must see the same draws, and the same shrinking.
    ci = settings(settings.get_profile("ci"), database=None)
    outcome = run_search(machine, ci, replays=3)
    assert outcome.verdict == "FAIL", outcome
    assert {v.property for v in outcome.violations} == {mutant.breaks}
    assert f"{mutant.breaks} [job mutant:{name}#" in outcome.story
    assert outcome.failure is not None
    shrunk = (tuple(outcome.failure.topology.describe().splitlines()), outcome.failure.schedule)
    assert shrunk == MINIMAL[name], f"{name} shrank to {shrunk}"


@pytest.mark.slow
def test_a_correct_wait_that_leaks_a_failed_setup_service_is_not_an_early_return() -> None:
    """SAGE 0.2.5.3's leak with a correct wait: cleanup-exactly-once FAIL, and the
    early-return search, which shares no evidence with it, PASSes."""
    target = resolve_target("mutant:skips_failed_setup_cleanup")
    ci = settings(settings.get_profile("ci"), database=None)
    verdicts = {
        prop: run_search(BlackBoxMachine.for_property(prop, target_factory=target), ci)
        for prop in ("cleanup-exactly-once", "no-early-return")
    }
    assert verdicts["no-early-return"].verdict == "PASS", verdicts["no-early-return"]
    assert verdicts["no-early-return"].exercised > 0
    leak = verdicts["cleanup-exactly-once"]
    assert leak.verdict == "FAIL"
    assert leak.failure is not None
    assert leak.failure.topology == Topology(
        (ServiceSpec("s0", setup="raises"),), (PipelineSpec(items=1),)
    )
    assert "service 's0' was never cleaned up (its setup failed with" in leak.story


class _FirstJobReturnsEarly(ReferenceTarget):
    """Returns early on the first job of the process only: a bug no replay shows."""

    shown = False

    def __init__(self) -> None:
        super().__init__(
            MUTANTS["wait_on_tasks"].dispatcher if not type(self).shown else Dispatcher
        )
        type(self).shown = True


def test_a_violation_hypothesis_cannot_replay_is_a_finding_with_its_rate() -> None:
    _FirstJobReturnsEarly.shown = False  # the bug shows on this process's next job only
    machine = BlackBoxMachine.for_property("no-early-return", target_factory=_FirstJobReturnsEarly)
    topology = Topology((ServiceSpec("s0"),), (PipelineSpec(items=1),))
    machine.topologies = lambda self: st.just(topology)  # type: ignore[method-assign]
    outcome = run_search(machine, settings(max_examples=5, database=None), replays=4)
    assert outcome.verdict == "FAIL", outcome
    assert outcome.reproduced == (0, 4)
    assert "could not replay it reliably" in outcome.story
    assert "reproduced it 0/4" in outcome.story
    assert "no-early-return [job reference#1]" in outcome.story


class _FirstBuildCrashes(ReferenceTarget):
    """An adapter that crashes building the process's first job only."""

    crashed = False

    def build(self, probes: Any) -> None:
        if not type(self).crashed:
            type(self).crashed = True
            raise ConnectionError("runtime not reachable yet")
        super().build(probes)


def test_an_adapter_crash_hypothesis_cannot_replay_is_an_error_named_as_itself() -> None:
    _FirstBuildCrashes.crashed = False
    machine = BlackBoxMachine.for_property("no-thread-leak", target_factory=_FirstBuildCrashes)
    topology = Topology((ServiceSpec("s0"),), (PipelineSpec(items=1),))
    machine.topologies = lambda self: st.just(topology)  # type: ignore[method-assign]
    outcome = run_search(machine, settings(max_examples=5, database=None), replays=2)
    assert outcome.verdict == "ERROR", outcome
    assert outcome.reason.startswith(
        "HarnessError: target 'reference' failed to build the job: ConnectionError: runtime "
        "not reachable yet"
    ), outcome.reason
    assert outcome.reason.endswith("(in one run; Hypothesis could not make it happen again)")
    assert "Flaky" not in outcome.reason


class _DropsServiceCalls(Dispatcher):
    """Every service call fails on its own: the runtime's link to the service drops."""

    def call_service(self, caller: str, name: str, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionResetError(f"link to {name} dropped")


def _search_dropping_calls(topology: Topology, prop: str, **attrs: Any) -> Outcome:
    """Search ``prop`` on ``topology`` alone, with every service call dropped."""
    machine = BlackBoxMachine.for_property(
        prop, target_factory=lambda: ReferenceTarget(_DropsServiceCalls), **attrs
    )
    machine.topologies = lambda self: st.just(topology)  # type: ignore[method-assign]
    return run_search(machine, settings(max_examples=3, database=None))


def test_a_failure_nobody_injected_and_nothing_explains_is_reported_beside_the_verdict() -> None:
    """A sink's call fails on its own after the sink took its item: no item is lost, no
    cleanup is late, so the property searched holds on what was checked; but the error
    is the target's, so the search reports it, with its story, beside the verdict."""
    topology = Topology(
        (ServiceSpec("s0"),), (PipelineSpec(items=1, sinks=(SinkSpec(calls=("s0",)),)),)
    )
    for prop in ("no-hang", "failure-isolation"):
        outcome = _search_dropping_calls(topology, prop)
        assert outcome.verdict == "PASS", outcome
        assert 1 <= outcome.unexplained <= outcome.topologies
        first, *rest = outcome.unexplained_story.splitlines()
        assert first == (
            "unexplained failure: p0.sink0 failed with ConnectionResetError: link to s0 "
            "dropped, which nobody injected and no property of the contract explains"
        )
        assert any(line.startswith("    >> ") and "task.error" in line for line in rest)
        assert "pipeline 0: source(1 items) -> sink(calls s0)" in rest


def test_a_failure_nobody_injected_is_evidence_for_the_property_it_shows() -> None:
    """The same error at a stage loses the item behind it: no-data-loss FAILs naming the
    error, and the no-hang search, which that error does not concern, PASSes."""
    topology = Topology(
        (ServiceSpec("s0"),), (PipelineSpec(items=1, stages=(StageSpec(calls=("s0",)),)),)
    )
    outcomes = {
        prop: _search_dropping_calls(topology, prop, gate_faults=False)
        for prop in ("no-data-loss", "no-hang")
    }
    assert outcomes["no-data-loss"].verdict == "FAIL", outcomes["no-data-loss"]
    assert outcomes["no-data-loss"].reason.endswith(
        "after 'p0.stage0' failed with ConnectionResetError: link to s0 dropped, which "
        "nobody injected"
    )
    assert outcomes["no-hang"].verdict == "PASS", outcomes["no-hang"]


def test_a_step_reaches_the_same_gate_when_an_unrelated_pipeline_is_deleted() -> None:
    """Shrinking deletes parts: the pipeline kept is renamed (p1 becomes p0), but every
    step that reached one of its gates, or the service's, reaches the same one after."""
    kept = PipelineSpec(items=2, sinks=(SinkSpec(gated_on=1, rank=9),), rank=4)
    other = PipelineSpec(items=1, sinks=(SinkSpec(gated_on=0, rank=6),), rank=1)
    service = ServiceSpec("s0", rank=12)
    before = Topology((service,), (other, kept))
    after = Topology((service,), (kept,))

    def reached(topology: Topology) -> list[str | None]:
        machine = BlackBoxMachine()
        machine.probes = Probes(topology, Trace(), job="j#1", gate_timeout=1.0)
        everything = sorted(machine.probes.gates)  # every gate parked at once
        machine._parked_gates = lambda: everything  # type: ignore[method-assign]
        return [machine.gate_at(rank) for rank in range(RANKS)]

    renamed = {"end:p1": "end:p0", "item:p1.sink0#1": "item:p0.sink0#1", "cleanup:s0": "cleanup:s0"}
    steps_before, steps_after = reached(before), reached(after)
    compared = 0
    for rank, gate in enumerate(steps_before):
        if gate in renamed:
            assert steps_after[rank] == renamed[gate], (rank, gate, steps_after[rank])
            compared += 1
    assert compared == 9  # ranks 2-4, 7-9 and 10-12: the kept pipeline's gates, the service's


def test_a_search_that_never_exercised_its_property_is_not_a_pass() -> None:
    machine = BlackBoxMachine.for_property("no-use-after-cleanup")
    machine.topologies = lambda self: st.just(Topology())  # type: ignore[method-assign]
    outcome = run_search(machine, settings(max_examples=3, database=None))
    assert outcome.verdict == "NOT EXERCISED"
    assert outcome.reason == "3 topologies ran, none put the property to the test"
    assert outcome.situations == {}


def test_searches_count_their_own_topologies_and_number_their_own_jobs() -> None:
    a = BlackBoxMachine.for_property("no-hang")
    b = BlackBoxMachine.for_property("no-hang")
    assert isinstance(a.search, Search)
    assert a.search is not b.search
    for m in (a, b):
        run_state_machine_as_test(m, settings=settings(max_examples=4, database=None))
    assert a.search.examples == b.search.examples == 4


def test_pre_878_counterexample_shrinks_to_the_smallest_job_and_tells_the_story() -> None:
    class Pre878(BlackBoxMachine):
        target_factory = staticmethod(resolve_target("mutant:pre_878"))

    # No explain phase: it runs variants after the minimal example, and we read the
    # minimal one from last_failure.
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
    with pytest.raises(LifecycleViolation) as info:
        run_state_machine_as_test(
            Pre878, settings=settings(database=None, max_examples=200, phases=phases)
        )
    assert Pre878.last_failure is not None
    topology, violations = Pre878.last_failure
    assert topology == Topology((ServiceSpec("s0"),), (PipelineSpec(items=1),))
    assert "cleanup-exactly-once" in {v.property for v in violations}
    text = str(info.value)
    assert "cleanup-exactly-once [job mutant:pre_878#" in text
    assert "service 's0' was never cleaned up" in text
    assert "witnesses:" in text
    assert "timeline (" in text
    assert "target: mutant:pre_878" in text
    assert "pipeline 0: source(1 items) -> sink()" in text
    assert "replay: run the same command again" in text
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "@reproduce_failure" in notes


def test_white_box_machine_catches_a_dispatcher_that_cleans_on_every_stop_signal() -> None:
    class Early(MUTANTS["double_cleanup"].dispatcher):  # type: ignore[misc]
        pass

    class Double(WhiteBoxMachine):
        dispatcher_class = Early

    with pytest.raises((AssertionError, LifecycleViolation)):
        run_state_machine_as_test(Double, settings=settings(phases=NO_SHRINK, database=None))


def test_a_target_without_streaming_gets_batch_jobs_only() -> None:
    """Not an error: a target that does not list 'streaming' in its modes is simply never
    given a streaming job, and one that does gets both."""

    class BatchOnly(ReferenceTarget):
        modes = ("batch",)

    few = settings(max_examples=40, database=None)
    batch_only = BlackBoxMachine.for_property("no-hang", target_factory=BatchOnly)
    run_state_machine_as_test(batch_only, settings=few)
    assert batch_only.search.modes["streaming"] == 0
    assert batch_only.search.modes["batch"] >= 20
    both = BlackBoxMachine.for_property("no-hang", target_factory=ReferenceTarget)
    run_state_machine_as_test(both, settings=few)
    assert both.search.modes["streaming"] >= 5


def test_a_streaming_job_can_be_stopped_as_soon_as_it_started() -> None:
    """Drawn at the start: the stop comes right after submit(autostop=False) returned,
    without waiting for the sources; the job is judged on it (no "never ran" error), and
    a stop that returns early there is still caught."""
    topology = Topology(
        (ServiceSpec("s0"),),
        (PipelineSpec(items=2, unbounded=True, stages=(StageSpec(calls=("s0",)),)),),
        mode="streaming",
    )
    reference = BlackBoxMachine()
    reference.final_ending = AT_ONCE
    reference.begin(topology)
    reference.teardown()
    events = reference.trace.events()
    assert reference.schedule[0] == ("end", AT_ONCE)
    stop = next(e for e in events if e.kind is EventKind.WAIT_BEGIN and e.subject == "stop")
    assert not [e for e in events[: stop.seq] if e.kind is EventKind.GATE_OPEN]

    early = BlackBoxMachine.for_property(
        "no-early-return", target_factory=resolve_target("mutant:stop_joins_sources_only")
    )()
    early.final_ending = AT_ONCE
    early.begin(topology)
    with pytest.raises(LifecycleViolation, match="no-early-return"):
        early.teardown()


def test_a_ci_search_is_seeded_from_its_search_name_not_its_class_name() -> None:
    """Hypothesis seeds a derandomized search from the machine's name: the search is
    handed a factory named ``search_name``, so renaming a machine class draws the same
    jobs (the pins above, the README's tables) while reports show the class's own name."""
    from hypothesis.internal.reflection import function_digest

    from sage_lifecycle.machines.search import _seeded

    machine = BlackBoxMachine.for_property("no-hang")
    assert machine.search_name == "LifecycleMachine_NoHang"
    assert machine.__name__ == "BlackBoxMachine_NoHang"
    as_named = type("LifecycleMachine_NoHang", (BlackBoxMachine,), {})
    assert function_digest(_seeded(machine)) == function_digest(as_named)
    assert function_digest(_seeded(machine)) != function_digest(machine)
    assert type(_seeded(machine)()) is machine
