"""The harness catching a real bug: SAGE's hello_service_world, before and after PR #878.

Run it with ``python -m sage_lifecycle.demo``. It runs the same job on the reference
dispatcher (the contract holds) and on a dispatcher that behaves as SAGE did before
PR #878 (services never cleaned, the wait returning on ``is_running == False``), prints
what the harness reports for each, and exits non-zero if the harness got either wrong.
"""

from __future__ import annotations

import sys

from .contract import check
from .mutants import MUTANTS
from .reference import BaseService, BatchFunction, Dispatcher, LocalEnvironment, SinkFunction
from .report import format_report
from .trace import Event, Trace

__all__ = ["HelloBatch", "HelloService", "PrintSink", "hello_service_world", "main"]


class HelloService(BaseService):
    """A service that holds a (pretend) connection until its cleanup closes it."""

    def __init__(self) -> None:
        self.connected = False

    def setup(self) -> None:
        self.connected = True

    def hello(self) -> str:
        return "hello service!"

    def cleanup(self) -> None:
        self.connected = False


class HelloBatch(BatchFunction):
    def __init__(self) -> None:
        self.counter = 0

    def execute(self) -> str | None:
        if self.counter >= 5:
            return None
        self.counter += 1
        return f"Hello, World! #{self.counter}"


class PrintSink(SinkFunction):
    def execute(self, data: str) -> None:
        self.call_service("hello_service", method="hello")


def hello_service_world(dispatcher: type[Dispatcher]) -> tuple[Event, ...]:
    """SAGE's hello_service_world, on ``dispatcher``; returns the events it recorded."""
    trace = Trace()
    env = LocalEnvironment("hello_service_world", observer=trace, dispatcher_class=dispatcher)
    env.register_service("hello_service", HelloService)
    env.from_batch(HelloBatch).sink(PrintSink)
    env.submit(autostop=True)
    assert env.dispatcher is not None
    env.dispatcher.settle(env.deadline)  # let a buggy job show what it did after the wait
    events = trace.events()
    env.dispatcher.release(env.deadline)  # then let its stragglers go
    return events


def main() -> int:
    print("== hello_service_world on the reference dispatcher ==")
    violations = check(hello_service_world(Dispatcher))
    reference_ok = not violations
    print("lifecycle contract holds" if reference_ok else format_report(violations, ()))

    mutant = MUTANTS["pre_878"]
    print(f"\n== the same job on mutant:{mutant.name} ==\n{mutant.summary}\n")
    events = hello_service_world(mutant.dispatcher)
    violations = check(events)
    print(format_report(violations, events))
    caught = mutant.breaks in {v.property for v in violations}

    print(
        f"\nverdict: reference {'passed' if reference_ok else 'FAILED'}; "
        f"SAGE's pre-#878 bug {'caught' if caught else 'MISSED'} by {mutant.breaks}"
    )
    return 0 if reference_ok and caught else 1


if __name__ == "__main__":
    sys.exit(main())
