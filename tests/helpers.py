"""Helpers the tests share: what a test needs installed, the SAGE group, threads with
deadlines, and reading the verdict table."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sage_lifecycle._stacks import format_thread_stacks
from sage_lifecycle.trace import Event, EventKind

#: Generous: only a hang ever reaches it.
DEADLINE = 30.0


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# The SAGE lines are optional extras, so their tests skip with a reason where an extra is
# missing (CI installs both).
needs_current = pytest.mark.skipif(
    not installed("sage.runtime"), reason="needs the [sage] extra (isage >= 0.3)"
)
needs_kernel = pytest.mark.skipif(
    not installed("sage.kernel"), reason="needs the [sage-kernel] extra (isage-kernel)"
)

#: The tests that run a SAGE line form one pytest-xdist group, so one worker runs them
#: all: never two SAGE processes at once (the legacy line binds a fixed TCP port).
ON_SAGE = pytest.mark.xdist_group("sage")


def first(events: tuple[Event, ...], kind: EventKind, subject: str | None = None) -> Event:
    """The first event of ``kind`` (on ``subject``); fails the test if there is none."""
    for e in events:
        if e.kind is kind and (subject is None or e.subject == subject):
            return e
    raise AssertionError(f"no {kind.value} {subject or ''} in the trace")


def run_in_thread(fn: Callable[[], Any], name: str) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``fn`` on a started daemon thread; what it raises lands in the list."""
    errors: list[BaseException] = []

    def body() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread, errors


def join_or_fail(thread: threading.Thread, timeout: float = DEADLINE) -> None:
    """Join ``thread`` within ``timeout``, else fail the test with every thread's stack."""
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{thread.name} still running after {timeout} s\n{format_thread_stacks()}")


def verdict_rows(output: str) -> list[str]:
    """The conformance table's rows (row name and verdict), without counts and timings."""
    rows = output.split("lifecycle conformance")[-1].splitlines()[2:]
    found = (
        re.match(r"(\S+(?: dispatcher)?) +(PASS|FAIL|ERROR|NOT RUN|NOT EXERCISED)\b", r)
        for r in rows
    )
    return [f"{m[1]} {m[2]}" for m in found if m]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``sage-lifecycle ARGS`` in a fresh interpreter, run from ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "sage_lifecycle.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(cwd),
    )
