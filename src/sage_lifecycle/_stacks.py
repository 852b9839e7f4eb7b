"""Thread stacks for hang reports: what every job thread is doing right now."""

from __future__ import annotations

import gc
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from types import FrameType

__all__ = ["format_thread_stacks", "still_alive"]

#: Thread names listed for one stack before "and N more".
_NAMES = 8
#: Characters of stacks in one report; a job of thousands of threads stays readable.
_LIMIT = 64_000


def format_thread_stacks(
    threads: Iterable[threading.Thread] | None = None, *, limit: int = _LIMIT
) -> str:
    """Format the current stack of each live thread in ``threads`` (all threads if None).

    Threads parked at the same place share one stack ("3 threads: a, b, c"), and the
    text stops near ``limit`` characters saying how many stacks it left out.
    """
    frames = current_frames()
    chosen = list(threading.enumerate() if threads is None else threads)
    entries: list[tuple[str, bool, str]] = []
    for t in chosen:
        frame = frames.get(t.ident) if t.ident is not None else None
        if frame is None or not t.is_alive():
            continue
        entries.append((t.name, t.daemon, "".join(traceback.format_stack(frame)).rstrip()))
    return render_stacks(entries, limit=limit)


#: Serializes the garbage collector switch in :func:`current_frames`.
_GC_SWITCH = threading.Lock()


def current_frames() -> dict[int, FrameType]:
    """``sys._current_frames()``, with the garbage collector off while it runs.

    CPython before 3.12 makes frame objects while holding the interpreter's thread list
    lock; a collection they set off can need that lock again, or run gc callbacks
    (Hypothesis registers one) that hand the GIL to a thread that needs it: every thread
    of the process then waits forever (CPython gh-106883, fixed in 3.12 by this same
    switch). Seen here once, on 3.11, in a search whose hung jobs report their stacks
    while the driver starts a thread.
    """
    with _GC_SWITCH:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return sys._current_frames()
        finally:
            if enabled:
                gc.enable()


def render_stacks(entries: Iterable[tuple[str, bool, str]], *, limit: int = _LIMIT) -> str:
    """Render ``(thread name, daemon, stack)`` entries, grouped by stack and capped."""
    groups: dict[str, list[tuple[str, bool]]] = {}
    for name, daemon, stack in entries:
        groups.setdefault(stack, []).append((name, daemon))
    if not groups:
        return "(no live threads)"
    parts: list[str] = []
    size = 0
    for shown, (stack, group) in enumerate(groups.items()):
        if len(group) == 1:
            name, daemon = group[0]
            head = f"--- thread {name!r} (daemon={daemon}) ---"
        else:
            names = ", ".join(repr(n) for n, _ in group[:_NAMES])
            more = f" and {len(group) - _NAMES} more" if len(group) > _NAMES else ""
            head = f"--- {len(group)} threads with this stack: {names}{more} ---"
        part = f"{head}\n{stack}"
        if parts and size + len(part) > limit:
            rest = list(groups.values())[shown:]
            parts.append(
                f"--- {len(rest)} more stacks ({sum(map(len, rest))} threads) left out ---"
            )
            break
        parts.append(part)
        size += len(part)
    return "\n".join(parts)


def still_alive(threads: Iterable[threading.Thread], grace: float) -> list[threading.Thread]:
    """Give ``threads`` ``grace`` seconds in all to end; the ones still alive after it."""
    chosen = list(threads)
    end = time.monotonic() + grace
    for t in chosen:
        t.join(max(0.0, end - time.monotonic()))
    return [t for t in chosen if t.is_alive()]
