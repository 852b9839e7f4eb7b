"""Thread stacks for hang reports: what every job thread is doing right now."""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Iterable

__all__ = ["format_thread_stacks"]


def format_thread_stacks(threads: Iterable[threading.Thread] | None = None) -> str:
    """Format the current stack of each live thread in ``threads`` (all threads if None)."""
    frames = sys._current_frames()
    chosen = list(threading.enumerate() if threads is None else threads)
    parts: list[str] = []
    for t in chosen:
        frame = frames.get(t.ident) if t.ident is not None else None
        if frame is None or not t.is_alive():
            continue
        stack = "".join(traceback.format_stack(frame)).rstrip()
        parts.append(f"--- thread {t.name!r} (daemon={t.daemon}) ---\n{stack}")
    return "\n".join(parts) if parts else "(no live threads)"
