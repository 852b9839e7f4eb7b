"""Virtual time for a job's threads: quiet becomes a fact, and sleeps cost nothing.

A runtime that waits with a sleep, a poll or a join with a timeout is *quiet while it
sleeps*. A driver that waits for a quiet period then opens the next gate lets the
parked cleanup end before the sleep is over, and the early return that was about to
happen never shows. A :class:`VirtualClock` owns time for the threads of one job:

* **Whose time.** The threads the harness hands to the runtime (the thread that makes
  the ending call, the main thread while it builds the job: :meth:`VirtualClock.entered`)
  and every thread those start, transitively. Never the harness's own driver threads,
  pytest's or Hypothesis's: for them every patched function is the original.
* **Which time.** ``time.sleep``, ``time.monotonic``/``time.time``/``time.perf_counter``
  (and the copies ``threading`` and ``queue`` took of ``monotonic``), the timeouts of
  ``Condition.wait`` (so of ``Event.wait``, ``Queue.get``/``put``, ``Semaphore``,
  ``Barrier``) and of ``Thread.join``. Virtual time runs at the pace of real time and
  jumps ahead; it never runs slower, so a job the clock cannot see through still runs.
* **Quiet as a fact.** The clock knows, for each of the job's threads, whether it runs
  or is blocked in one of those waits (an untimed one, a timed one, or a gate of the
  harness, whose waits stay on real time). The job is *quiescent* when all of them are
  blocked: then nothing can happen until the driver acts, or until virtual time passes.
  :meth:`VirtualClock.settle` waits for that, jumps the clock to the earliest timed
  wait's deadline while there is one within ``patience`` virtual seconds, and returns
  once the job is quiescent with nothing due: a 50 ms sleep now ends before the driver
  opens the next gate, and a 1-second poll costs microseconds.
* **What it cannot see.** A thread blocked in C (a raw ``Lock.acquire`` under
  contention, a socket, ``SimpleQueue.get``) counts as running; the job then never looks
  quiescent and :meth:`settle` falls back to the wall-clock quiet period. So a target
  declares whether the clock suits it (``virtual_time = True``); the SAGE targets, whose
  pools block in C, keep the wall clock.

Waits are woken by the notifier marking the waiting thread as running *before* it
releases it, so the clock never sees a moment where every thread looks blocked while a
wake-up is in flight.
"""

from __future__ import annotations

import contextlib
import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["VirtualClock"]

_real_monotonic = time.monotonic
_real_time = time.time
_real_perf_counter = time.perf_counter
_real_sleep = time.sleep
_real_cond_wait = threading.Condition.wait
_real_join = threading.Thread.join
_real_start = threading.Thread.start
_real_threading_time = threading._time  # type: ignore[attr-defined]
_real_queue_time = queue.time  # type: ignore[attr-defined]

_local = threading.local()
_active: VirtualClock | None = None
_install_lock = threading.Lock()


def _current() -> VirtualClock | None:
    """The active clock, if the calling thread is one of its job's threads."""
    clock = _active
    if clock is not None and threading.current_thread() in clock._threads:
        return clock
    return None


def _in_real_section() -> bool:
    return getattr(_local, "real", 0) > 0


class _Wait:
    """One blocked wait of a job thread: what the clock sees, and how it is woken.

    It stands in a ``Condition``'s waiter list in place of the raw lock that
    ``Condition.wait`` would put there, so ``notify()`` calls :meth:`release`.
    """

    __slots__ = ("clock", "deadline", "done", "lock", "mutex", "notified", "thread", "virtual")

    def __init__(
        self, clock: VirtualClock, thread: threading.Thread, deadline: float | None, virtual: bool
    ) -> None:
        self.clock = clock
        self.thread = thread
        self.deadline = deadline
        self.virtual = virtual
        self.lock = threading.Lock()
        self.lock.acquire()
        self.mutex = threading.Lock()
        self.done = False
        self.notified = False

    def __lt__(self, other: _Wait) -> bool:  # for the heap of deadlines
        return (self.deadline or 0.0) < (other.deadline or 0.0)

    def release(self) -> None:
        """Wake the waiter as notified; ``RuntimeError`` if it was woken already (then
        ``Condition.notify`` passes on to the next waiter, as for a stale raw lock)."""
        self._wake(notified=True)

    def _wake(self, *, notified: bool) -> None:
        with self.mutex:
            if self.done:
                raise RuntimeError("release unlocked lock")
            self.done = True
            self.notified = notified
        self.clock._running(self)
        self.lock.release()

    def block(self) -> bool:
        """Block until notified (True) or timed out (False)."""
        while True:
            if self.deadline is None:
                got = self.lock.acquire()
            else:
                now = self.clock.now() if self.virtual else _real_monotonic()
                got = self.lock.acquire(True, max(0.0, self.deadline - now))
            if got:
                return self.notified
            with self.mutex:
                if self.done:
                    timed_out = False
                else:
                    self.done = timed_out = True
            if timed_out:
                self.clock._running(self)
                return False
            # Woken at the same moment: the waker releases the lock right after.
            self.lock.acquire()
            return self.notified


