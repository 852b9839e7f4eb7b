"""The suite's own xdist scheduling (the project's conftest.py): groups stay on one worker."""

from __future__ import annotations

import pytest
from conftest import GROUPS, GroupScheduling, group_of, marked_groups


def test_every_grouped_test_is_in_its_modules_group(request: pytest.FixtureRequest) -> None:
    """GROUPS and the xdist_group marks say the same: a module is grouped in GROUPS exactly
    when each of its tests carries that group's mark."""
    seen: set[str] = set()
    for item in request.session.items:
        module = item.nodeid.split("::", 1)[0]
        marks = marked_groups(item)
        expected = {GROUPS[module]} if module in GROUPS else set()
        assert marks == expected, f"{item.nodeid}: marks {marks}, GROUPS says {expected}"
        seen.add(module)
    assert "tests/test_scheduling.py" in seen  # the walk saw this run's items


def test_the_scheduler_keeps_a_group_together() -> None:
    split = GroupScheduling._split_scope
    dummy: GroupScheduling = GroupScheduling.__new__(GroupScheduling)
    assert split(dummy, "tests/test_sage.py::test_a[x]") == "sage"
    assert split(dummy, "tests/test_readme.py::test_b") == "sage"
    assert split(dummy, "tests/test_reports.py::test_c") == "pre_878_report"
    # Ungrouped tests are each their own unit, as under --dist load.
    assert split(dummy, "tests/test_gates.py::test_d") == "tests/test_gates.py::test_d"
    # Where xdist still writes the group into the node id, that wins.
    assert split(dummy, "tests/test_gates.py::test_e@other") == "other"
    assert group_of("tests/test_sage.py::t") == "sage"
    assert group_of("tests/test_mutants.py::t") is None
