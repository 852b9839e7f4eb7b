"""The Target protocol: the runtime under test, behind one small interface.

A target turns a topology plus the harness's probes into a job on its runtime, using
the runtime's own public API and base classes, and blocks in that runtime's wait call.
The harness does the timing and the recording; a target never imports the plugin.

Writing an adapter: implement :class:`Target` (batch) or :class:`StreamingTarget`; for a
runtime with SAGE's API, :mod:`sage_lifecycle.sage_api` builds the job for you. Hand it
to the harness as ``--lifecycle-target=mypkg.adapter:MyTarget`` or under the
``sage_lifecycle.targets`` entry-point group (:mod:`sage_lifecycle.resolve`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .probes import Probes

__all__ = ["ENTRY_POINT_GROUP", "StreamingTarget", "Target", "TargetError"]

#: The entry-point group under which packages register targets by name.
ENTRY_POINT_GROUP = "sage_lifecycle.targets"


class TargetError(LookupError):
    """A target name that cannot be resolved, or an adapter that is not a Target."""


@runtime_checkable
class Target(Protocol):
    """A runtime under test. One method per operation; the harness calls them in order.

    For a batch job (``probes.topology.mode == "batch"``) the harness makes a fresh
    target per example and calls :meth:`build`, then :meth:`wait` on a harness thread,
    then :meth:`release`. A target that also runs streaming jobs is a
    :class:`StreamingTarget`.

    Attributes the harness reads:

    ``name``
        Appears in reports.
    ``thread_allowlist``
        Name prefixes of threads the runtime may leave alive after its wait (pools it
        keeps on purpose); anything else alive after ``grace`` is a leak.
    ``grace``
        Seconds other threads it started may take to end after the wait (0 to 3600).

    Optional attributes:

    ``modes``
        ``("batch",)`` by default; ``("batch", "streaming")`` for a streaming target.
    ``version``
        The runtime's name and version as reports show it (``"isage 0.3.2.4"``); reports
        leave it empty if the target has none.
    ``hold``
        Seconds of quiet that mean "nothing more will happen" for a runtime that polls
        (the driver uses the longer of it and ``--lifecycle-hold``).
    ``services_on_demand = True``
        Its runtime constructs a service only when a task first calls it, so a service
        nothing called need not have been constructed.
    ``one_process_at_a_time = True``
        Two processes cannot run it at once (a fixed port): the harness refuses
        pytest-xdist with a usage error.
    ``virtual_time = True``
        The runtime's threads block only in waits written in Python (``threading``
        conditions, events, ``queue.Queue``, ``Thread.join``, ``time.sleep``), never in
        C (``SimpleQueue``, a contended raw lock, a socket). The driver then runs the job
        on a :class:`~sage_lifecycle.clock.VirtualClock`, so quiet is detected rather than
        waited for. Without it the driver waits for ``hold`` seconds of quiet.

    For the ``lifecycle_env`` fixtures (a test's own job on this runtime):

    ``environment(name, **kwargs)``
        A fresh environment of the runtime with SAGE's API (``register_service``,
        ``from_batch``/``from_source``, ``map``/``filter``/``sink``, ``submit``,
        ``stop``, ``close``; each stage appended to ``env.pipeline`` with a
        ``function_class``), prepared for a test process as the conformance jobs are.
    ``service_bases``
        Its service base classes: their methods are the runtime's, not the user's.
    ``route_logs(env)``
        Called before the job runs and after each ending call.
    ``release_environment(env)``
        Called after the verdict, best effort. See :mod:`sage_lifecycle.observe`.
    """

    name: str
    thread_allowlist: tuple[str, ...]
    grace: float

    def build(self, probes: Probes) -> None:
        """Register the job's services and pipelines with the runtime; do not start it.

        Called once, on the thread that runs the example. ``probes.topology`` says what
        to build; ``probes.services`` (name to probe), ``probes.sources``,
        ``probes.stages[i]`` and ``probes.sinks[i]`` (pipeline ``i``) are the objects
        the runtime's functions and services hand every call to. A service probe wants
        ``constructed()``, ``setup()``, ``call(caller, item)`` and ``cleanup()``; a source
        probe's ``next()`` gives an item or ``None`` at its end; a stage's
        ``process(data, call)`` and a sink's ``consume(data, call)`` take the item and a
        ``call(service, item)`` that reaches a service through the runtime. Raise to say
        the runtime refused the job: the example fails with that error.
        """
        ...

    def wait(self) -> None:
        """Start the batch job and block in the runtime's own wait-for-completion call
        (``submit(autostop=True)`` in SAGE); return or raise exactly what it does.

        Called once, on a harness thread, under the harness's deadline: a call that does
        not return is reported as ``no-hang`` with every thread's stack. Do not wait for
        anything more than the runtime's call does: an early return is what the harness
        looks for.
        """
        ...

    def release(self) -> None:
        """Free whatever the runtime holds for this job, best effort, even after a hang
        or an early return. Called once, after the checks; must not raise for a job that
        failed or never started."""
        ...


@runtime_checkable
class StreamingTarget(Target, Protocol):
    """A target that also runs streaming jobs (``modes = ("batch", "streaming")``).

    For a streaming topology the harness calls :meth:`~Target.build` (every source is a
    streaming source: a probe source's ``next()`` gives an item or ``None``, and ``None``
    means its end when ``probe.ended`` is true: return the runtime's end marker, SAGE's
    ``StopSignal``; otherwise "nothing now"), then :meth:`start`, then the ending call
    it draws, :meth:`stop` or :meth:`close`, possibly twice at once or one after the
    other, then :meth:`~Target.release`.
    """

    modes: tuple[str, ...]

    def start(self) -> None:
        """Start the streaming job and return at once (``submit(autostop=False)``).
        Called on a harness thread."""
        ...

    def stop(self) -> None:
        """End the streaming job with the runtime's ``env.stop()``; return or raise exactly
        what it does. Called on a harness thread, under the deadline, perhaps concurrently
        with another ``stop()`` or ``close()``."""
        ...

    def close(self) -> None:
        """End the streaming job with the runtime's ``env.close()``; as :meth:`stop`."""
        ...
