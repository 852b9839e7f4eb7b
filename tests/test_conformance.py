"""The conformance suite as users run it: one command, a verdict per property."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from helpers import verdict_rows
from sage_lifecycle import PROPERTIES

pytest_plugins = ["pytester"]

# Whole conformance runs in subprocesses: .ci/run runs them (-m slow).
pytestmark = pytest.mark.slow

#: The first word of each row of the verdict table.
ROW_NAMES = (*PROPERTIES, "white-box")


def test_reference_passes_with_a_verdict_per_property(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--hypothesis-profile=dev",
        "--hypothesis-seed=0",  # dev is not derandomized: the same draws every run
    )
    result.assert_outcomes(passed=8)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*lifecycle conformance: target reference*",
            "* topologies run in 7 searches, one per property*",
            "cleanup-exactly-once  PASS     * topologies, * exercised it",
            "no-early-return       PASS     *",
            "no-use-after-cleanup  PASS     *",
            "no-hang               PASS     *",
            "failure-isolation     PASS     *",
            "no-data-loss          PASS     *",
            "no-thread-leak        PASS     *",
            "white-box dispatcher  PASS",
        ]
    )


def test_virtual_time_catches_an_early_return_that_hides_behind_a_sleep(
    pytester: pytest.Pytester,
) -> None:
    """sleeps_for_cleanups returns 50 ms after its tasks stopped, cleanup or not: on the
    virtual clock the sleep ends while the cleanup is parked. The header says which clock
    ran, and --lifecycle-clock=wall switches it off."""
    args = [
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--lifecycle-target=mutant:sleeps_for_cleanups",
        "--hypothesis-profile=ci",
        "--lifecycle-properties=no-early-return",
    ]
    virtual = pytester.runpytest_subprocess(*args)
    virtual.stdout.fnmatch_lines(
        [
            "*lifecycle conformance: target mutant:sleeps_for_cleanups*",
            "clock: virtual (the job's sleeps, polls and timed waits jump when it is quiet); "
            "schedules: PCT of depth 2 or random, drawn per job",
            "no-early-return       FAIL     *",
        ]
    )
    # The header is what is checked here: a short search is enough.
    wall = pytester.runpytest_subprocess(
        *args,
        "--lifecycle-clock=wall",
        "--lifecycle-properties=no-hang",
        "--hypothesis-profile=dev",
        "--hypothesis-seed=0",
    )
    wall.stdout.fnmatch_lines(["clock: wall (a gate opens after 0.005 s of quiet)"])


def test_a_mutant_fails_with_its_property_and_the_counterexample(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--lifecycle-target=mutant:pre_878",
        "--hypothesis-profile=dev",
        "--hypothesis-seed=0",  # dev is not derandomized: the same draws every run
        "--lifecycle-properties=cleanup-exactly-once,no-early-return",
    )
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_contract?cleanup-exactly-once?*",
            "*cleanup-exactly-once [[]job mutant:pre_878#*]: service 's0' was never cleaned up*",
            "*target: mutant:pre_878*",
            "*service s0: setup ok, cleanup ok*",
            "*pipeline 0: source(1 items) -> sink()*",
            "*replay: run the same command again*",
            "*@reproduce_failure*",
            "*lifecycle conformance: target mutant:pre_878*",
            "* topologies run in 2 searches*",
            "cleanup-exactly-once  FAIL     service 's0' was never cleaned up; counterexample "
            "above, under test_contract[[]cleanup-exactly-once[]]*",
            "no-early-return       PASS     *",
            "white-box dispatcher  FAIL*",
        ]
    )
    assert "no-hang" not in result.stdout.str().split("lifecycle conformance")[-1]


def test_the_project_tests_are_not_collected_in_conformance_mode(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_mine(): raise AssertionError('must not run')")
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--hypothesis-profile=dev",
        "--hypothesis-seed=0",  # dev is not derandomized: the same draws every run
        "-k",
        "white_box",
    )
    result.assert_outcomes(passed=1, deselected=7)
    # A search that did not run is no verdict: the table says so, and the exit code agrees.
    result.stdout.fnmatch_lines(["no-hang               NOT RUN  (its search was not run*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_users_adapter_is_run_and_a_broken_one_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        my_runtime="""
from sage_lifecycle.reference_target import ReferenceTarget

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
        "--hypothesis-seed=0",  # dev is not derandomized: the same draws every run
        "--lifecycle-target=my_runtime:MyTarget",
        "--lifecycle-properties=no-hang",
    )
    ok.assert_outcomes(passed=2)  # a ReferenceTarget subclass: the white box runs too
    ok.stdout.fnmatch_lines(["*lifecycle conformance: target my_runtime:MyTarget*"])
    broken = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--lifecycle-target=my_runtime:Broken",
    )
    assert broken.ret == pytest.ExitCode.USAGE_ERROR
    broken.stderr.fnmatch_lines(["*my_runtime:Broken*which is not a Target*"])


