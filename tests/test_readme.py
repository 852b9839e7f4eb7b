"""The README's code blocks run here, so an example cannot rot.

The set-up block is run word for word by ``.ci/run``; every other shell command is run
with ``--collect-only`` appended (which checks its options, target and profile without
spending minutes on a search), every Python block as the test file it is, and the
violation it shows is produced by running that same block on a buggy dispatcher.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ON_SAGE, needs_current

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


SAGE_SUITE = "## Using it in SAGE's own test suite"


def _sections() -> tuple[str, str]:
    """The README but the SAGE-suite section, and that section (its blocks run apart)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SAGE_SUITE)
    end = text.index("\n## ", start + 1)
    return text[:start] + text[end:], text[start:end]


def blocks(language: str, *, sage_suite: bool = False) -> list[str]:
    rest, suite = _sections()
    text = suite if sage_suite else rest
    setup = text.index("## Set-up") if not sage_suite else -1000
    return [
        m.group(2)
        for m in FENCE.finditer(text)
        if m.group(1) == language and not (language == "sh" and m.start() < setup + 200)
    ]


def commands(*, sage_suite: bool = False) -> list[str]:
    lines = [
        line.strip() for block in blocks("sh", sage_suite=sage_suite) for line in block.splitlines()
    ]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readme_has_the_blocks_this_file_runs() -> None:
    assert len(blocks("python")) == 1
    assert any(c.startswith("sage-lifecycle") for c in commands())
    assert any(c.startswith("pytest") for c in commands())
    assert len(blocks("python", sage_suite=True)) == 2  # the conftest line, the test module
    assert len(commands(sage_suite=True)) == 2


@pytest.mark.parametrize("command", commands())
def test_every_readme_command_is_accepted(command: str, tmp_path: Path) -> None:
    argv = shlex.split(command)
    tool, args = argv[0], argv[1:]
    if tool == "sage-lifecycle":
        run = [sys.executable, "-m", "sage_lifecycle.cli", *args, "--", "--collect-only", "-q"]
    else:
        assert tool == "pytest", f"README command {command!r}: unexpected program"
        run = [sys.executable, "-m", "pytest", *args, "--collect-only", "-q"]
    done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    # Collecting only runs no search: the table must say so, never PASS.
    assert "lifecycle conformance: target" in out, out
    assert "NOT RUN" in out, out
    assert " PASS " not in out, out
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, out


def test_the_readme_example_passes_and_its_violation_is_what_a_bug_prints(
    pytester: pytest.Pytester,
) -> None:
    (example,) = blocks("python")
    pytester.makepyfile(test_example=example)
    passed = pytester.runpytest_subprocess("-p", "sage_lifecycle")
    passed.assert_outcomes(passed=1)

    # The same test on SAGE's pre-#878 dispatcher, which never cleans the services up
    # (the output block under the example shows this failure).
    pytester.makeconftest(
        """
import pytest
from sage_lifecycle.mutants import MUTANTS

def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.lifecycle(dispatcher=MUTANTS["pre_878"].dispatcher))
"""
    )
    failed = pytester.runpytest_subprocess("-p", "sage_lifecycle")
    failed.assert_outcomes(failed=1)
    text = README.read_text(encoding="utf-8")
    shown = text[text.index("A violation fails the test") :].split("```")[1].strip().splitlines()
    out = failed.stdout.str()
    for line in shown:  # every line the README shows, but the elided ones and numbers
        if line.strip() != "...":
            assert _shape(line) in _shape(out), f"README line not in the output: {line!r}"


def _shape(text: str) -> str:
    """The text with every number blanked: times, event numbers and the event count.

    They differ from run to run: how many events the trace holds when the test ends
    depends on how far the job's threads got after the early return.
    """
    return re.sub(r"\s+", " ", re.sub(r"\d+(?:\.\d+)?", "N", text))


@ON_SAGE
@needs_current
def test_the_sage_suite_example_passes_on_the_reference_and_shows_what_sage_does_wrong(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    conftest, example = blocks("python", sage_suite=True)
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_index=example)
    # Autoload off: the conftest line is what loads the plugin, as the README says.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    on_reference, on_sage = commands(sage_suite=True)
    assert "--lifecycle-target" not in on_reference
    assert "--lifecycle-target=sage" in on_sage

    def run(command: str) -> pytest.RunResult:
        tool, *args = shlex.split(command)
        assert tool == "pytest", f"README command {command!r}: unexpected program"
        return pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args)

    passed = run(on_reference)
    passed.assert_outcomes(passed=2)
    failed = run(on_sage)
    failed.assert_outcomes(failed=2)
    rest = README.read_text(encoding="utf-8").split(SAGE_SUITE)[1]
    shown = rest[rest.index("and both fail") :].split("```")[1].strip().splitlines()
    out = failed.stdout.str()
    for line in shown:
        if line.strip() != "...":
            assert _shape(line) in _shape(out), f"README line not in the output: {line!r}"


# -- the package index's description (docs/description.md) --------------------------------

DESCRIPTION = README.parent / "docs" / "description.md"


def test_the_package_description_is_the_index_page_and_holds_up_there() -> None:
    """What the package index shows: no development set-up, no link into this repository,
    and the same example as the README (which the test above runs)."""
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    project = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["readme"] == "docs/description.md"
    text = DESCRIPTION.read_text(encoding="utf-8")
    assert "pip install -e" not in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert all(link.startswith("https://") for link in links), links
    (example,) = [b for lang, b in FENCE.findall(text) if lang == "python"]
    assert example == blocks("python")[0]
    commands_shown = [
        line.split("#")[0].strip()
        for lang, block in FENCE.findall(text)
        if lang == "sh"
        for line in block.splitlines()
    ]
    installs = [c for c in commands_shown if c.startswith("pip install")]
    assert installs, "the description says how to install"
    extras = set(project["project"]["optional-dependencies"])
    for command in installs:
        for extra in re.findall(r"\[([\w-]+)\]", command):
            assert extra in extras, command
