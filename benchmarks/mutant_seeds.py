"""Is every mutant caught whatever the seed? ``ci`` searches with random seeds, per mutant.

For each mutant (or those named), runs the search for the property it breaks ``--runs``
times with the ``ci`` profile's budget but a random seed each time, without shrinking,
and prints each run's verdict and the topologies it took to the first failure. Run it
beside two CPU-burning processes to see it under load.

    python benchmarks/mutant_seeds.py --runs 10
    python benchmarks/mutant_seeds.py --runs 5 stop_drops_in_flight
    python benchmarks/mutant_seeds.py --runs 5 --same-seed

``--same-seed`` runs the ``ci`` profile as it is (derandomized): every run of a mutant
draws the same examples, so the verdicts and first-failure indexes must be identical
from run to run, under any load; the last line says whether they were.

``--shrink`` shrinks each failure too (as the conformance suite does) and prints the
seconds each search took to its shrunk verdict, with the topologies it ran:

    python benchmarks/mutant_seeds.py --runs 3 --same-seed --shrink --deadline 30 unbalanced_counter

``--deadline`` sets the job deadline (default: 2 s for the ``no-hang`` mutants, as in
the suite, 30 s for the rest); 30 is what a user's run has.
"""

from __future__ import annotations

import argparse
import time

from hypothesis import Phase, settings

from sage_lifecycle.machines import BlackBoxMachine, run_search
from sage_lifecycle.mutants import MUTANTS
from sage_lifecycle.profiles import register_profiles
from sage_lifecycle.resolve import resolve_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--same-seed", action="store_true", help="the ci profile's own fixed seed every run"
    )
    parser.add_argument(
        "--shrink", action="store_true", help="shrink each failure; print the seconds it took"
    )
    parser.add_argument("--deadline", type=float, default=None, help="the job deadline (s)")
    parser.add_argument("mutants", nargs="*", help="mutant names (default: all)")
    opts = parser.parse_args()
    register_profiles()
    ci = settings(
        settings.get_profile("ci"),
        derandomize=opts.same_seed,
        phases=[Phase.explicit, Phase.reuse, Phase.generate]
        + ([Phase.shrink] if opts.shrink else []),
        database=None,
    )
    caught = total = 0
    differing = []
    for name in opts.mutants or sorted(MUTANTS):
        mutant = MUTANTS[name]
        runs = []
        for _ in range(opts.runs):
            machine = BlackBoxMachine.for_property(
                mutant.breaks,
                target_factory=resolve_target(f"mutant:{name}"),
                deadline=opts.deadline or (2.0 if mutant.breaks == "no-hang" else 30.0),
            )
            started = time.monotonic()
            outcome = run_search(machine, ci, replays=3)
            total += 1
            caught += outcome.verdict == "FAIL"
            took = f" in {time.monotonic() - started:.1f}s" if opts.shrink else ""
            runs.append(f"{outcome.verdict}@{outcome.topologies}{took}")
        print(f"{name:32} {mutant.breaks:22} {' '.join(runs)}", flush=True)
        if len({r.split(" in ")[0] for r in runs}) > 1:
            differing.append(name)
    print(f"caught in {caught} of {total} searches")
    if opts.same_seed:
        print(f"runs differing under the same seed: {', '.join(differing) or 'none'}")


if __name__ == "__main__":
    main()