def test_a_failure_nobody_injected_is_shown_beside_the_verdict_and_fails_the_run(
    pytester: pytest.Pytester,
) -> None:
    """A runtime whose service calls fail on their own: no-hang still holds (its row says
    PASS on what was checked), but the row names the unexplained failure, the test shows
    its story, and the run fails: it is never passed over."""
    pytester.makepyfile(
        flaky_link="""
from sage_lifecycle.reference import Dispatcher
from sage_lifecycle.reference_target import ReferenceTarget

class DropsCalls(Dispatcher):
    def call_service(self, caller, name, *args, **kwargs):
        raise ConnectionResetError(f"link to {name} dropped")

class Target(ReferenceTarget):
    name = "flaky-link"

    def __init__(self):
        super().__init__(DropsCalls)
"""
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--hypothesis-profile=dev",
        "--hypothesis-seed=0",  # dev is not derandomized: the same draws every run
        "--lifecycle-target=flaky_link:Target",
        "--lifecycle-properties=no-hang",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*no-hang: PASS",
            "*Beside the verdict, * example(s) ended in a failure nobody injected*",
            "*unexplained failure: p*.s* failed with ConnectionResetError: link to s* dropped*",
            "*>>*task.error*ConnectionResetError*",
            "no-hang *PASS ** topologies, * exercised it; and * ended in a failure nobody "
            "injected (p*failed with ConnectionResetError*; story under test_contract?no-hang?)",
        ]
    )


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
    result = pytester.run(
        command, "--profile", "dev", "--properties", "no-hang", "--", "--hypothesis-seed=0"
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["no-hang  * PASS *", "*white-box dispatcher  PASS"])
    listed = pytester.run(command, "--list-targets")
    listed.stdout.fnmatch_lines(["reference *", "mutant:pre_878 * breaks cleanup-exactly-once*"])
    version = pytester.run(command, "--version")
    version.stdout.fnmatch_lines(["sage-lifecycle *.*"])


HOSTILE_INI = """
[pytest]
addopts = -n 2 -W error -x
timeout = 1
filterwarnings = error
"""

VACUOUS = """
from sage_lifecycle.reference_target import ReferenceTarget

class BuildsNothing(ReferenceTarget):
    name = "builds-nothing"
    def build(self, probes):
        from sage_lifecycle.reference import LocalEnvironment
        self.env = LocalEnvironment("empty")
        self.env.from_batch([]).sink(lambda x: None)

class BuildRaises(ReferenceTarget):
    name = "build-raises"
    def build(self, probes):
        raise ConnectionError("cluster unreachable")

class ReturnsBeforeStart(ReferenceTarget):
    name = "returns-before-start"
    def wait(self):
        import threading
        threading.Thread(target=super().wait, daemon=True).start()
"""


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("BuildsNothing", "ERROR *the wait completed, but the job never ran as built*"),
        ("BuildRaises", "ERROR *failed to build the job: ConnectionError: cluster unreachable*"),
        ("ReturnsBeforeStart", "FAIL *submit() returned before*"),
    ],
)
def test_a_target_that_never_ran_the_job_gets_no_pass(
    pytester: pytest.Pytester, target: str, expected: str
) -> None:
    pytester.makepyfile(vacuous=VACUOUS)
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--hypothesis-profile=dev",
        "--hypothesis-seed=0",  # dev is not derandomized: the same draws every run
        f"--lifecycle-target=vacuous:{target}",
        "--lifecycle-properties=cleanup-exactly-once,no-early-return",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"no-early-return  *{expected}"])
    if target != "ReturnsBeforeStart":  # that one's cleanups do run: a PASS is earned there
        assert "cleanup-exactly-once  PASS" not in result.stdout.str()


NOTHING_EXERCISED = """
from hypothesis import strategies as st

from sage_lifecycle.machines import black_box
from sage_lifecycle.topology import Topology

# Every search draws the empty job: it runs and ends, and no service is ever called.
black_box._search_topologies = lambda properties, modes: st.just(Topology())
"""


def test_a_property_nothing_exercised_is_not_exercised_never_pass(
    pytester: pytest.Pytester,
) -> None:
    """Jobs ran and held, but none called a service: no-use-after-cleanup was never put
    to the test, and the table says so instead of PASS, in the JUnit file too."""
    pytester.makeconftest(NOTHING_EXERCISED)
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--hypothesis-profile=ci",
        "--lifecycle-properties=no-use-after-cleanup,no-hang",
        "--junitxml=junit.xml",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "no-use-after-cleanup  NOT EXERCISED  * topologies ran, none put the property "
            "to the test*",
            "*   0  a service that the job called had its cleanup begin",
            "no-hang               PASS     * topologies, * exercised it",
        ]
    )
    assert "no-use-after-cleanup  PASS" not in result.stdout.str()
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="lifecycle.verdict.no-use-after-cleanup" value="NOT EXERCISED' in junit


