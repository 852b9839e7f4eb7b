"""The suite's own xdist scheduling (the project's conftest.py): groups stay on one worker."""

from __future__ import annotations

import ast

import pytest
from conftest import GROUPS, GroupScheduling, group_of, marked_groups


def test_every_grouped_test_carries_its_groups_mark(request: pytest.FixtureRequest) -> None:
    """GROUPS and the xdist_group marks say the same: a test is grouped in GROUPS (by its
    function or its module) exactly when it carries that group's mark."""
    seen: set[str] = set()
    for item in request.session.items:
        marks = marked_groups(item)
        group = group_of(item.nodeid)
        expected = {group} if group else set()
        assert marks == expected, f"{item.nodeid}: marks {marks}, GROUPS says {expected}"
        seen.add(item.nodeid.split("[", 1)[0])
    assert "tests/test_scheduling.py::test_the_scheduler_keeps_a_group_together" in seen


def test_every_groups_entry_names_a_test_module_or_function(
    request: pytest.FixtureRequest,
) -> None:
    """A renamed module or test would silently lose its group: each key must still exist."""
    root = request.config.rootpath
    for key in GROUPS:
        module, _, function = key.partition("::")
        assert (root / module).is_file(), f"GROUPS[{key!r}]: no module {module}"
        if function:
            tree = ast.parse((root / module).read_text(encoding="utf-8"))
            defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            assert function in defined, f"GROUPS[{key!r}]: {module} defines no {function}"


def test_the_scheduler_keeps_a_group_together() -> None:
    split = GroupScheduling._split_scope
    dummy: GroupScheduling = GroupScheduling.__new__(GroupScheduling)
    assert split(dummy, "tests/test_sage.py::test_a[x]") == "sage"
    assert split(dummy, "tests/test_fixture_targets.py::test_b") == "sage"
    readme = "tests/test_readme.py::test_the_sage_suite_example_passes_on_the_reference"
    assert split(dummy, readme + "_and_shows_what_sage_does_wrong") == "sage"
    assert split(dummy, "tests/test_readme.py::test_every_readme_command_is_accepted[x]") == (
        "tests/test_readme.py::test_every_readme_command_is_accepted[x]"
    )
    assert split(dummy, "tests/test_reports.py::test_c") == "pre_878_report"
    # Ungrouped tests are each their own unit, as under --dist load.
    assert split(dummy, "tests/test_gates.py::test_d") == "tests/test_gates.py::test_d"
    # Where xdist still writes the group into the node id, that wins.
    assert split(dummy, "tests/test_gates.py::test_e@other") == "other"
    assert group_of("tests/test_sage.py::t") == "sage"
    assert group_of("tests/test_mutants.py::t") is None
