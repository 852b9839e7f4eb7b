"""pytest-timeout is the outer bound, for both of its methods, and Ctrl-C ends a run fast.

Each case runs a real pytest in a subprocess on a job that would hang for 40 s, and
checks the test's wall time and that the failure carries the lifecycle story and the
stacks of the job's threads.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# Real pytest runs in subprocesses that wait out timeouts: .ci/run runs them (-m slow).
pytestmark = pytest.mark.slow

TIMEOUT = 3.0
SLACK = 1.0  # the bound: the test ends within a second of its timeout

JOBS = """
import threading
from sage_lifecycle.reference import BaseService

class Stuck(BaseService):
    def cleanup(self):
        threading.Event().wait(40)

def test_hung_wait(lifecycle_env):
    lifecycle_env.register_service("stuck", Stuck)
    lifecycle_env.from_batch([1]).sink(lambda x: None)
    lifecycle_env.submit(autostop=True)

def test_slow_body(lifecycle_env):
    lifecycle_env.register_service("stuck", Stuck)
    lifecycle_env.from_batch([1]).sink(lambda x: None)
    lifecycle_env.submit()
    threading.Event().wait(40)
"""


def run(pytester: pytest.Pytester, method: str, *args: str) -> pytest.RunResult:
    """pytest with the plugin under ``--timeout=3`` and the given method, timing each phase."""
    return pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        f"--timeout={TIMEOUT}",
        f"--timeout-method={method}",
        "--durations=0",
        "--durations-min=0",
        *args,
    )


def contract_call_seconds(output: str) -> float:
    """The first conformance search's call time, from ``--durations=0``."""
    calls = re.findall(r"^([\d.]+)s call .*test_contract", output, re.M)
    assert calls, output
    return float(calls[0])


def durations(output: str) -> float:
    """The test's own wall time (setup + call + teardown) from ``--durations=0``."""
    return sum(float(m) for m in re.findall(r"^([\d.]+)s (?:setup|call|teardown) ", output, re.M))


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_a_hung_wait_fails_with_no_hang_inside_the_timeout(
    pytester: pytest.Pytester, method: str
) -> None:
    # The wait's deadline is cut to fit the timeout, so the job's own no-hang verdict,
    # with its stacks, comes first, and the teardown still fits before the timeout.
    pytester.makepyfile(test_jobs=JOBS)
    result = run(
        pytester,
        method,
        "test_jobs.py::test_hung_wait",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*no-hang ?job test_hung_wait#1?: submit() did not return within its deadline of 1.* s",
            "*--- thread 'test_hung_wait#1/service:stuck' (daemon=True) ---",
            "*the lifecycle deadline of job test_hung_wait#1 was cut from 30 s to 1.* s to "
            "fit the test's pytest-timeout",
        ]
    )
    assert "Timeout (>" not in result.stdout.str()  # the lifecycle deadline came first
    assert durations(result.stdout.str()) <= TIMEOUT


def test_the_signal_timeout_fails_with_the_story_so_far(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_jobs=JOBS)
    result = run(
        pytester,
        "signal",
        "test_jobs.py::test_slow_body",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Failed: Timeout (>3.0s) from pytest-timeout.",
            "*Captured lifecycle call*",
            "*test_slow_body ran out of its pytest-timeout; the lifecycle story so far:",
            "no contract violation so far",
            "*stacks of the job's threads:",
            "--- thread 'test_slow_body#1/service:stuck' (daemon=True) ---",
        ]
    )
    assert "never returned" not in result.stdout.str()  # the test ran out, not the job
    assert durations(result.stdout.str()) <= TIMEOUT + SLACK


