"""The virtual clock against the wall clock, side by side in one run.

1. Examples per second of the reference's conformance search (all properties), with the
   virtual clock and with the wall clock, in alternating rounds so that both see the same
   machine load; the same derandomized draws each round.
2. For the two mutants that hide an early return behind time (``sleeps_for_cleanups``,
   ``joins_cleanup_briefly``): the verdict and the topologies to the first failure of the
   ``no-early-return`` search on each clock.

    python benchmarks/clock.py --examples 100 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from sage_lifecycle.machines import LifecycleMachine, Search, run_search
from sage_lifecycle.target import resolve_target


def examples_per_second(virtual: bool, examples: int) -> float:
    search = Search()

    class Bench(LifecycleMachine):
        virtual_time = virtual

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

    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(opts.rounds):
        for virtual in (True, False):
            rates[virtual].append(examples_per_second(virtual, opts.examples))
    v, w = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"reference, {opts.examples} examples x {opts.rounds} rounds (median examples/s):")
    print(f"  virtual clock {v:6.1f}/s   wall clock {w:6.1f}/s   ratio {v / w:.2f}x")

    ci = settings(
        max_examples=100,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    print("no-early-return search, ci draws (verdict, topologies run):")
    for name in ("sleeps_for_cleanups", "joins_cleanup_briefly"):
        row = []
        for virtual in (True, False):
            machine = LifecycleMachine.for_property(
                "no-early-return",
                target_factory=resolve_target(f"mutant:{name}"),
                virtual_time=virtual,
            )
            outcome = run_search(machine, ci, replays=1)
            clock = "virtual" if virtual else "wall"
            row.append(f"{clock}: {outcome.verdict} ({outcome.topologies})")
        print(f"  {name:24} {'   '.join(row)}")


if __name__ == "__main__":
    main()
