"""Project-wide test configuration: the Hypothesis profiles, ``ci`` under CI, and how the
suite shares its pytest-xdist workers (``-n auto``: one more than the CPUs).

Choose another profile with ``--hypothesis-profile=dev|ci|deep``.

The tests of one ``xdist_group`` run on one worker. ``--dist loadgroup`` tells its
scheduler a test's group by appending ``@group`` to the node id a worker reports; from
pytest 9.2 on a node id can no longer be rewritten that way, and loadgroup silently
spreads a group over every worker (pytest-xdist issue #1386). The SAGE tests must not be
spread: never two SAGE processes at once (the legacy line binds a fixed TCP port). So the
scheduler below groups by module or test function too, from :data:`GROUPS`
(``tests/test_scheduling.py`` checks it against the marks), and a file lock serialises
the SAGE tests wherever they run, should the groups break again (a wait past its deadline
fails, naming the test that holds the lock).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from filelock import FileLock, Timeout
from hypothesis import settings
from xdist.scheduler import LoadGroupScheduling

from sage_lifecycle.profiles import register_profiles

register_profiles()
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _standard_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the pytest sessions the tests start on a standard terminal, whatever the caller's.

    pytest repeats a failure's message in full in its short summary when the terminal is
    wide enough to hold it, and always when it believes it runs on CI (``CI`` or
    ``BUILD_NUMBER`` set). A test counting how often a message appears would count
    pytest's copy too, so the sessions the tests start get 80 columns and no CI markers.
    This project's own profile choice (above) has already read ``CI``.
    """
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)


#: Test module (or one test function, ``module::name``) → its xdist group: every test
#: there carries that group's mark. A function's entry wins over its module's.
GROUPS = {
    "tests/test_sage.py": "sage",
    "tests/test_fixture_targets.py": "sage",
    # The README's other blocks run on the reference only: they need no SAGE worker.
    "tests/test_readme.py::test_the_sage_suite_example_passes_on_the_reference"
    "_and_shows_what_sage_does_wrong": "sage",
    "tests/test_reports.py": "pre_878_report",
}

#: How long a SAGE test waits for another worker's SAGE test before it fails (below
#: pytest-timeout's 120 s, so the message is this one).
SAGE_LOCK_DEADLINE = 90.0


class GroupScheduling(LoadGroupScheduling):  # type: ignore[misc]  # xdist: untyped
    """loadgroup, with the group :data:`GROUPS` gives where the node id has none."""

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.rfind("@") > nodeid.rfind("]"):
            return str(super()._split_scope(nodeid))
        return group_of(nodeid) or nodeid


def group_of(nodeid: str) -> str | None:
    """The group of the test with ``nodeid`` by its function, else by its module
    (``None``: ungrouped)."""
    function = nodeid.split("[", 1)[0]
    return GROUPS.get(function) or GROUPS.get(nodeid.split("::", 1)[0])


def marked_groups(item: pytest.Item) -> set[str]:
    """The groups an item's ``xdist_group`` marks name."""
    return {
        str(m.args[0] if m.args else m.kwargs.get("name", "default"))
        for m in item.iter_markers("xdist_group")
    }


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") == "loadgroup":
        return GroupScheduling(config, log)
    return None


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker more than the CPUs this process may use. The SAGE group's
    worker spends most of its time waiting on SAGE's own polls (the legacy line's are a
    second long) while the others compute; with one worker per CPU, a CPU sat idle under
    that wait. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides where it is set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    usable = getattr(os, "sched_getaffinity", None)
    return (len(usable(0)) if usable else os.cpu_count() or 1) + 1


@pytest.fixture(autouse=True)
def _one_sage_test_at_a_time(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    if "sage" not in marked_groups(request.node) or "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # The workers' base temp dirs share a parent: the run's own, so runs never collide.
    lock_file = tmp_path_factory.getbasetemp().parent / "sage.lock"
    holder = lock_file.with_suffix(".holder")
    lock = FileLock(lock_file)
    try:
        lock.acquire(timeout=SAGE_LOCK_DEADLINE)
    except Timeout:
        held_by = holder.read_text(encoding="utf-8") if holder.exists() else "another worker"
        pytest.fail(
            f"another SAGE test ({held_by}) held the SAGE lock for {SAGE_LOCK_DEADLINE:g} s: "
            "two workers got SAGE tests, so the xdist groups are broken (see conftest.py)",
            pytrace=False,
        )
    try:
        holder.write_text(f"{os.environ['PYTEST_XDIST_WORKER']}: {request.node.nodeid}", "utf-8")
        yield
    finally:
        lock.release()
