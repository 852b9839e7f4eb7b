"""``sage-lifecycle``: run the conformance suite against a target from the command line.

Example::

    sage-lifecycle --target mutant:pre_878 --profile ci
    sage-lifecycle --target mypkg.adapter:MyTarget -- -x -q

Everything after ``--`` goes to pytest unchanged.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


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
    )
    parser.add_argument(
        "--target",
        default="reference",
        help="reference (default), mutant:<name>, module:attr, or an entry-point name",
    )
    parser.add_argument(
        "--profile",
        default="ci",
        choices=["dev", "ci", "deep"],
        help="Hypothesis profile that sizes the run (default: ci)",
    )
    parser.add_argument("--deadline", help="seconds a wait may take once no gate holds it")
    parser.add_argument("--hold", help="seconds of quiet before the driver opens a gate")
    opts = parser.parse_args(args)

    import pytest

    pytest_args = [
        "-p",
        "sage_lifecycle",
        "--lifecycle-conformance",
        f"--lifecycle-target={opts.target}",
        f"--hypothesis-profile={opts.profile}",
        "-p",
        "no:cacheprovider",
    ]
    if opts.deadline is not None:
        pytest_args.append(f"--lifecycle-deadline={opts.deadline}")
    if opts.hold is not None:
        pytest_args.append(f"--lifecycle-hold={opts.hold}")
    return int(pytest.main([*pytest_args, *extra]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
