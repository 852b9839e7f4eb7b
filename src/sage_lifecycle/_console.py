"""The target's console output: kept in a log file, out of the reports.

A real runtime prints and logs a lot (SAGE's legacy line printed about 8,700 lines in
one ``dev`` search). In conformance mode, whatever the runtime printed while a search
ran (pytest's captured stdout, stderr and log sections) is moved from the test's report
into this process's log file, and the report keeps its last lines only. Runtimes whose
loggers write to the terminal themselves (SAGE 0.3) route them to the same file.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

__all__ = ["append", "log_file"]

_lock = threading.RLock()
_dir: list[Path] = []


def log_file() -> Path:
    """This process's console log (its directory is removed when the process ends)."""
    with _lock:
        if not _dir:
            root = Path(tempfile.mkdtemp(prefix="sage-lifecycle-logs-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            _dir.append(root)
        return _dir[0] / "console.log"


def append(title: str, text: str) -> None:
    """Add ``text`` to the log under a ``title`` line."""
    with _lock, log_file().open("a", encoding="utf-8") as f:
        f.write(f"----- {title} -----\n{text.rstrip()}\n")
