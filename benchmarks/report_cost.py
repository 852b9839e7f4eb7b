"""What writing the failure reports costs a ``ci`` run, measured side by side in one run.

Runs ``sage-lifecycle --profile ci`` on a target with failing searches, alternating
between reports off and ``--report DIR`` (a JSON record and an HTML timeline per
counterexample), and reports the median wall time of each and the ratio (the goal: at
most 1.10x).

    python benchmarks/report_cost.py --runs 3 --target mutant:pre_878
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
    done = subprocess.run(
        [sys.executable, "-m", "sage_lifecycle.cli", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"sage-lifecycle {' '.join(args)} exited {done.returncode}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target", default="mutant:pre_878")
    parser.add_argument("--properties", default=None)
    args = parser.parse_args()
    common = ["--target", args.target, "--profile", "ci"]
    if args.properties:
        common += ["--properties", args.properties]
    off: list[float] = []
    on: list[float] = []
    written = 0
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for i in range(args.runs):
            off.append(timed(common, cwd))
            out = cwd / f"reports-{i}"
            on.append(timed([*common, "--report", str(out)], cwd))
            written = len(list(out.glob("*.json")))
    a, b = statistics.median(off), statistics.median(on)
    print(f"sage-lifecycle {' '.join(common)}: median of {args.runs} runs each, alternating")
    print(f"reports off:      {a:7.2f} s")
    print(f"--report DIR:     {b:7.2f} s  ({written} JSON + {written} HTML files per run)")
    print(f"ratio: {b / a:.3f}x (goal: at most 1.10x)")


if __name__ == "__main__":
    main()
