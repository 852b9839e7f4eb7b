"""Wall time of the ``ci`` conformance profile, side by side in one run, per target.

    python benchmarks/ci_wall_time.py --targets reference sage sage-flownet sage-kernel
    python benchmarks/ci_wall_time.py --targets reference --clocks auto wall

Each target runs in its own process (``sage-lifecycle --profile ci``), one after the
other on the same machine; the verdict lines are printed with the times. ``--clocks``
runs each target on each driver clock (``auto``: virtual time and schedules where the
target declares it; ``wall``: the wall-clock quiet period, the harness before it owned
time); a target without virtual time runs once, its ``auto`` being ``wall``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(target: str, profile: str, clock: str) -> tuple[float, int, list[str]]:
    command = Path(sys.executable).with_name("sage-lifecycle")
    with tempfile.TemporaryDirectory() as cwd:  # no example database carried over
        start = time.perf_counter()
        done = subprocess.run(
            [str(command), "--target", target, "--profile", profile, "--clock", clock],
            cwd=cwd,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
    lines = done.stdout.splitlines()
    verdict = lines[next(i for i, x in enumerate(lines) if "lifecycle conformance:" in x) :]
    return elapsed, done.returncode, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets", nargs="+", default=["reference", "sage", "sage-flownet", "sage-kernel"]
    )
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--clocks", nargs="+", default=["auto"], choices=["auto", "wall"])
    args = parser.parse_args()
    from sage_lifecycle.resolve import resolve_target

    results = []
    for target in args.targets:
        virtual = bool(getattr(resolve_target(target)(), "virtual_time", False))
        for clock in args.clocks if virtual else args.clocks[:1]:
            name = f"{target} --clock {clock}" if virtual else f"{target} (wall)"
            results.append((name, *run(target, args.profile, clock)))
    for target, elapsed, code, verdict in results:
        print(f"{target}: {elapsed:7.1f} s wall, exit {code}")
        for line in verdict:
            print(f"    {line}")
    base = results[0][1]
    for target, elapsed, _, _ in results[1:]:
        print(f"{target} / {results[0][0]}: {elapsed / base:.1f}x")


if __name__ == "__main__":
    main()
