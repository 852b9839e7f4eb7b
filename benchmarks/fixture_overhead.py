"""What the fixtures add to a real SAGE job, measured side by side in one run.

Each round runs the same job twice on SAGE's own ``LocalEnvironment`` (isage >= 0.3),
in alternating order: once as a plain SAGE job, once as the ``lifecycle_env`` fixture
runs it (the user's classes observed, the ending call under the deadline on a harness
thread, the thread check after SAGE's grace, the contract checked on the trace, the
environment released). Three jobs: a chain of 1,000 items without services; a graph of
two pipelines whose sinks call a service, 500 items each (the path on which SAGE 0.3's
functions can call services); and a stream of 20 items through a service, stopped.

    python benchmarks/fixture_overhead.py --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from sage_lifecycle.contract import check
from sage_lifecycle.observe import RuntimeJob
from sage_lifecycle.sage_target import SageTarget
from sage_lifecycle.trace import Trace


def _classes() -> dict[str, Any]:
    from sage.foundation.core import SinkFunction, SourceFunction
    from sage.runtime import BaseService

    class Store(BaseService):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[Any] = []

        def put(self, row: Any) -> int:
            self.rows.append(row)
            return len(self.rows)

    class Put(SinkFunction):  # type: ignore[misc]
        def execute(self, data: Any) -> None:
            self.call_service("store", data, method="put")

    class Drop(SinkFunction):  # type: ignore[misc]
        def execute(self, data: Any) -> None:
            pass

    class Feed(SourceFunction):  # type: ignore[misc]
        #: Set once all items were handed on; the stream then waits for its stop.
        sent = threading.Event()
        items = 20

        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def execute(self) -> Any:
            if self.n == self.items:
                Feed.sent.set()
                return None
            self.n += 1
            return self.n

    return {"Store": Store, "Put": Put, "Drop": Drop, "Feed": Feed}


def chain(env: Any, c: dict[str, Any]) -> None:
    env.from_batch(list(range(1000))).map(lambda x: x * 2).sink(c["Drop"])
    env.submit(autostop=True)


def graph(env: Any, c: dict[str, Any]) -> None:
    env.register_service("store", c["Store"])
    env.from_batch(list(range(500))).sink(c["Put"])
    env.from_batch(list(range(500, 1000))).sink(c["Put"])
    env.submit(autostop=True)


def stream(env: Any, c: dict[str, Any]) -> None:
    c["Feed"].sent.clear()
    env.register_service("store", c["Store"])
    env.from_source(c["Feed"]).sink(c["Put"])
    env.submit(autostop=False)
    if not c["Feed"].sent.wait(30):
        raise RuntimeError("the stream did not hand on its items within 30 s")
    env.stop()


JOBS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "chain, 1,000 items": chain,
    "graph + service, 1,000 calls": graph,
    "stream + service, 20 calls, stopped": stream,
}


def plain(target: SageTarget, job: Callable[..., None], c: dict[str, Any], n: int) -> float:
    start = time.perf_counter()
    env = target.environment(f"plain_{n}")
    job(env, c)
    target.release_environment(env)
    return time.perf_counter() - start


def fixture(target: SageTarget, job: Callable[..., None], c: dict[str, Any], n: int) -> float:
    start = time.perf_counter()
    trace = Trace()
    run = RuntimeJob(
        target,
        name=f"fixture_{n}",
        job=f"fixture_{n}#1",
        trace=trace,
        deadline=30.0,
        budget=lambda wanted: wanted,
        env_kwargs={},
    )
    job(run.observed, c)
    check(trace.events())
    run.release(target.grace)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    target = SageTarget()
    c = _classes()
    print(f"SAGE LocalEnvironment, median of {args.rounds} rounds, plain and fixture alternating")
    print(f"{'job':32} {'plain':>10} {'fixture':>10} {'added':>10} {'ratio':>7}")
    for title, job in JOBS.items():
        plain(target, job, c, -1)  # warm up: SAGE's process-wide pools start once
        fixture(target, job, c, -1)
        p: list[float] = []
        f: list[float] = []
        for n in range(args.rounds):
            if n % 2:
                p.append(plain(target, job, c, n))
                f.append(fixture(target, job, c, n))
            else:
                f.append(fixture(target, job, c, n))
                p.append(plain(target, job, c, n))
        mp, mf = statistics.median(p) * 1000, statistics.median(f) * 1000
        print(f"{title:32} {mp:8.1f}ms {mf:8.1f}ms {mf - mp:+8.1f}ms {mf / mp:6.2f}x")


if __name__ == "__main__":
    main()
