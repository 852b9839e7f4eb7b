"""Gates: points where a probe parks until the driver opens (or fails) it.

Gates replace sleeps. A cleanup parked at a closed gate cannot end, so a wait that
returns while it is parked has returned early, deterministically. Every wait on a gate
has a deadline and fails with the stacks of all threads instead of hanging.

Example::

    gate = Gate("cleanup:db")
    ...                     # in the service: gate.pass_through()
    gate.wait_parked(timeout=5)
    gate.open()
"""

from __future__ import annotations

import threading

from ._stacks import format_thread_stacks
from .clock import VirtualClock

__all__ = ["Gate", "GateFailed", "GateTimeout"]


class GateTimeout(AssertionError):
    """A wait on a gate outlived its deadline; the message holds every thread's stack."""


class GateFailed(RuntimeError):
    """Raised in the thread passing a gate that the driver failed."""


class Gate:
    """A one-shot barrier with a name: closed until ``open()`` or ``fail()``."""

    def __init__(self, name: str, *, timeout: float = 30.0) -> None:
        self.name = name
        self.timeout = timeout
        self._cond = threading.Condition()
        self._state = "closed"  # closed -> open | failed
        self._error: BaseException | None = None
        self._parked = 0
        self._passed = 0

    def __repr__(self) -> str:
        return f"<Gate {self.name!r} {self._state} parked={self._parked} passed={self._passed}>"

    @property
    def is_open(self) -> bool:
        return self._state != "closed"

    @property
    def parked(self) -> int:
        """How many threads are waiting at the gate now."""
        with self._cond:
            return self._parked

    def open(self) -> None:
        """Let every parked and future thread through."""
        with self._cond:
            if self._state == "closed":
                self._state = "open"
            self._cond.notify_all()

    def fail(self, error: BaseException | None = None) -> None:
        """Make every parked and future thread raise ``error`` (a ``GateFailed``)."""
        with self._cond:
            if self._state == "closed":
                self._state = "failed"
                self._error = error or GateFailed(f"gate {self.name!r} failed by the driver")
            self._cond.notify_all()

    def pass_through(self) -> None:
        """Park until the gate opens; raise if it fails or the deadline passes."""
        with self._cond:
            self._parked += 1
            self._cond.notify_all()
            try:
                # The harness's own wait: real time even on a job thread whose clock is
                # virtual (the clock still sees the thread as blocked here).
                with VirtualClock.real_time():
                    opened = self._cond.wait_for(lambda: self._state != "closed", self.timeout)
                if not opened:
                    raise GateTimeout(
                        f"gate {self.name!r} stayed closed for {self.timeout} s\n"
                        + format_thread_stacks()
                    )
            finally:
                self._parked -= 1
            self._passed += 1
            self._cond.notify_all()
            if self._state == "failed":
                assert self._error is not None
                raise self._error

    def wait_parked(self, count: int = 1, *, timeout: float | None = None) -> None:
        """Block until ``count`` threads are parked at the gate, or fail with stacks."""
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            if not self._cond.wait_for(lambda: self._parked >= count, limit):
                raise GateTimeout(
                    f"expected {count} thread(s) parked at gate {self.name!r} within "
                    f"{limit} s, found {self._parked}\n" + format_thread_stacks()
                )