class VirtualClock:
    """The clock of one job's threads; see the module's docstring.

    Use as a context manager (``with VirtualClock() as clock:``): while it is active, the
    patched functions consult it for its threads. One clock is active at a time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._offset = 0.0
        #: The job's live threads -> the wait each is blocked in (None: running).
        self._threads: dict[threading.Thread, _Wait | None] = {}
        self._timed: list[_Wait] = []  # heap of virtual waits, by deadline
        self._joiners: dict[threading.Thread, list[_Wait]] = {}
        self._closed = False
        self.jumps = 0
        self.jumped = 0.0  # virtual seconds skipped in all
        self.settled = 0  # settles that reached quiescence
        self.fallbacks = 0  # settles that fell back to the wall clock

    # -- time ------------------------------------------------------------------------
    def now(self) -> float:
        """Virtual ``time.monotonic()``: real time plus every jump so far."""
        return _real_monotonic() + self._offset

    # -- membership ------------------------------------------------------------------
    def adopt(self, thread: threading.Thread) -> None:
        """Make a not yet started ``thread`` one of the job's (its waits run on this clock)."""
        with self._lock:
            if self._closed:
                return
            self._threads[thread] = None
        run = thread.run

        def run_and_report() -> None:
            try:
                run()
            finally:
                self._exited(thread)

        thread.run = run_and_report  # type: ignore[method-assign]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread counts as one of the job's while inside (the main thread
        building the job, say): the threads it starts are adopted."""
        me = threading.current_thread()
        with self._lock:
            already = me in self._threads
            if not already and not self._closed:
                self._threads[me] = None
        try:
            yield
        finally:
            if not already:
                self._exited(me)

    @staticmethod
    @contextlib.contextmanager
    def real_time() -> Iterator[None]:
        """The harness's own waits inside a job thread (a gate) keep real time; the
        clock still sees the thread as blocked while it waits."""
        _local.real = getattr(_local, "real", 0) + 1
        try:
            yield
        finally:
            _local.real -= 1

    def _exited(self, thread: threading.Thread) -> None:
        with self._changed:
            self._threads.pop(thread, None)
            joiners = self._joiners.pop(thread, [])
            self._changed.notify_all()
        for wait in joiners:
            with contextlib.suppress(RuntimeError):
                wait.release()

    # -- waits -----------------------------------------------------------------------
    def _blocked(self, wait: _Wait) -> None:
        with self._changed:
            if wait.thread in self._threads:
                self._threads[wait.thread] = wait
            if wait.virtual and wait.deadline is not None:
                heapq.heappush(self._timed, wait)
            self._changed.notify_all()

    def _running(self, wait: _Wait) -> None:
        with self._changed:
            if self._threads.get(wait.thread) is wait:
                self._threads[wait.thread] = None
            self._changed.notify_all()

    def _wait(self, deadline: float | None, *, enlist: Callable[[_Wait], None]) -> bool:
        """Block the calling job thread; ``enlist`` puts the wait where its waker finds it."""
        virtual = not _in_real_section()
        wait = _Wait(self, threading.current_thread(), deadline, virtual)
        if self._closed:
            wait.virtual = False
        enlist(wait)
        self._blocked(wait)
        return wait.block()

    def _deadline(self, timeout: float | None) -> float | None:
        if timeout is None:
            return None
        return (_real_monotonic() if _in_real_section() else self.now()) + timeout

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` for the job's threads: a timed wait nothing notifies."""
        if seconds <= 0:
            _real_sleep(0)
            return
        self._wait(self._deadline(seconds), enlist=lambda w: None)

    def condition_wait(self, cond: threading.Condition, timeout: float | None) -> bool:
        """``Condition.wait`` for the job's threads, as CPython's but with a :class:`_Wait`
        in the waiter list."""
        if not cond._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot wait on un-acquired lock")
        if timeout is not None and timeout <= 0:
            return bool(_real_cond_wait(cond, timeout))
        waiters = cond._waiters  # type: ignore[attr-defined]
        deadline = self._deadline(timeout)
        notified = False
        wait = _Wait(self, threading.current_thread(), deadline, not _in_real_section())
        waiters.append(wait)
        saved = cond._release_save()  # type: ignore[attr-defined]
        try:
            self._blocked(wait)
            notified = wait.block()
            return notified
        finally:
            cond._acquire_restore(saved)  # type: ignore[attr-defined]
            if not notified:
                with contextlib.suppress(ValueError):
                    waiters.remove(wait)

    def join(self, thread: threading.Thread, timeout: float | None) -> None:
        """``Thread.join`` for the job's threads, on a thread the clock adopted."""
        if thread is threading.current_thread():
            raise RuntimeError("cannot join current thread")
        deadline = self._deadline(timeout)
        wait = _Wait(self, threading.current_thread(), deadline, not _in_real_section())
        with self._lock:
            alive = thread in self._threads
            if alive:
                self._joiners.setdefault(thread, []).append(wait)
        if not alive:
            _real_join(thread, timeout)
            return
        self._blocked(wait)
        if wait.block():
            # Its run() returned: the thread ends in a moment.
            _real_join(thread, None if timeout is None else max(timeout, 1.0))

    def owns(self, thread: threading.Thread) -> bool:
        with self._lock:
            return thread in self._threads

    # -- the driver's side -----------------------------------------------------------
    def quiescent(self) -> bool:
        """Whether every thread of the job is blocked in a wait the clock sees."""
        with self._lock:
            return self._quiescent()

    def _quiescent(self) -> bool:
        return all(w is not None and not w.done for w in self._threads.values())

    def next_due(self) -> float | None:
        """The earliest deadline of a pending virtual-time wait (``None``: none)."""
        with self._lock:
            return self._next_due()

    def _next_due(self) -> float | None:
        while self._timed and self._timed[0].done:
            heapq.heappop(self._timed)
        return self._timed[0].deadline if self._timed else None

    def settle(
        self, *, patience: float, fallback: Callable[[], bool], timeout: float, max_jumps: int = 200
    ) -> bool:
        """Let the job run until it is quiescent with no timed wait due within
        ``patience`` virtual seconds, jumping the clock to each due deadline in turn.

        Where the job does not become quiescent within ``timeout`` real seconds (a thread
        blocked where the clock cannot see), ``fallback()`` decides (the wall-clock quiet
        period). Returns whether quiescence was reached.
        """
        horizon = self.now() + patience
        end = _real_monotonic() + timeout
        for _ in range(max_jumps + 1):
            with self._changed:
                if not self._changed.wait_for(
                    self._quiescent, max(0.0, min(timeout, end - _real_monotonic()))
                ):
                    self.fallbacks += 1
                    fallback()
                    return False
                due = self._next_due()
                if due is None or due > horizon:
                    self.settled += 1
                    return True
                fire = []
                jump = max(0.0, due - self.now())
                self._offset += jump
                self.jumps += 1
                self.jumped += jump
                now = self.now()
                while self._timed and (self._timed[0].done or self._timed[0].deadline <= now):  # type: ignore[operator]
                    w = heapq.heappop(self._timed)
                    if not w.done:
                        fire.append(w)
            for w in fire:
                with contextlib.suppress(RuntimeError):
                    w._wake(notified=False)
        return True

    # -- activation ------------------------------------------------------------------
    def __enter__(self) -> VirtualClock:
        global _active
        with _install_lock:
            stale = _active
        if stale is not None:
            # A job whose driver never closed its clock (an example abandoned midway):
            # its threads go back to real time.
            stale.close()
        with _install_lock:
            _install()
            _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop owning time: every pending timed wait is woken (timed out) and from now
        on the job's threads use real time. Idempotent."""
        global _active
        with self._changed:
            if self._closed:
                return
            self._closed = True
            pending = [w for w in self._timed if not w.done]
            self._timed.clear()
            self._changed.notify_all()
        for w in pending:
            with contextlib.suppress(RuntimeError):
                w._wake(notified=False)
        with _install_lock:
            if _active is self:
                _active = None
                _uninstall()


