"""The state machines: the reference passes, every mutant is caught by the property its
documentation names (under the loaded profile: ``ci`` in CI), pre-#878 shrinks to the
smallest job, and the white-box machine holds on the reference dispatcher."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from sage_lifecycle.machines import DispatcherMachine, LifecycleMachine, stats
from sage_lifecycle.mutants import MUTANTS
from sage_lifecycle.report import LifecycleViolation
from sage_lifecycle.target import resolve_target
from sage_lifecycle.topology import PipelineSpec, ServiceSpec, Topology

NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


def test_reference_passes_the_black_box_machine() -> None:
    before = stats.examples
    run_state_machine_as_test(LifecycleMachine, settings=settings(database=None))
    assert stats.examples - before >= settings().max_examples // 2


@pytest.mark.timeout(900)  # about two minutes on 2 cores; the suite's default is 120 s
def test_reference_passes_the_deep_profile() -> None:
    """At least 2,000 topologies against the reference, whatever profile the suite runs."""
    before = stats.examples
    run_state_machine_as_test(
        LifecycleMachine, settings=settings(settings.get_profile("deep"), database=None)
    )
    assert stats.examples - before >= 2000


def test_reference_dispatcher_passes_the_white_box_machine() -> None:
    run_state_machine_as_test(DispatcherMachine, settings=settings(database=None))


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_mutant_is_caught_by_the_property_it_breaks(name: str) -> None:
    mutant = MUTANTS[name]
    machine = LifecycleMachine.for_property(mutant.breaks)
    machine.target_factory = staticmethod(resolve_target(f"mutant:{name}"))
    # A hang is a bug here: a short deadline finds it quickly. No false alarm is possible
    # because every mutant is buggy; the reference's suite uses the generous default.
    machine.deadline = 2.0 if mutant.breaks == "no-hang" else 30.0
    # Always the ci profile (derandomized, 200 topologies), whatever profile is loaded:
    # the rarer bugs need more than dev's 50 draws, and CI must see the same draws.
    ci = settings(settings.get_profile("ci"), phases=NO_SHRINK, database=None)
    with pytest.raises(LifecycleViolation) as info:
        run_state_machine_as_test(machine, settings=ci)
    assert {v.property for v in info.value.violations} == {mutant.breaks}


def test_pre_878_counterexample_shrinks_to_the_smallest_job_and_tells_the_story() -> None:
    class Pre878(LifecycleMachine):
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
    assert {"cleanup-exactly-once", "no-early-return"} <= {v.property for v in violations}
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

    class Double(DispatcherMachine):
        dispatcher_class = Early

    with pytest.raises((AssertionError, LifecycleViolation)):
        run_state_machine_as_test(Double, settings=settings(phases=NO_SHRINK, database=None))
