"""Conformance cost, side by side in one run.

1. Small topologies: the reference running each job directly, the same job through the
   conformance harness (probes, gates, settle, checks), and the raw cost of starting,
   feeding and joining the same number of threads with queues between them.
2. Each mutant: time and examples until the state machine first fails (no shrinking).
3. Large jobs: 250, 500 and 1,000 tasks with 100 services, to show linear growth.

    python benchmarks/conformance.py --examples 100
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from sage_lifecycle.machines import BlackBoxMachine, stats
from sage_lifecycle.mutants import MUTANTS
from sage_lifecycle.reference import BaseService, LocalEnvironment, MapFunction
from sage_lifecycle.report import LifecycleViolation
from sage_lifecycle.resolve import resolve_target
from sage_lifecycle.topology import Topology

SETTINGS: dict[str, Any] = dict(
    deadline=None, database=None, suppress_health_check=list(HealthCheck), stateful_step_count=10
)


class Recording(BlackBoxMachine):
    seen: ClassVar[list[Topology]] = []

    def teardown(self) -> None:
        if self.probes is not None:
            Recording.seen.append(self.probes.topology)
        super().teardown()


def raw_threads(topology: Topology) -> None:
    """Start one thread per service and task instance, feed the items through queues, join."""
    threads: list[threading.Thread] = []
    for _ in topology.services:
        q: queue.SimpleQueue[object] = queue.SimpleQueue()
        q.put(None)
        threads.append(threading.Thread(target=q.get))
    for p in topology.pipelines:
        widths = [1, *(s.parallelism for s in p.stages), sum(s.parallelism for s in p.sinks)]
        queues = [queue.SimpleQueue[object]() for _ in widths]

        def stage(
            inbox: queue.SimpleQueue[object], outbox: queue.SimpleQueue[object] | None
        ) -> None:
            while (item := inbox.get()) is not None:
                if outbox is not None:
                    outbox.put(item)

        for i in range(p.items):
            queues[0].put(i)
        for i, width in enumerate(widths):
            for _ in range(width):
                queues[i].put(None)
                nxt = queues[i + 1] if i + 1 < len(queues) else None
                threads.append(threading.Thread(target=stage, args=(queues[i], nxt)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def reference_direct(topology: Topology) -> None:
    """The same job on the reference, no harness: services and plain callables."""
    env = LocalEnvironment("bench")
    for s in topology.services:
        env.register_service(s.name, BaseService)
    for p in topology.pipelines:
        stream = env.from_batch(range(p.items))
        for st in p.stages:
            stream = stream.map(lambda x: x, parallelism=st.parallelism)
        for sk in p.sinks:
            stream.sink(lambda x: None, parallelism=sk.parallelism)
    env.submit(autostop=True)


def small_topologies(examples: int) -> None:
    Recording.seen = []
    start = time.perf_counter()
    run_state_machine_as_test(Recording, settings=settings(max_examples=examples, **SETTINGS))
    harness = time.perf_counter() - start
    topologies = [t for t in Recording.seen if t.tasks <= 8 and len(t.services) <= 4]
    drawn = f"{len(topologies)} of {len(Recording.seen)} drawn"
    print(f"1. small topologies ({drawn} had <= 8 tasks, <= 4 services)")
    direct = []
    raw = []
    for t in topologies:
        a = time.perf_counter()
        reference_direct(t)
        b = time.perf_counter()
        raw_threads(t)
        c = time.perf_counter()
        direct.append(b - a)
        raw.append(c - b)
    per_example = harness / max(1, len(Recording.seen))
    print(f"   raw threads + queues      median {statistics.median(raw) * 1e3:7.3f} ms per job")
    print(
        f"   reference, no harness     median {statistics.median(direct) * 1e3:7.3f} ms per job"
        f"  ({statistics.median(direct) / statistics.median(raw):.2f}x raw)"
    )
    print(
        f"   conformance harness       {per_example * 1e3:7.1f} ms per example, "
        f"{len(Recording.seen) / harness:5.1f} examples/s  "
        f"({per_example / statistics.median(raw):.0f}x raw; gates, settling and checks)"
    )


def mutants() -> None:
    how = "state machine for the mutant's property, no shrinking"
    print(f"2. time and examples to the first failure ({how})")
    for name, mutant in MUTANTS.items():
        machine = BlackBoxMachine.for_property(mutant.breaks)
        machine.target_factory = staticmethod(resolve_target(f"mutant:{name}"))
        machine.deadline = 2.0 if mutant.breaks == "no-hang" else 30.0
        before = stats.runs
        start = time.perf_counter()
        try:
            run_state_machine_as_test(
                machine,
                settings=settings(max_examples=1000, phases=[Phase.generate], **SETTINGS),
            )
            outcome = "NOT CAUGHT"
        except LifecycleViolation:
            outcome = "caught"
        elapsed = time.perf_counter() - start
        examples = stats.runs - before
        found = f"{outcome:<10} {elapsed:6.2f} s  {examples:4d} examples"
        print(f"   {name:<32} {found}  ({mutant.breaks})")


class Touch(MapFunction):
    def __init__(self, service: str) -> None:
        self.service = service

    def execute(self, data: Any) -> Any:
        self.call_service(self.service, method="__repr__")
        return data


def large(tasks: int, services: int = 100, items: int = 20) -> float:
    pipelines = 10
    per = tasks // pipelines  # 1 source + maps + sinks per pipeline
    env = LocalEnvironment("large")
    for i in range(services):
        env.register_service(f"s{i}", BaseService)
    for p in range(pipelines):
        width = (per - 1) // 2
        stream = env.from_batch(range(items)).map(Touch, f"s{p % services}", parallelism=width)
        stream.sink(lambda x: None, parallelism=per - 1 - width)
    start = time.perf_counter()
    env.submit(autostop=True)
    return time.perf_counter() - start


def large_jobs() -> None:
    print("3. large jobs on the reference (10 pipelines, 20 items each, 100 services)")
    for tasks in (250, 500, 1000):
        runs = [large(tasks) for _ in range(3)]
        print(f"   {tasks:5d} tasks: median {statistics.median(runs) * 1e3:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100)
    args = parser.parse_args()
    small_topologies(args.examples)
    mutants()
    large_jobs()


if __name__ == "__main__":
    main()
