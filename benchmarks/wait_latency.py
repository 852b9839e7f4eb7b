"""How soon ``submit(autostop=True)`` returns after the last service cleanup ends.

The reference's wait sleeps on a condition that the controller notifies, so it should
return within a millisecond of the last cleanup end (DESIGN: p99 <= 1 ms). Side by side
in the same run, the same job on a dispatcher whose wait polls every 10 ms (SAGE 0.2.5.3
polls every 1.0 s; 10 ms keeps this run short) shows what polling costs.

    python benchmarks/wait_latency.py --runs 1000

Latency is read from the trace: ``wait.end.t_ns - last service.cleanup.end.t_ns``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from sage_lifecycle import EventKind, Trace
from sage_lifecycle.reference import BaseService, Dispatcher, LocalEnvironment, SinkFunction
from sage_lifecycle.trace import Event


class Hello(BaseService):
    def hello(self) -> str:
        return "hello"


class CallsHello(SinkFunction):
    def execute(self, data: object) -> None:
        self.call_service("hello", method="hello")


class PollingDispatcher(Dispatcher):
    """The wait as SAGE writes it: check the flags, sleep, check again."""

    interval = 0.010

    def wait(
        self, subject: str = "submit", timeout: float | None = None, *, begin: Event | None = None
    ) -> None:
        while not self.is_finished():
            time.sleep(self.interval)  # the polling is the behaviour being measured
        super().wait(subject, timeout, begin=begin)


def one_run(dispatcher: type[Dispatcher], services: int) -> float:
    """Run hello_service_world with ``services`` services; return the latency in ms."""
    trace = Trace()
    env = LocalEnvironment("bench", observer=trace, dispatcher_class=dispatcher)
    for i in range(services):
        env.register_service("hello" if i == 0 else f"extra{i}", Hello)
    env.from_batch([1, 2, 3]).sink(CallsHello)
    env.submit(autostop=True)
    events = trace.events()
    last_cleanup = max(e.t_ns for e in events if e.kind is EventKind.SERVICE_CLEANUP_END)
    wait_end = next(e.t_ns for e in events if e.kind is EventKind.WAIT_END)
    return (wait_end - last_cleanup) / 1e6


def summarize(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return (
        f"{name:<28} runs={len(samples):>5}  median={statistics.median(samples):8.3f} ms  "
        f"p90={pct(0.90):8.3f} ms  p99={pct(0.99):8.3f} ms  max={ordered[-1]:8.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs of the event-driven wait")
    parser.add_argument("--polling-runs", type=int, default=100, help="runs of the polling wait")
    parser.add_argument("--services", type=int, default=1, help="services per job")
    args = parser.parse_args()

    for _ in range(20):  # warm up imports, thread creation and the allocator
        one_run(Dispatcher, args.services)
    event_driven = [one_run(Dispatcher, args.services) for _ in range(args.runs)]
    polling = [one_run(PollingDispatcher, args.services) for _ in range(args.polling_runs)]
    print("latency from the last cleanup end to submit() returning")
    print(summarize("reference (condition)", event_driven))
    print(summarize("polling every 10 ms", polling))
    ratio = statistics.median(polling) / statistics.median(event_driven)
    print(f"median ratio polling / reference: {ratio:.1f}x")


if __name__ == "__main__":
    main()