def test_the_thread_timeout_tells_the_story_before_it_ends_the_process(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_jobs=JOBS)
    pytester.makeconftest(
        """
import time, pathlib
def pytest_runtest_setup(item):
    pathlib.Path("begun").write_text(repr(time.monotonic()))
"""
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "sage_lifecycle",
        f"--timeout={TIMEOUT}",
        "--timeout-method=thread",
        "test_jobs.py::test_slow_body",
    )
    ended = time.monotonic()
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*+ lifecycle +*",
            "Timeout: test_*.py::test_slow_body ran out of its pytest-timeout of 3 s; the "
            "lifecycle story so far:",
            "*stacks of the job's threads:",
            "--- thread 'test_slow_body#1/service:stuck' (daemon=True) ---",
            "*+ Timeout +*",  # then pytest-timeout's own dump of every thread
        ]
    )
    begun = float(Path(pytester.path, "begun").read_text())
    assert ended - begun <= TIMEOUT + SLACK


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_a_conformance_search_stops_itself_inside_the_timeout_with_no_verdict(
    pytester: pytest.Pytester, method: str
) -> None:
    result = run(
        pytester,
        method,
        "--lifecycle-conformance",
        "--lifecycle-properties=no-hang",
        "--hypothesis-profile=deep",
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "no-hang * ERROR    pytest-timeout's 3 s ended the search after * topologies; "
            "give the conformance tests a longer --timeout or a smaller --hypothesis-profile*",
            "white-box dispatcher  ERROR    pytest-timeout's 3 s ended the white-box search",
        ]
    )
    out = result.stdout.str()
    assert "Timeout (>" not in out  # the search stopped before pytest-timeout had to fire
    assert contract_call_seconds(out) <= TIMEOUT


HANGING_ADAPTER = """
import threading
from sage_lifecycle.reference_target import ReferenceTarget

class Hangs(ReferenceTarget):
    name = "hangs"
    def build(self, probes):
        threading.Event().wait(40)
"""


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_a_search_stuck_in_the_adapter_ends_at_the_timeout_with_what_ran(
    pytester: pytest.Pytester, method: str
) -> None:
    pytester.makepyfile(hanging_adapter=HANGING_ADAPTER)
    result = run(
        pytester,
        method,
        "--lifecycle-conformance",
        "--lifecycle-target=hanging_adapter:Hangs",
        "--lifecycle-properties=no-hang",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == 1
    out = result.stdout.str()
    if method == "signal":  # pytest-timeout fails the test; its replay is not waited for
        result.stdout.fnmatch_lines(
            ["no-hang * ERROR    pytest-timeout's 3 s ended the search after 1 topologies*"]
        )
        assert contract_call_seconds(out) <= TIMEOUT + SLACK
    else:  # pytest-timeout ends the process: the lifecycle story comes first
        result.stdout.fnmatch_lines(
            [
                "*+ lifecycle +*",
                "lifecycle conformance so far:",
                "*no-hang: cut by pytest-timeout after 1 topologies, 0 violation(s) seen",
                "*+ Timeout +*",
            ]
        )


def test_ctrl_c_ends_a_hung_test_at_once_with_the_story(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_jobs=JOBS.replace(  # the cleanup says when it hangs, so Ctrl-C finds it hung
            "threading.Event().wait(40)", 'print("READY", flush=True); threading.Event().wait(40)'
        )
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-s",
            "-p",
            "sage_lifecycle",
            "test_jobs.py::test_hung_wait",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env={**os.environ, "PYTEST_ADDOPTS": ""},
    )
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "READY" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with process:
        try:
            assert ready.wait(60), "the test never reached its wait:\n" + "".join(lines)
            process.send_signal(signal.SIGINT)
            sent = time.monotonic()
            process.wait(timeout=30)
            took = time.monotonic() - sent
            reader.join(30)
        finally:
            process.kill()
    out = "".join(lines)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "interrupted (KeyboardInterrupt); the lifecycle story so far:" in out
    assert "submit() of job 'test_hung_wait#1' was still waiting" in out
    assert "--- thread 'test_hung_wait#1/service:stuck' (daemon=True) ---" in out, out
    # Our part is bounded by half a second; pytest's own shutdown (Hypothesis imports
    # itself in its terminal summary) takes about one more. 40 s would be the hang.
    assert took < 5, f"Ctrl-C took {took:.1f} s to end the run"
