"""The conformance suite as users run it: one command, a verdict per property."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_reference_passes_with_a_verdict_per_property(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "sage_lifecycle", "--lifecycle-conformance", "--hypothesis-profile=dev"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*lifecycle conformance: target reference*",
            "* topologies run",
            "cleanup-exactly-once  PASS",
            "no-early-return       PASS",
            "no-use-after-cleanup  PASS",
            "no-hang               PASS",
            "failure-isolation     PASS",
            "no-data-loss          PASS",
            "no-thread-leak        PASS",
            "white-box dispatcher  PASS",
        ]
    )


def test_a_mutant_fails_with_its_property_and_the_counterexample(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--lifecycle-target=mutant:pre_878",
        "--hypothesis-profile=dev",
        "-k",
        "TestLifecycleContract",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cleanup-exactly-once [[]job mutant:pre_878#*]: service 's0' was never cleaned up",
            "*target: mutant:pre_878*",
            "*service s0: setup ok, cleanup ok*",
            "*pipeline 0: source(1 items) -> sink()*",
            "*replay: run the same command again*",
            "*@reproduce_failure*",
            "*lifecycle conformance: target mutant:pre_878*",
            "cleanup-exactly-once  FAIL (counterexample above)",
            "no-early-return       FAIL (counterexample above)",
        ]
    )


def test_the_project_tests_are_not_collected_in_conformance_mode(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_mine(): raise AssertionError('must not run')")
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--hypothesis-profile=dev",
        "-k",
        "WhiteBox",
    )
    result.assert_outcomes(passed=1, deselected=1)


def test_a_users_adapter_is_run_and_a_broken_one_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        my_runtime="""
from sage_lifecycle.target import ReferenceTarget

class MyTarget(ReferenceTarget):
    name = "my-runtime"

class Broken:
    pass
"""
    )
    ok = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--hypothesis-profile=dev",
        "--lifecycle-target=my_runtime:MyTarget",
        "-k",
        "TestLifecycleContract",
    )
    ok.assert_outcomes(passed=1)
    ok.stdout.fnmatch_lines(["*lifecycle conformance: target my_runtime:MyTarget*"])
    broken = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--lifecycle-target=my_runtime:Broken",
    )
    assert broken.ret == pytest.ExitCode.USAGE_ERROR
    broken.stderr.fnmatch_lines(["*my_runtime:Broken*which is not a Target*"])


def test_an_unknown_target_is_a_usage_error_listing_the_choices(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "-p", "sage_lifecycle", "--lifecycle-conformance", "--lifecycle-target=sage-typo"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unknown lifecycle target 'sage-typo'; available: reference, mutant:pre_878, *"]
    )


def test_the_console_command_wraps_it(pytester: pytest.Pytester) -> None:
    command = Path(sys.executable).with_name("sage-lifecycle")  # installed beside python
    result = pytester.run(command, "--profile", "dev", "--", "-k", "WhiteBox")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*white-box dispatcher  PASS"])
