"""Submit time of a job whose two wide parallel stages are all alive at once.

``source -> map(parallelism=P) -> sink(parallelism=P)``: ``2P + 1`` task threads. The
stop signals between the two stages used to fan out ``P x P`` (every map instance told
every sink instance); the reference now sends one per sink instance when the map's last
instance ends (``P + P``). Both run here side by side, the old way as a ``Dispatcher``
subclass. Run::

    python benchmarks/stop_fanout.py            # 250, 500, 1000 and 2000 per stage

It prints each submit time and the ratio old/new per size.
"""

from __future__ import annotations

import sys
import threading
import time

from sage_lifecycle.reference import Dispatcher, LocalEnvironment
from sage_lifecycle.reference.dispatcher import TaskRuntime


class _AllToAll(TaskRuntime):
    """The old fan-out: every instance stops every downstream instance."""

    def connect(self, downstream: list[TaskRuntime]) -> None:
        super().connect(downstream)
        if self.index != 0:
            for t in downstream:
                t.expected_stops += 1

    def stage_ended(self) -> bool:
        self.node_end.end_one()
        return True


class AllToAll(Dispatcher):
    task_class = _AllToAll


def submit_seconds(per_stage: int, dispatcher: type[Dispatcher]) -> float:
    env = LocalEnvironment(f"fanout-{per_stage}", deadline=600, dispatcher_class=dispatcher)
    env.from_batch(range(per_stage)).map(lambda x: x, parallelism=per_stage).sink(
        lambda x: None, parallelism=per_stage
    )
    started = time.perf_counter()
    env.submit(autostop=True)
    return time.perf_counter() - started


def main(sizes: list[int]) -> None:
    threading.stack_size(256 * 1024)  # thousands of threads: keep their stacks small
    print(f"{'tasks alive':>12} {'P x Q (old) s':>14} {'P + Q (now) s':>14} {'old/now':>8}")
    for per_stage in sizes:
        old = submit_seconds(per_stage, AllToAll)
        new = submit_seconds(per_stage, Dispatcher)
        print(f"{2 * per_stage + 1:>12} {old:>14.2f} {new:>14.2f} {old / new:>8.1f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [250, 500, 1000, 2000])
