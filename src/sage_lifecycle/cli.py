"""``sage-lifecycle``: run the conformance suite against a target from the command line.

Example::

    sage-lifecycle --target mutant:pre_878 --profile ci --report reports
    sage-lifecycle --replay reports/mutant_pre_878-cleanup-exactly-once.json --replay-runs 10
    sage-lifecycle --target mypkg.adapter:MyTarget -- -x -q

Everything after ``--`` goes to pytest unchanged (``-- -n 2`` spreads the searches over
pytest-xdist workers). The run is self-contained: the caller's pytest configuration file,
rootdir, conftest files, ``addopts``/``PYTEST_ADDOPTS`` and warning filters do not apply,
and the plugins it needs load explicitly, so plugin autoload may be off.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_EPILOG = (
    "Arguments after '--' go to pytest unchanged, for example: "
    "sage-lifecycle --target sage -- -n 2 -x. The exit code is pytest's: 0 only when every "
    "verdict is PASS (replaying a run: when the property held on every replay)."
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-sage-lifecycle")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _list_targets() -> str:
    from importlib.metadata import entry_points

    from .mutants import MUTANTS
    from .target import ENTRY_POINT_GROUP

    lines = ["reference                 the embedded reference dispatcher (the default)"]
    for name, m in MUTANTS.items():
        first = m.summary.split(". ")[0].split(": ")[0]
        lines.append(f"{'mutant:' + name:<25} breaks {m.breaks}: {first}")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        lines.append(f"{ep.name:<25} entry point {ep.value}")
    lines.append("module:attr               your own adapter (a Target class or factory)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run pytest with the plugin in conformance mode, return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, extra = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="sage-lifecycle",
        description="Run the lifecycle conformance suite against a runtime and print a "
        "verdict per contract property.",
        epilog=_EPILOG,
    )
    parser.add_argument(
        "--target",
        help="reference (default; with --replay: the target the report names), "
        "mutant:<name>, module:attr, or an entry-point name (see --list-targets)",
    )
    parser.add_argument(
        "--profile",
        default="ci",
        choices=["dev", "ci", "deep"],
        help="Hypothesis profile that sizes each property's search (default: ci)",
    )
    parser.add_argument("--properties", help="comma-separated properties to search (default: all)")
    parser.add_argument("--deadline", help="seconds a wait may take once no gate holds it")
    parser.add_argument("--hold", help="seconds of quiet before the driver opens a gate")
    parser.add_argument(
        "--clock",
        choices=["auto", "wall"],
        help="auto (default): virtual time for targets that declare it; wall: wall-clock quiet",
    )
    parser.add_argument(
        "--pct-depth",
        help="depth of the PCT schedules drawn on virtual time (default: 2)",
    )
    parser.add_argument(
        "--schedule",
        help="replay exactly one run: the string after 'replay exactly this run: "
        "--lifecycle-schedule=' in a failure report",
    )
    parser.add_argument(
        "--replay",
        metavar="FILE",
        help="replay exactly one recorded run from a report's JSON file (--report wrote it), "
        "on the target it names unless --target is given",
    )
    parser.add_argument(
        "--replay-runs",
        "--replays",
        dest="replay_runs",
        metavar="N",
        help="how many times --replay or --schedule replays its run (default: 10)",
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="write a JSON record and an HTML timeline of each failing example to DIR",
    )
    parser.add_argument(
        "--list-targets", action="store_true", help="list the targets this installation knows"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    opts = parser.parse_args(args)
    if opts.list_targets:
        print(_list_targets())
        return 0

    import pytest

    with tempfile.TemporaryDirectory(prefix="sage-lifecycle-") as home:
        # An empty configuration of our own: the caller's pytest.ini/pyproject/tox.ini,
        # its rootdir and its conftest files never reach the run.
        ini = Path(home, "pytest.ini")
        ini.write_text("[pytest]\n", encoding="utf-8")
        pytest_args = [
            "-c",
            str(ini),
            f"--rootdir={home}",
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "-p",
            "sage_lifecycle",
            "--lifecycle-conformance",
            f"--hypothesis-profile={opts.profile}",
        ]
        if opts.target is not None:
            pytest_args.append(f"--lifecycle-target={opts.target}")
        # Files the caller names are theirs: relative to where they ran the command.
        for name in ("replay", "report"):
            value = getattr(opts, name)
            if value is not None:
                pytest_args.append(f"--lifecycle-{name}={Path(value).absolute()}")
        if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
            pytest_args += ["-p", "pytest_timeout"]
            if any(a in ("-n", "--numprocesses", "--dist") or a.startswith("-n") for a in extra):
                pytest_args += ["-p", "xdist.plugin"]
        for name in (
            "properties",
            "deadline",
            "hold",
            "clock",
            "pct_depth",
            "schedule",
            "replay_runs",
        ):
            value = getattr(opts, name)
            if value is not None:
                pytest_args.append(f"--lifecycle-{name.replace('_', '-')}={value}")
        saved = os.environ.pop("PYTEST_ADDOPTS", None)
        if opts.profile == "ci" and "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
            # ci keeps no example database: nothing of Hypothesis's (its constants cache)
            # lands in the caller's directory either.
            os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(Path(home, "hypothesis"))
        try:
            code = int(pytest.main([*pytest_args, *extra]))
        finally:
            if saved is not None:
                os.environ["PYTEST_ADDOPTS"] = saved
    sys.stdout.flush()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
