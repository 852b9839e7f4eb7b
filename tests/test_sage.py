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

FINDINGS = {
    # submit(autostop=True) returns when every task stopped; the service's cleanup runs
    # later, on a task thread (SAGE's wait loop checks the tasks before the services).
    "no-early-return": Topology(
        (ServiceSpec("s0"),), (PipelineSpec(items=2, sinks=(SinkSpec(calls=("s0",)),)),)
    ),
    # A service whose cleanup raises: the error is logged, never raised by submit().
    "failure-isolation/cleanup": Topology(
        (ServiceSpec("s0", cleanup="raises"),), (PipelineSpec(items=1),)
    ),
    # A map that raises on an item: the error is logged, submit() returns normally.
    "failure-isolation/task": Topology(
        (), (PipelineSpec(items=2, stages=(StageSpec(raises_on=0),)),)
    ),
    # A filter function is handed SAGE's internal StopSignal as if it were an item; the
    # resulting error is swallowed like any other task error.
    "failure-isolation/filter": Topology(
        (), (PipelineSpec(items=3, stages=(StageSpec("filter"),)),)
    ),
}

HOLDS = {
    "no services": Topology((), (PipelineSpec(items=3),)),
    "map, no services": Topology((), (PipelineSpec(items=3, stages=(StageSpec(),)),)),
    "a service never called": Topology((ServiceSpec("s0"),), (PipelineSpec(items=1),)),
}


@pytest.mark.parametrize("finding", sorted(FINDINGS))
def test_the_harness_keeps_finding_sages_violation(finding: str) -> None:
    found = check_topology(resolve_target("sage"), FINDINGS[finding])
    assert {v.property for v in found} == {finding.split("/")[0]}, found


@pytest.mark.parametrize("case", sorted(HOLDS))
def test_the_harness_keeps_passing_what_sage_does_right(case: str) -> None:
    assert check_topology(resolve_target("sage"), HOLDS[case]) == []
