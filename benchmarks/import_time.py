"""What importing a library module costs, this tree against another, side by side in one run.

Runs ``python -X importtime -c "import <module>"`` in fresh interpreters, alternating
between this checkout's ``src`` and another tree's (``--before``, for example an earlier
commit unpacked with ``git archive <rev> | tar -x -C /tmp/before``), and reports the median
cumulative import time of the module, and whether (and at what cost) it imported pytest.

    python benchmarks/import_time.py --before /tmp/before/src --runs 15
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"
MODULES = ("sage_lifecycle", "sage_lifecycle.trace", "sage_lifecycle.reference")
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def measure(src: Path, module: str) -> tuple[float, float | None]:
    """(cumulative ms of ``module``, cumulative ms of pytest or ``None`` if not imported)."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    total: float | None = None
    pytest_ms: float | None = None
    for m in LINE.finditer(done.stderr):
        cumulative, indent, name = int(m[2]) / 1000, len(m[3]), m[4]
        if name == module and indent == 1:
            total = cumulative
        if name == "pytest":
            pytest_ms = cumulative
    assert total is not None, done.stderr[-2000:]
    return total, pytest_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other tree's src")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    print(f"median of {args.runs} fresh interpreters each, alternating; ms")
    print(f"{'module':<28} {'before':>8} {'after':>8} {'ratio':>7}  pytest imported (ms)")
    for module in MODULES:
        samples: dict[str, list[float]] = {name: [] for name in trees}
        pytest_cost: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, src in trees.items():
                total, pytest_ms = measure(src, module)
                samples[name].append(total)
                if pytest_ms is not None:
                    pytest_cost[name].append(pytest_ms)
        before, after = (statistics.median(samples[n]) for n in trees)
        shown = ", ".join(
            f"{n}: {statistics.median(c):.0f}" if c else f"{n}: no" for n, c in pytest_cost.items()
        )
        print(f"{module:<28} {before:8.1f} {after:8.1f} {after / before:7.3f}  {shown}")


if __name__ == "__main__":
    main()
