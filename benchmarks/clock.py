"""Owned time and schedules against the wall clock, side by side in one run.

1. Examples per second of the reference's conformance search (all properties) in three
   modes: virtual clock with drawn schedules (the default), virtual clock with the
   scheduling points passing, and the wall clock's quiet period (the harness before it
   owned time). Alternating rounds, so that all see the same machine load; the same
   derandomized draws each round.
2. For the mutants that hide their bug behind time or a race (``sleeps_for_cleanups``,
   ``joins_cleanup_briefly``, ``racy_last_stop_signal``): the verdict and the topologies
   run (to the first failure, plus shrinking) of their property's ``ci`` search in each
   mode.

    python benchmarks/clock.py --examples 100 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from sage_lifecycle.machines import BlackBoxMachine, Search, run_search
from sage_lifecycle.mutants import MUTANTS
from sage_lifecycle.resolve import resolve_target

#: mode -> (virtual_time, schedules)
MODES = {
    "virtual+schedules": (True, True),
    "virtual": (True, False),
    "wall": (False, False),
}


def examples_per_second(mode: str, examples: int) -> float:
    search = Search()
    virtual, schedules = MODES[mode]

    class Bench(BlackBoxMachine):
        virtual_time = virtual

    Bench.schedules = schedules
    Bench.search = search
    s = settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    started = time.perf_counter()
    run_state_machine_as_test(Bench, settings=s)
    return search.examples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()

    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(opts.rounds):
        for mode in MODES:
            rates[mode].append(examples_per_second(mode, opts.examples))
    wall = statistics.median(rates["wall"])
    print(f"reference, {opts.examples} examples x {opts.rounds} rounds (median examples/s):")
    for mode in MODES:
        rate = statistics.median(rates[mode])
        print(f"  {mode:18} {rate:6.1f}/s   {rate / wall:.2f}x the wall clock")

    ci = settings(
        max_examples=100,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    print("each mutant's own property, ci draws (verdict, topologies run):")
    for name in ("sleeps_for_cleanups", "joins_cleanup_briefly", "racy_last_stop_signal"):
        row = []
        for mode, (virtual, schedules) in MODES.items():
            machine = BlackBoxMachine.for_property(
                MUTANTS[name].breaks,
                target_factory=resolve_target(f"mutant:{name}"),
                virtual_time=virtual,
                schedules=schedules,
            )
            outcome = run_search(machine, ci, replays=1)
            row.append(f"{mode}: {outcome.verdict} ({outcome.topologies})")
        print(f"  {name:22} {'   '.join(row)}")


if __name__ == "__main__":
    main()
