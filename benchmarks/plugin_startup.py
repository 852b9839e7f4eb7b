"""What loading the plugin adds to pytest start-up, measured side by side in one run.

Runs ``pytest --collect-only`` on one plain test file, alternating between the plugin
blocked (``-p no:sage_lifecycle``) and loaded (``-p sage_lifecycle``), and reports the
median of each and the difference (DESIGN goal: at most 30 ms).

    python benchmarks/plugin_startup.py --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "test_plain.py").write_text("def test_plain():\n    assert True\n")
        blocked: list[float] = []
        loaded: list[float] = []
        for _ in range(args.runs):
            blocked.append(timed(["-p", "no:sage_lifecycle"], cwd))
            loaded.append(timed(["-p", "sage_lifecycle"], cwd))
    b, l_ = statistics.median(blocked), statistics.median(loaded)
    print(f"pytest --collect-only, median of {args.runs} runs each (whole-process noise is")
    print("tens of ms: read the in-process import figure below for the plugin's own cost)")
    print(f"plugin blocked: {b:7.1f} ms")
    print(f"plugin loaded:  {l_:7.1f} ms")
    print(f"added by the plugin: {l_ - b:+.1f} ms ({l_ / b:.3f}x)")
    print(f"in-process import of what the plugin loads at start-up: {import_cost():.1f} ms")


IMPORT_PROBE = """
import time, pytest
t = time.perf_counter()
import sage_lifecycle, sage_lifecycle.contract, sage_lifecycle.hookspecs
print((time.perf_counter() - t) * 1000)
"""


def import_cost() -> float:
    """Median over fresh interpreters of importing the plugin and its start-up modules."""
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", IMPORT_PROBE], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(10)
    ]
    return statistics.median(samples)


if __name__ == "__main__":
    main()
