"""Gates: what a parked thread sees when the driver opens or fails its gate, or nobody
does before the deadline (the failure then carries every thread's stack)."""

from __future__ import annotations

import threading
from types import FrameType

import pytest

from helpers import join_or_fail, run_in_thread
from sage_lifecycle.gates import Gate, GateFailed, GateTimeout

SHORT = 0.05  # a gate nobody opens: the deadline is the point, so keep it short


def test_open_lets_the_parked_and_every_later_thread_through() -> None:
    gate = Gate("cleanup:db")
    thread, errors = run_in_thread(gate.pass_through, "parked")
    gate.wait_parked(1)
    assert gate.parked == 1
    assert not gate.is_open
    gate.open()
    join_or_fail(thread)
    assert errors == []
    assert gate.parked == 0
    gate.pass_through()  # a later thread does not park
    gate.fail()  # failing an open gate changes nothing
    gate.pass_through()


def test_fail_raises_in_the_parked_and_every_later_thread() -> None:
    gate = Gate("end:p0")
    threads = [run_in_thread(gate.pass_through, f"parked-{i}") for i in range(2)]
    gate.wait_parked(2)
    gate.fail()
    for thread, errors in threads:
        join_or_fail(thread)
        assert [type(e) for e in errors] == [GateFailed]
        assert str(errors[0]) == "gate 'end:p0' failed by the driver"
    with pytest.raises(GateFailed):
        gate.pass_through()
    gate.open()  # opening a failed gate changes nothing
    with pytest.raises(GateFailed):
        gate.pass_through()


def test_fail_with_an_error_raises_that_error() -> None:
    gate = Gate("cleanup:db")
    gate.fail(ConnectionError("cluster unreachable"))
    with pytest.raises(ConnectionError, match="cluster unreachable"):
        gate.pass_through()


def test_a_gate_nobody_opens_fails_at_its_deadline_with_every_threads_stack() -> None:
    gate = Gate("cleanup:stuck", timeout=SHORT)
    with pytest.raises(GateTimeout) as info:
        gate.pass_through()
    text = str(info.value)
    assert text.startswith(f"gate 'cleanup:stuck' stayed closed for {SHORT} s\n")
    assert "MainThread" in text
    assert "pass_through" in text
    assert gate.parked == 0  # the thread left the gate


def test_waiting_for_threads_that_never_park_fails_with_the_count_and_stacks() -> None:
    gate = Gate("item:p0#1")
    with pytest.raises(GateTimeout) as info:
        gate.wait_parked(2, timeout=SHORT)
    text = str(info.value)
    assert text.startswith(
        f"expected 2 thread(s) parked at gate 'item:p0#1' within {SHORT} s, found 0\n"
    )
    assert "wait_parked" in text


def test_stacks_are_taken_with_the_collector_off_and_it_is_left_as_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before 3.12 a gc callback run inside sys._current_frames() can deadlock the process
    (it holds the thread list lock); the stacks of a gate timeout are taken with gc off."""
    import gc
    import sys

    from sage_lifecycle._stacks import current_frames

    seen: list[bool] = []
    real = sys._current_frames

    def spy() -> dict[int, FrameType]:
        seen.append(gc.isenabled())
        return real()

    monkeypatch.setattr(sys, "_current_frames", spy)
    assert gc.isenabled()
    with pytest.raises(GateTimeout, match="MainThread"):
        Gate("cleanup:stuck", timeout=SHORT).pass_through()
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()
    try:
        assert threading.get_ident() in current_frames()
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
    assert seen == [False, False]
