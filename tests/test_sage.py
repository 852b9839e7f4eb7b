"""The harness on the real SAGE runtime (isage-kernel): what it found is kept here.

Each finding is a regression test of the harness: it must keep finding SAGE's real
violations, and keep passing what SAGE does right. Findings on isage-kernel 0.2.5.3,
each shrunk to its smallest topology by the conformance suite.
"""

from __future__ import annotations

import sys

import pytest

from sage_lifecycle.machines import check_topology
from sage_lifecycle.target import TargetError, resolve_target
from sage_lifecycle.topology import PipelineSpec, ServiceSpec, SinkSpec, StageSpec, Topology


def test_without_sage_the_target_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sage.kernel.api.local_environment", None)
    with pytest.raises(TargetError, match=r"pip install 'pytest-sage-lifecycle\[sage\]'"):
        resolve_target("sage")


sage = pytest.importorskip("sage.kernel.api.local_environment", reason="needs the [sage] extra")

FINDINGS: dict[str, tuple[Topology, set[str]]] = {
    # submit(autostop=True) returns when every task stopped; the service's cleanup runs
    # later, on a task thread (SAGE's wait loop checks the tasks before the services).
    "early return with a called service": (
        Topology((ServiceSpec("s0"),), (PipelineSpec(items=2, sinks=(SinkSpec(calls=("s0",)),)),)),
        {"no-early-return"},
    ),
    # A service whose setup raises is constructed but never cleaned up, and the error
    # never reaches the caller. (The wait is not to blame: no early return.)
    "setup raises": (
        Topology((ServiceSpec("s0", setup="raises"),), (PipelineSpec(items=1),)),
        {"cleanup-exactly-once", "failure-isolation"},
    ),
    # A service whose cleanup raises: the error is logged, never raised by submit().
    "cleanup raises": (
        Topology((ServiceSpec("s0", cleanup="raises"),), (PipelineSpec(items=1),)),
        {"failure-isolation"},
    ),
    # A map that raises on an item: the error is logged, submit() returns normally.
    "map raises": (
        Topology((), (PipelineSpec(items=2, stages=(StageSpec(raises_on=0),)),)),
        {"failure-isolation"},
    ),
    # A filter function is handed SAGE's internal StopSignal as if it were an item; the
    # resulting error is swallowed like any other task error.
    "filter gets StopSignal": (
        Topology((), (PipelineSpec(items=3, stages=(StageSpec("filter"),)),)),
        {"failure-isolation"},
    ),
}

HOLDS = {
    "no services": Topology((), (PipelineSpec(items=3),)),
    "map, no services": Topology((), (PipelineSpec(items=3, stages=(StageSpec(),)),)),
    "a service never called": Topology((ServiceSpec("s0"),), (PipelineSpec(items=1),)),
}


@pytest.mark.parametrize("finding", sorted(FINDINGS))
def test_the_harness_keeps_finding_sages_violation(finding: str) -> None:
    topology, expected = FINDINGS[finding]
    found = check_topology(resolve_target("sage"), topology)
    assert {v.property for v in found} == expected, found


@pytest.mark.parametrize("case", sorted(HOLDS))
def test_the_harness_keeps_passing_what_sage_does_right(case: str) -> None:
    assert check_topology(resolve_target("sage"), HOLDS[case]) == []
