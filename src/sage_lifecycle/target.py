"""Targets: the runtime under test, behind one small protocol.

A target turns a topology plus the harness's probes into a job on its runtime, using
the runtime's own public API and base classes, and blocks in that runtime's wait call.
The harness does the timing and the recording; targets never import the plugin.

Choose one with ``--lifecycle-target``:

- ``reference`` (default): the embedded reference dispatcher;
- ``mutant:<name>``: the reference with one bug from :mod:`sage_lifecycle.mutants`;
- ``module:attr``: a user's adapter (a ``Target`` class, or a factory returning one);
- a name registered under the ``sage_lifecycle.targets`` entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

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

__all__ = [
    "ENTRY_POINT_GROUP",
    "ReferenceTarget",
    "Target",
    "TargetError",
    "available_targets",
    "resolve_target",
    "validate_target_spec",
]

ENTRY_POINT_GROUP = "sage_lifecycle.targets"


class TargetError(LookupError):
    """A target name that cannot be resolved, or an adapter that is not a Target."""


@runtime_checkable
class Target(Protocol):
    """A runtime under test. One method per operation; the harness calls them in order.

    For a batch job (``probes.topology.mode == "batch"``):

    1. ``build(probes)`` once: register the probes' services and pipelines with the
       runtime's API (``probes.topology`` says what to build). Do not start the job.
    2. ``wait()`` once, on a harness thread: start the job and block in the runtime's
       own wait-for-completion call (``submit(autostop=True)`` in SAGE); return or
       raise exactly what it does.
    3. ``release()`` once, after the checks: free whatever the runtime holds, best
       effort, even after a hang or an early return.

    A target that runs streaming jobs lists ``"streaming"`` in ``modes`` (default:
    ``("batch",)``; a target without it gets batch topologies only) and has three more
    methods. For a streaming job the harness calls ``build(probes)``, then ``start()``
    on a harness thread (``submit(autostop=False)``: start the job and return at once),
    then the ending call it draws, on harness threads: ``stop()`` (``env.stop()``) or
    ``close()`` (``env.close()``), possibly twice at once or one after the other; each
    must return or raise exactly what the runtime's call does. Then ``release()``.
    In a streaming topology every source is built as a streaming source
    (``from_source`` in SAGE 0.3): a probe source's ``next()`` gives an item or ``None``,
    and ``None`` means its end when ``probe.ended`` is true (return the runtime's end
    marker, SAGE's ``StopSignal``), else "nothing now".

    ``name`` appears in reports; ``thread_allowlist`` lists name prefixes of threads the
    runtime may leave alive after its wait (pools it keeps on purpose); ``grace`` is how
    long, in seconds, other threads it started may take to end after the wait. A target
    may also set ``hold``: the seconds of quiet that mean "nothing more will happen"
    for a runtime that polls (the driver uses the longer of it and ``--lifecycle-hold``),
    ``services_on_demand = True`` if its runtime constructs a service only when a task
    first calls it (then a service nothing called need not have been constructed), and
    ``one_process_at_a_time = True`` if two processes cannot run it at once (a fixed
    port): the conformance suite then refuses pytest-xdist with a usage error.

    The ``lifecycle_env`` fixtures run a test's own job on a target that has
    ``environment(name, **kwargs)``: a fresh environment of its runtime with SAGE's API
    (``register_service``, ``from_batch``/``from_source``, ``map``/``filter``/``sink``,
    ``submit``, ``stop``, ``close``; each stage appended to ``env.pipeline`` with a
    ``function_class``), prepared for a test process as the conformance jobs are. It may
    also have ``service_bases`` (its service base classes: their methods are the
    runtime's, not calls into the user's service), ``route_logs(env)`` (called before
    the job runs and after each ending call) and ``release_environment(env)`` (after the
    verdict, best effort). See :mod:`sage_lifecycle.observe`.

    ``virtual_time = True`` says the runtime's threads block only in waits written in
    Python (``threading`` conditions, events, locks' ``Condition``s, ``queue.Queue``,
    ``Thread.join``, ``time.sleep``), not in C (``SimpleQueue``, a contended raw lock, a
    socket): the driver then runs the job on a :class:`~sage_lifecycle.clock.VirtualClock`,
    so quiet is detected rather than waited for, and sleeps, polls and timed joins cannot
    outlast a parked gate. Without it the driver waits for ``hold`` seconds of quiet.
    """

    name: str
    thread_allowlist: tuple[str, ...]
    grace: float

    def build(self, probes: Probes) -> None: ...

    def wait(self) -> None: ...

    def release(self) -> None: ...


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
        for name, service in probes.services.items():
            env.register_service(name, _service_class(BaseService), service)
        streaming = probes.topology.streaming
        for i, source in enumerate(probes.sources):
            if streaming:
                stream = env.from_source(_stream_source_class(SourceFunction, StopSignal), source)
            else:
                stream = env.from_batch(_source_class(BatchFunction), source)
            for stage in probes.stages[i]:
                base = MapFunction if stage.spec.kind == "map" else FilterFunction
                if stage.spec.kind == "map":
                    stream = stream.map(
                        _stage_class(base), stage, parallelism=stage.spec.parallelism
                    )
                else:
                    stream = stream.filter(
                        _stage_class(base), stage, parallelism=stage.spec.parallelism
                    )
            for sink in probes.sinks[i]:
                stream.sink(_sink_class(SinkFunction), sink, parallelism=sink.spec.parallelism)

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


# Adapter classes, made per base so the SAGE adapter can reuse the same shapes.
def _service_class(base: type[Any]) -> type[Any]:
    class ProbeService(base):  # type: ignore[misc]
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe
            probe.constructed()

        def setup(self) -> None:
            self.probe.setup()

        def call(self, caller: str, item: str) -> str:
            return str(self.probe.call(caller, item))

        def cleanup(self) -> None:
            self.probe.cleanup()

    return ProbeService


def _caller(fn: Any, name: str) -> Callable[[str, str], Any]:
    return lambda service, item: fn.call_service(service, name, item, method="call")


def _source_class(base: type[Any]) -> type[Any]:
    class ProbeSource(base):  # type: ignore[misc]
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe

        def execute(self) -> Any:
            return self.probe.next()

    return ProbeSource


def _stream_source_class(base: type[Any], stop_signal: Callable[[str], Any]) -> type[Any]:
    """A streaming source on ``base`` (a ``SourceFunction``): an item, ``None`` for
    "nothing now", or ``stop_signal(...)`` once a bounded probe source has ended."""

    class ProbeStreamSource(base):  # type: ignore[misc]
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe

        def execute(self) -> Any:
            item = self.probe.next()
            if item is None and self.probe.ended:
                return stop_signal(self.probe.node)
            return item

    return ProbeStreamSource


def _item_class(base: type[Any], action: str) -> type[Any]:
    """A map, filter or sink class on ``base`` whose ``execute(data)`` calls the probe's
    ``action`` (``process`` for stages, ``consume`` for sinks)."""

    class ProbeFunction(base):  # type: ignore[misc]
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe

        def execute(self, data: Any) -> Any:
            return getattr(self.probe, action)(data, _caller(self, self.probe.node))

    ProbeFunction.__name__ = ProbeFunction.__qualname__ = (
        "ProbeSink" if action == "consume" else "ProbeStage"
    )
    return ProbeFunction


def _stage_class(base: type[Any]) -> type[Any]:
    return _item_class(base, "process")


def _sink_class(base: type[Any]) -> type[Any]:
    return _item_class(base, "consume")


def available_targets() -> list[str]:
    """Every target name this installation knows, for error messages and docs."""
    from importlib.metadata import entry_points

    from .mutants import MUTANTS

    names = ["reference", *(f"mutant:{m}" for m in MUTANTS)]
    names += sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return names


def _as_target(obj: Any, spec: str) -> Target:
    # A class is a factory even when its attributes satisfy the protocol's check.
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Target)):
        try:
            candidate = obj()
        except ImportError as exc:  # a runtime not installed: its own message says what to do
            raise TargetError(f"target {spec!r}: {exc}") from None
        except Exception as exc:
            raise TargetError(
                f"target {spec!r}: calling {obj!r} to make a Target failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    else:
        candidate = obj
    if not isinstance(candidate, Target):
        raise TargetError(
            f"target {spec!r} gave {candidate!r}, which is not a Target: it needs a name, "
            "thread_allowlist, grace, and build(probes), wait() and release() methods"
        )
    modes = getattr(candidate, "modes", ("batch",))
    if (
        not isinstance(modes, tuple)
        or not modes
        or any(m not in ("batch", "streaming") for m in modes)
    ):
        raise TargetError(
            f"target {spec!r} has modes={modes!r}: expected a tuple of 'batch' and/or "
            "'streaming', for example modes = ('batch', 'streaming')"
        )
    missing = [m for m in ("start", "stop", "close") if not callable(getattr(candidate, m, None))]
    if "streaming" in modes and missing:
        raise TargetError(
            f"target {spec!r} lists 'streaming' in its modes but has no "
            f"{', '.join(f'{m}()' for m in missing)}: a streaming target needs start(), "
            "stop() and close(); or leave 'streaming' out of modes"
        )
    grace = candidate.grace
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= 3600:
        raise TargetError(
            f"target {spec!r} has grace={grace!r}: expected the seconds its threads may "
            "outlive the wait, a number from 0 to 3600, for example grace = 0.5"
        )
    return candidate


def validate_target_spec(spec: str) -> None:
    """Check a target name without importing or running anything (outside conformance
    mode the target is not used, so it is not resolved: resolving imports user code).

    Raises :class:`TargetError` for an unknown mutant or a malformed ``module:attr``.
    """
    spec = spec.strip()
    if spec == "reference":
        return
    if spec.startswith("mutant:"):
        from .mutants import MUTANTS

        name = spec.split(":", 1)[1]
        if name not in MUTANTS:
            raise TargetError(
                f"unknown mutant {name!r} in target {spec!r}; available mutants: "
                f"{', '.join(MUTANTS)}"
            )
        return
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        parts = module_name.split(".")
        if not all(p.isidentifier() for p in parts) or not attr.isidentifier():
            raise TargetError(
                f"target {spec!r} is not 'module:attr' (a dotted module path, a colon, and "
                "an attribute name), for example 'mypkg.adapter:MyTarget'"
            )
        return
    from importlib.metadata import entry_points

    if spec not in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}:
        raise TargetError(
            f"unknown lifecycle target {spec!r}; available: {', '.join(available_targets())}, "
            "or 'module:attr' naming your adapter"
        )


def resolve_target(spec: str) -> Callable[[], Target]:
    """Turn a target name into a factory of fresh targets (one per example).

    Raises :class:`TargetError` naming the value and listing what is available.
    """
    from .mutants import MUTANTS

    validate_target_spec(spec)
    spec = spec.strip()
    if spec == "reference":
        return ReferenceTarget
    if spec.startswith("mutant:"):
        mutant = MUTANTS[spec.split(":", 1)[1]]
        return lambda: ReferenceTarget(mutant.dispatcher, name=spec)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # ImportError, but also a module that raises on import
            raise TargetError(
                f"target {spec!r}: cannot import module {module_name!r} ({exc}); expected "
                "'module:attr' naming a Target"
            ) from None
        if not hasattr(module, attr):
            raise TargetError(
                f"target {spec!r}: module {module_name!r} has no attribute {attr!r}; "
                "expected a Target"
            )
        obj = getattr(module, attr)
    else:
        from importlib.metadata import entry_points

        # validate_target_spec found the entry point: load it.
        ep = next(ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec)
        try:
            obj = ep.load()
        except Exception as exc:
            raise TargetError(
                f"target {spec!r}: the entry point {ep.value!r} failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    _as_target(obj, spec)  # fail now, at configuration, not deep inside a run
    return lambda: _as_target(obj, spec)
