"""The plugin as users run it: pytester sessions, options, marker, fixtures, reports."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

HELLO = """
import threading
import pytest
from sage_lifecycle.reference import BaseService, Dispatcher, SinkFunction

class Db(BaseService):
    def __init__(self, release=None):
        self.release = release
    def get(self, x):
        return x
    def cleanup(self):
        if self.release is not None:
            assert self.release.wait(10), "the test never released the cleanup"

class Uses(SinkFunction):
    def execute(self, data):
        self.call_service("db", data, method="get")
"""


def test_a_correct_job_passes_and_the_summary_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HELLO
        + """
def test_hello(lifecycle_env, lifecycle_trace):
    lifecycle_env.register_service("db", Db)
    lifecycle_env.from_batch([1, 2, 3]).sink(Uses)
    lifecycle_env.submit(autostop=True)
    assert any(e.kind.value == "wait.end" for e in lifecycle_trace.events())
"""
    )
    result = pytester.runpytest("-p", "sage_lifecycle")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["lifecycle: 1 test with 1 job checked against 7 properties: no violations in their traces"]
    )


def test_a_user_dispatcher_that_returns_early_fails_with_the_story_and_timeline(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        HELLO
        + """
class ReturnsWhenTasksStop(Dispatcher):
    def is_finished(self):
        return not self.tasks      # forgets the services still being cleaned

@pytest.mark.lifecycle(dispatcher=ReturnsWhenTasksStop)
def test_early(lifecycle_env):
    release = threading.Event()
    lifecycle_env.register_service("db", Db, release)
    lifecycle_env.from_batch([1, 2]).sink(Uses)
    lifecycle_env.submit(autostop=True)   # the cleanup is still parked on `release`
    release.set()
"""
    )
    result = pytester.runpytest_subprocess("-p", "sage_lifecycle")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*lifecycle contract violated: *no-early-return*",
            "no-early-return * submit() returned*cleanup of service 'db'*",
            "  property: the call that ends the job (submit(autostop=True); *",
            "  witnesses:",
            "*<Event #* wait.end 'submit'*",
            "timeline (* events, >> marks witnesses):",
            "*>>*wait.end*submit*",
            "*lifecycle: 1 test with 1 job checked against 7 properties: violations found (*"
            "no-early-return: 1*",
        ]
    )


def test_sage_before_878_fails_with_cleanup_exactly_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HELLO
        + """
from sage_lifecycle.mutants import MUTANTS

@pytest.mark.lifecycle(dispatcher=MUTANTS["pre_878"].dispatcher)
def test_hello(lifecycle_env):
    lifecycle_env.register_service("db", Db)
    lifecycle_env.from_batch([1]).sink(Uses)
    lifecycle_env.submit(autostop=True)

@pytest.mark.lifecycle(dispatcher=MUTANTS["pre_878"].dispatcher, properties=["no-hang"])
def test_only_hangs_checked(lifecycle_env):
    lifecycle_env.register_service("db", Db)
    lifecycle_env.from_batch([1]).sink(Uses)
    lifecycle_env.submit(autostop=True)
"""
    )
    result = pytester.runpytest_subprocess("-p", "sage_lifecycle")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*cleanup-exactly-once * service 'db' was never cleaned up",
            "*FAILED test_sage_before_878_fails_with_cleanup_exactly_once.py::test_hello*",
        ]
    )


def test_plugin_loads_with_autoload_disabled_only_when_asked(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        """
def test_env(lifecycle_env):
    lifecycle_env.from_batch([1]).sink(lambda x: None)
    lifecycle_env.submit(autostop=True)
"""
    )
    with_plugin = pytester.runpytest_subprocess("-p", "sage_lifecycle")
    with_plugin.assert_outcomes(passed=1)
    without = pytester.runpytest_subprocess()
    without.assert_outcomes(errors=1)
    without.stdout.fnmatch_lines(["*fixture 'lifecycle_env' not found*"])


def test_plugin_autoloads_from_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
def test_env(lifecycle_env):
    lifecycle_env.from_batch([1]).sink(lambda x: None)
    lifecycle_env.submit(autostop=True)
"""
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["lifecycle: 1 test with 1 job checked*no violations in their traces"]
    )


def test_tests_that_do_not_use_it_are_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import sys
def test_plain():
    assert "sage_lifecycle.reference" not in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("-p", "sage_lifecycle")
    result.assert_outcomes(passed=1)
    assert "lifecycle:" not in result.stdout.str()