# -- the patched functions --------------------------------------------------------------
def _monotonic() -> float:
    clock = _current()
    if clock is None or _in_real_section():
        return _real_monotonic()
    return clock.now()


def _time() -> float:
    clock = _current()
    if clock is None or _in_real_section():
        return _real_time()
    return _real_time() + clock._offset


def _perf_counter() -> float:
    clock = _current()
    if clock is None or _in_real_section():
        return _real_perf_counter()
    return _real_perf_counter() + clock._offset


def _sleep(seconds: float) -> None:
    clock = _current()
    if clock is None or _in_real_section():
        _real_sleep(seconds)
    else:
        clock.sleep(seconds)


def _cond_wait(self: threading.Condition, timeout: float | None = None) -> bool:
    clock = _current()
    if clock is None:
        return bool(_real_cond_wait(self, timeout))
    return clock.condition_wait(self, timeout)


def _join(self: threading.Thread, timeout: float | None = None) -> None:
    clock = _current()
    if clock is None or not clock.owns(self):
        _real_join(self, timeout)
    else:
        clock.join(self, timeout)


def _start(self: threading.Thread) -> None:
    clock = _current()
    if clock is not None:
        clock.adopt(self)
    _real_start(self)


_PATCHES: list[tuple[Any, str, Any, Any]] = [
    (time, "monotonic", _monotonic, _real_monotonic),
    (time, "time", _time, _real_time),
    (time, "perf_counter", _perf_counter, _real_perf_counter),
    (time, "sleep", _sleep, _real_sleep),
    (threading, "_time", _monotonic, _real_threading_time),
    (queue, "time", _monotonic, _real_queue_time),
    (threading.Condition, "wait", _cond_wait, _real_cond_wait),
    (threading.Thread, "join", _join, _real_join),
    (threading.Thread, "start", _start, _real_start),
]


def _install() -> None:
    for owner, name, patched, _ in _PATCHES:
        setattr(owner, name, patched)


def _uninstall() -> None:
    for owner, name, _, real in _PATCHES:
        setattr(owner, name, real)
