"""The reference dispatcher (or a subclass: a mutant, a user's) as a conformance target."""

from __future__ import annotations

from .probes import Probes
from .reference import (
    BaseService,
    BatchFunction,
    Dispatcher,
    FilterFunction,
    LocalEnvironment,
    MapFunction,
    SinkFunction,
    SourceFunction,
    StopSignal,
)
from .sage_api import ProbeClasses, build_job

__all__ = ["ReferenceTarget"]

_CLASSES = ProbeClasses.on(
    service=BaseService,
    batch_source=BatchFunction,
    map=MapFunction,
    filter=FilterFunction,
    sink=SinkFunction,
    stream_source=SourceFunction,
    stop_signal=StopSignal,
)


class ReferenceTarget:
    """The reference dispatcher (or a subclass, such as a mutant) as a target.

    As a black box it is judged like any target: a thread it started that is still
    alive after the wait returned and a short grace ran out is a leak. (The
    ``lifecycle_env`` fixture checks the reference strictly, from its own join events.)
    """

    name = "reference"
    thread_allowlist: tuple[str, ...] = ()
    grace = 0.1
    #: Its threads wait only where the harness's virtual clock sees them (conditions,
    #: events, queues, joins, sleeps), so the driver can tell when the job is quiet.
    virtual_time = True
    modes: tuple[str, ...] = ("batch", "streaming")

    @property
    def version(self) -> str:
        """The reference runtime is this package: its version, for reports."""
        from . import __version__

        return f"pytest-sage-lifecycle {__version__}"

    def __init__(
        self, dispatcher: type[Dispatcher] = Dispatcher, *, name: str | None = None
    ) -> None:
        if name is not None:
            self.name = name
        self.dispatcher = dispatcher
        self.env: LocalEnvironment | None = None

    def build(self, probes: Probes) -> None:
        # Generous inner deadline: the harness's own deadline decides about hangs.
        env = LocalEnvironment(
            "job",
            deadline=max(60.0, 4 * probes.gate_timeout),
            dispatcher_class=self.dispatcher,
            job=probes.job,
            scheduling_point=probes.point,
        )
        self.env = env
        build_job(env, probes, _CLASSES)

    def wait(self) -> None:
        assert self.env is not None, "build() first"
        self.env.submit(autostop=True)

    def start(self) -> None:
        assert self.env is not None, "build() first"
        self.env.submit(autostop=False)

    def stop(self) -> None:
        assert self.env is not None, "build() first"
        self.env.stop()

    def close(self) -> None:
        assert self.env is not None, "build() first"
        self.env.close()

    def release(self) -> None:
        if self.env is not None and self.env.dispatcher is not None:
            self.env.dispatcher.release(timeout=5.0)