def test_the_command_ignores_the_callers_config_and_runs_with_autoload_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = Path(sys.executable).with_name("sage-lifecycle")
    args = ["--profile", "ci", "--target", "reference", "--properties", "no-hang"]
    clean = pytester.run(command, *args)
    assert not Path(pytester.path, ".hypothesis").exists()  # ci keeps nothing behind
    pytester.makefile(".ini", pytest=HOSTILE_INI)
    pytester.makeconftest("raise SystemExit('the caller's conftest must not load')")
    hostile = pytester.run(command, *args)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    autoload_off = pytester.run(command, *args)
    assert clean.ret == hostile.ret == autoload_off.ret == pytest.ExitCode.OK
    table = verdict_rows(clean.stdout.str())
    assert table == ["no-hang PASS", "white-box dispatcher PASS"]
    assert verdict_rows(hostile.stdout.str()) == table
    assert verdict_rows(autoload_off.stdout.str()) == table
    # ci is derandomized: the same topologies, so the same counts, however it was run.
    counts = re.findall(r"no-hang +PASS +(\d+) topologies", clean.stdout.str())
    assert counts
    assert re.findall(r"no-hang +PASS +(\d+) topologies", hostile.stdout.str()) == counts
    assert re.findall(r"no-hang +PASS +(\d+) topologies", autoload_off.stdout.str()) == counts


def test_under_xdist_the_verdicts_and_counts_are_the_same(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    args = [
        "-p",
        "sage_lifecycle",
        "-p",
        "no:cacheprovider",
        "--lifecycle-conformance",
        "--hypothesis-profile=ci",
        "--lifecycle-target=mutant:double_cleanup",
        "--lifecycle-properties=cleanup-exactly-once,no-hang,no-data-loss",
    ]
    alone = pytester.runpytest_subprocess(*args)
    spread = pytester.runpytest_subprocess(*args, "-n", "2")
    assert alone.ret == spread.ret == pytest.ExitCode.TESTS_FAILED

    def rows(out: str) -> list[str]:
        # Every verdict, and the topology count of every PASS: a passing search runs the
        # profile's whole budget. A FAIL row's count and reproduction rate are the
        # target's timing (which step the double cleanup showed at, how much shrinking
        # that left), and so is how many topologies exercised a property; the total line
        # adds the FAIL rows' counts up, so it is left out too.
        table = out.split("lifecycle conformance")[-1].splitlines()
        body = [line for line in table if line.split(" ", 1)[0] in ROW_NAMES]
        kept = []
        for line in body:
            name, verdict, rest = line.replace("white-box dispatcher", "white-box").split(
                maxsplit=2
            )
            count = re.sub(r", \d+ exercised it", "", rest.split(";")[0])
            kept.append(f"{name} {verdict} {count}" if verdict == "PASS" else f"{name} {verdict}")
        return kept

    assert rows(spread.stdout.str()) == rows(alone.stdout.str())
    verdicts = [row.split()[:2] for row in rows(alone.stdout.str())]
    assert verdicts == [
        ["cleanup-exactly-once", "FAIL"],
        ["no-hang", "PASS"],
        ["no-data-loss", "PASS"],
        ["white-box", "FAIL"],
    ]


NOISY = """
from sage_lifecycle.mutants import MUTANTS
from sage_lifecycle.reference_target import ReferenceTarget

class Noisy(ReferenceTarget):
    name = "noisy"
    def __init__(self):
        super().__init__(MUTANTS["pre_878"].dispatcher)
    def wait(self):
        for k in range(30):
            print(f"runtime chatter {k}")
        super().wait()
"""


def test_what_the_runtime_prints_leaves_the_report_but_its_tail(
    pytester: pytest.Pytester,
) -> None:
    """A failing search's report keeps the last 20 lines the runtime printed during it,
    not pytest's whole captured output."""
    pytester.makepyfile(noisy=NOISY)
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        "--hypothesis-profile=ci",
        "--lifecycle-target=noisy:Noisy",
        "--lifecycle-properties=cleanup-exactly-once",
    )
    out = result.stdout.str()
    assert "cleanup-exactly-once  FAIL" in out, out
    assert "Captured stdout call" not in out
    result.stdout.fnmatch_lines(["*runtime console output (last 20 of * lines)*"])
    assert out.count("runtime chatter") == 20
    assert "runtime chatter 29" in out  # the tail: the last lines printed