def test_fixtures_markers_and_options_are_documented(pytester: pytest.Pytester) -> None:
    fixtures = pytester.runpytest("-p", "sage_lifecycle", "--fixtures")
    fixtures.stdout.fnmatch_lines(
        [
            "*fixtures defined from sage_lifecycle*",
            "lifecycle_trace -- *",
            "*The lifecycle trace of this test*",
            "lifecycle_env_factory -- *",
            "*Make jobs that are checked when the test ends.",
            "lifecycle_env -- *",
            "*A fresh job environment whose trace is checked at teardown.",
        ]
    )
    markers = pytester.runpytest("-p", "sage_lifecycle", "--markers")
    markers.stdout.fnmatch_lines(
        [
            "@pytest.mark.lifecycle(*, deadline=None, properties=None, dispatcher=None, "
            "target=None): *"
        ]
    )
    help_ = pytester.runpytest("-p", "sage_lifecycle", "--help")
    help_.stdout.fnmatch_lines(
        [
            "service and job lifecycle contract (sage_lifecycle):",
            "*--lifecycle-deadline=SECONDS*",
            "*--lifecycle-properties=IDS*",
            "*lifecycle_deadline (string):*",
            "*lifecycle_properties (string):*",
        ]
    )


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ["--lifecycle-deadline=soon"],
            "",
            "*Invalid lifecycle deadline 'soon' from --lifecycle-deadline: expected a positive"
            " number of seconds*",
        ),
        (
            [],
            "lifecycle_deadline = -1",
            "*Invalid lifecycle deadline '-1' from the lifecycle_deadline ini value*",
        ),
        (
            ["--lifecycle-deadline=1e300"],
            "",
            "*Invalid lifecycle deadline '1e300' from --lifecycle-deadline: expected a positive"
            " number of seconds up to 9.22e+09, for example --lifecycle-deadline=30",
        ),
        (
            [],
            "lifecycle_deadline = 9e99",
            "*Invalid lifecycle deadline '9e99' from the lifecycle_deadline ini value*up to*",
        ),
        (
            ["--lifecycle-conformance", "--lifecycle-deadline=0.05"],
            "",
            "*Invalid lifecycle deadline 0.05 for the conformance suite: below 0.5 s a correct "
            "runtime on a loaded machine can miss it (a false no-hang)*",
        ),
        (
            ["--lifecycle-conformance", "--lifecycle-deadline=1", "--lifecycle-hold=1"],
            "",
            "*Invalid lifecycle hold 1.0 s: it must be shorter than the deadline (1.0 s)*",
        ),
        (
            ["--lifecycle-hold=-0.1"],
            "",
            "*Invalid lifecycle hold '-0.1' from --lifecycle-hold: expected a positive number*",
        ),
        (
            ["--lifecycle-clock=virtual"],
            "",
            "*Invalid lifecycle clock 'virtual' from --lifecycle-clock: expected auto or wall, "
            "for example --lifecycle-clock=wall",
        ),
        (
            [],
            "lifecycle_clock = fast",
            "*Invalid lifecycle clock 'fast' from the lifecycle_clock ini value*",
        ),
        (
            ["--lifecycle-pct-depth=0"],
            "",
            "*Invalid lifecycle pct depth '0' from --lifecycle-pct-depth: expected a whole "
            "number from 1 to 5, for example --lifecycle-pct-depth=2",
        ),
        (
            [],
            "lifecycle_pct_depth = deep",
            "*Invalid lifecycle pct depth 'deep' from the lifecycle_pct_depth ini value*",
        ),
        (
            ["--lifecycle-schedule=L1.eNo"],
            "",
            "*--lifecycle-schedule replays a conformance run: add --lifecycle-conformance*",
        ),
        (
            ["--lifecycle-conformance", "--lifecycle-schedule=pct:3"],
            "",
            "*--lifecycle-schedule: schedule 'pct:3' is not one this harness wrote (they "
            "start with 'L1.'); copy the whole --lifecycle-schedule=... value from a failure "
            "report",
        ),
        (
            ["--lifecycle-conformance", "--lifecycle-schedule=L1.eNo", "--lifecycle-replay-runs=0"],
            "",
            "*Invalid lifecycle replay runs '0' from --lifecycle-replay-runs: expected a whole "
            "number from 1 to 10000*",
        ),
        (
            ["--lifecycle-target=mutant:nope"],
            "",
            "*Invalid lifecycle target from --lifecycle-target: unknown mutant 'nope'*",
        ),
        (
            ["--lifecycle-properties=no-early-return,cleanup-twice"],
            "",
            "*unknown lifecycle property 'cleanup-twice' from --lifecycle-properties; "
            "expected 'all' or a comma-separated list of: cleanup-exactly-once, *",
        ),
    ],
)
def test_bad_option_values_are_usage_errors_naming_value_and_fix(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "sage_lifecycle", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_marker_arguments_fail_the_test_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.lifecycle(deadlin=3)
def test_typo(lifecycle_env):
    pass

@pytest.mark.lifecycle(dispatcher=object)
def test_not_a_dispatcher(lifecycle_env):
    pass

@pytest.mark.lifecycle(properties="no-such")
def test_bad_property(lifecycle_trace):
    pass

@pytest.mark.lifecycle(properties=42)
def test_not_properties(lifecycle_env):
    pass

@pytest.mark.lifecycle(deadline=1e300)
def test_huge_deadline(lifecycle_env):
    pass
"""
    )
    result = pytester.runpytest("-p", "sage_lifecycle")
    result.assert_outcomes(errors=5)
    text = result.stdout.str()
    assert "Traceback" not in text
    assert "During handling" not in text
    assert text.count("unknown lifecycle property 'no-such'") == 1  # once, not chained
    result.stdout.fnmatch_lines(
        [
            "*lifecycle properties 42 from @pytest.mark.lifecycle on *test_not_properties "
            "(properties=...): expected 'all', a comma-separated string or a list of property "
            "ids, for example properties=?'no-hang'?",
            "*Invalid lifecycle deadline 1e+300 from @pytest.mark.lifecycle on "
            "*test_huge_deadline (deadline=...): expected a positive number of seconds up to "
            "9.22e+09*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.lifecycle on *test_typo: unknown argument(s) deadlin; expected "
            "deadline, dispatcher, properties, target*",
            "*dispatcher=<class 'object'> is not a subclass of "
            "sage_lifecycle.reference.Dispatcher*",
            "*unknown lifecycle property 'no-such' from @pytest.mark.lifecycle*",
        ]
    )


def test_jobs_left_running_or_never_submitted_fail_every_time(
    pytester: pytest.Pytester,
) -> None:
    # A job the test never ended did whatever teardown's stop let it do: a map that
    # raises on the first item fails or not depending on that race. So such a test fails
    # on its own account, the same way in every run, and the job is still stopped,
    # cleaned and checked. A job built and never submitted was checked for nothing.
    pytester.makepyfile(
        HELLO
        + """
import itertools
from sage_lifecycle.reference import BatchFunction

class Endless(BatchFunction):
    def __init__(self):
        self.n = itertools.count()
    def execute(self):
        return next(self.n)

def boom(x):
    raise ValueError("bad item")

@pytest.mark.parametrize("run", range(6))
def test_map_raises_never_waited(lifecycle_env, run):
    lifecycle_env.register_service("db", Db)
    lifecycle_env.from_batch([1, 2]).map(boom).sink(Uses)
    lifecycle_env.submit()

def test_left_running(lifecycle_env, lifecycle_trace):
    lifecycle_env.register_service("db", Db)
    lifecycle_env.from_batch(Endless).sink(Uses)
    lifecycle_env.submit()          # autostop=False, never stopped: the plugin stops it

def test_never_submitted(lifecycle_env):
    lifecycle_env.from_batch([1]).sink(lambda x: None)

def test_requested_but_unused(lifecycle_env):
    pass

class Broken(BaseService):
    def cleanup(self):
        raise OSError("cannot close")

def test_never_waited(lifecycle_env_factory):
    env = lifecycle_env_factory("broken")
    env.register_service("broken", Broken)
    env.from_batch([1]).sink(lambda x: None)
    env.submit()
"""
    )
    result = pytester.runpytest_subprocess("-p", "sage_lifecycle")
    result.assert_outcomes(passed=1, failed=9)
    text = result.stdout.str()
    assert text.count("was submitted without autostop and never ended") == 8
    result.stdout.fnmatch_lines(
        [
            "*job 'test_left_running#1' was submitted without autostop and never ended, so "
            "what it did depends on when teardown stopped it; end it in the test with "
            "env.submit(autostop=True), env.stop() or env.close()",
            "*job 'test_never_submitted#1' was built but never submitted, so nothing of it "
            "was checked; end the test with env.submit(autostop=True)",
            "*jobs ended with failures the test never waited for (closed at teardown):",
            "*JobFailed: job 'broken#1' finished with 1 failure(s)*",
            "lifecycle: 10 tests with 10 jobs checked against 7 properties: no violations in "
            "their traces; 9 jobs never submitted or never ended",
        ]
    )


def test_a_hang_fails_with_no_hang_and_the_thread_stacks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HELLO
        + """
RELEASE = threading.Event()

@pytest.mark.lifecycle(deadline=0.2)
def test_stuck(lifecycle_env):
    lifecycle_env.register_service("db", Db, RELEASE)
    lifecycle_env.from_batch([1]).sink(Uses)
    try:
        lifecycle_env.submit(autostop=True)
    finally:
        RELEASE.set()
"""
    )
    result = pytester.runpytest_subprocess("-p", "sage_lifecycle")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*JobHangError: job 'test_stuck#*': submit() did not finish within its deadline "
            "of 0.2 s*",
            "*--- thread 'test_stuck#*/service:db'*",
            "*Captured lifecycle call*",
            "no-hang * submit() did not return within its deadline of 0.2 s",
        ]
    )


def test_other_plugins_can_implement_the_checked_hook(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
SEEN = []

def pytest_lifecycle_checked(item, events, violations):
    SEEN.append((item.name, len(events) > 0, len(violations)))

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"checked hook saw: {SEEN}")
"""
    )
    pytester.makepyfile(
        """
def test_env(lifecycle_env):
    lifecycle_env.from_batch([1]).sink(lambda x: None)
    lifecycle_env.submit(autostop=True)
"""
    )
    result = pytester.runpytest("-p", "sage_lifecycle")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["checked hook saw: [('test_env', True, 0)]"])
