"""A user's own job on a real runtime, observed: what the fixtures record on SAGE.

On the reference the dispatcher records every lifecycle event itself. A real runtime is
a black box, so the fixtures watch the user's own code instead: what a test registers
and builds (``register_service(name, cls, ...)``, the classes, lambdas and lists given
to ``from_batch``/``from_source``/``map``/``filter``/``sink``) runs as a subclass of the
user's class, with the same name, module and behaviour, that records on the trace:

- a service's construction, ``setup()``, every call of its own methods (the outermost
  one on a thread: a method calling another of the same service is one call), and
  ``cleanup()``, with the errors they raise;
- a function's items: what a source returned (``item.emit``), what a filter let go
  (``item.drop``), what reached a sink (``item.sink``), and its errors (``task.error``);
  an item keeps its source's key through maps and filters, found by the identity of
  the object a stage returned (or equality, or arrival order where the runtime copies);
- the ending call the test makes (``submit(autostop=True)``, ``stop()``, ``close()``)
  as a wait, run on a harness thread under the deadline; a wait past it is recorded
  with every thread's stack, and the test gets :class:`~sage_lifecycle.reference.JobHangError`;
- threads the job started that are still alive after the ending call and the target's
  grace (``thread.alive``), except the pools the target lists as kept on purpose.

Return values and exceptions pass through unchanged (the same objects), and
``isinstance``/``issubclass`` against the user's classes hold. What differs: ``type(x)``
is the observing subclass (same ``__name__``/``__qualname__``/``__module__``), and a
service class without a ``cleanup()`` gets an empty one, so its cleanup can be seen.

A task error is the user's (intended, as on the reference) unless it came out of
``call_service`` and is not an error the service's own code raised: then it is the
runtime's own failure (``injected=false``), evidence against the runtime.

The wrappers hide their frames from pytest's tracebacks (``__tracebackhide__``), so a
failure shows the user's code and the runtime's, as without the fixtures.

The runtime's own parts are used as they are (its lambda wrappers, its batch sources
for a list); the fixtures replace a stage's ``function_class`` with the observing
subclass right after the runtime declared it, before anything was made from it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from ._stacks import format_thread_stacks, still_alive
from .probes import FailureLog
from .trace import Event, EventKind, Trace, describe_error

__all__ = [
    "ObservedEnvironment",
    "ObservedStream",
    "RuntimeJob",
    "observe_function",
    "observe_service",
    "unended",
]

#: Service methods that are the runtime's lifecycle, not calls into the service.
_LIFECYCLE = frozenset(
    {"setup", "cleanup", "start", "stop", "terminate", "start_running", "close", "shutdown"}
)


def _is_stop_signal(value: Any) -> bool:
    return type(value).__name__ == "StopSignal"


class _Recorder:
    """What one observed job's wrappers share: the trace, the items in flight, who calls."""

    def __init__(self, trace: Trace, job: str) -> None:
        self.trace = trace
        self.job = job
        self.failures = FailureLog()
        self._lock = threading.Lock()
        self._local = threading.local()
        #: Each node's downstream nodes, and the items handed to each node, not yet taken.
        self.downstream: dict[str, list[str]] = {}
        self._pending: dict[str, list[tuple[Any, str]]] = {}
        self._emitted: dict[str, itertools.count[int]] = {}
        self._instances: dict[str, itertools.count[int]] = {}
        self._tasks: dict[int, tuple[Any, str]] = {}
        self._callers: dict[str, list[str]] = {}
        #: Exceptions the user's service code raised, and ones that came out of
        #: ``call_service`` otherwise (the runtime's own), by identity.
        self._users = FailureLog()
        self._runtime = FailureLog()

    def record(self, kind: EventKind, subject: str, **data: Any) -> Event:
        return self.trace.record(kind, subject, job=self.job, **data)

    def failure(self, kind: EventKind, subject: str, exc: BaseException, **data: Any) -> None:
        event = self.record(kind, subject, error=describe_error(exc), **data)
        self.failures.add(exc, event)

    # -- services ------------------------------------------------------------------
    def inside(self) -> set[str]:
        """The services whose own code runs on this thread right now."""
        names: set[str] | None = getattr(self._local, "inside", None)
        if names is None:
            names = self._local.inside = set()
        return names

    def users_error(self, exc: BaseException, event: Event) -> None:
        self._users.add(exc, event)

    def push_caller(self, service: str, task: str) -> None:
        with self._lock:
            self._callers.setdefault(service, []).append(task)

    def drop_caller(self, service: str, task: str) -> None:
        with self._lock:
            callers = self._callers.get(service, [])
            if task in callers:
                callers.remove(task)

    def take_caller(self, service: str) -> str:
        """Which task called ``service`` (the oldest call not yet seen), or ``"?"``."""
        with self._lock:
            callers = self._callers.get(service)
            return callers.pop(0) if callers else "?"

    def call_failed(self, exc: BaseException) -> None:
        """``call_service`` raised ``exc``: the runtime's own failure unless the service's
        code raised it (then it is the user's, reaching the caller as it should)."""
        if not self._users.knows(exc):
            self._runtime.add(exc)

    def by_runtime(self, exc: BaseException) -> bool:
        return self._runtime.knows(exc)

    # -- tasks and items -----------------------------------------------------------
    def task(self, instance: Any, node: str) -> str:
        """The task name of a function instance: ``node[i]``, numbered as they first run."""
        with self._lock:
            known = self._tasks.get(id(instance))
            if known is not None and known[0] is instance:
                return known[1]
            number = next(self._instances.setdefault(node, itertools.count()))
            name = f"{node}[{number}]"
            self._tasks[id(instance)] = (instance, name)
            return name

    def emit(self, node: str, value: Any) -> None:
        with self._lock:
            key = f"{node}#{next(self._emitted.setdefault(node, itertools.count()))}"
        self.record(EventKind.ITEM_EMIT, self._task_or(node), node=node, item=key)
        self.hand_on(node, value, key)

    def _task_or(self, node: str) -> str:
        return getattr(self._local, "task", None) or node

    def hand_on(self, node: str, value: Any, key: str | None) -> None:
        """``value`` (the item ``key``) goes on to ``node``'s downstream nodes."""
        if key is None:
            return
        with self._lock:
            for down in self.downstream.get(node, ()):
                self._pending.setdefault(down, []).append((value, key))

    def take(self, node: str, value: Any) -> str | None:
        """The key of the item ``value`` arriving at ``node``: the pending one that is
        the same object, else an equal one, else the oldest; ``None`` if none is owed."""
        with self._lock:
            pending = self._pending.get(node)
            if not pending:
                return None
            at = next((i for i, (v, _) in enumerate(pending) if v is value), None)
            if at is None:  # a copy: an equal item among the oldest, else the oldest
                window = enumerate(pending[:_EQUALITY_WINDOW])
                at = next((i for i, (v, _) in window if _equal(v, value)), 0)
            return pending.pop(at)[1]


#: How many of the oldest pending items a copied item is compared with (``==`` may be
#: slow, and a runtime delivers roughly in order).
_EQUALITY_WINDOW = 64


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


# -- the observing subclasses ----------------------------------------------------------
def _like(cls: type[Any], namespace: dict[str, Any]) -> type[Any]:
    """A subclass of ``cls`` that looks like it: the same name, qualname, module, doc."""
    namespace.update(
        __module__=cls.__module__,
        __qualname__=cls.__qualname__,
        __doc__=cls.__doc__,
        __lifecycle_observed__=cls,
    )
    return type(cls.__name__, (cls,), namespace)


def _service_methods(cls: type[Any], runtime_bases: tuple[type[Any], ...]) -> list[str]:
    """The public methods of the user's service class: every one its own classes define
    (or override), but the runtime's lifecycle hooks."""
    theirs = {klass for base in runtime_bases if issubclass(cls, base) for klass in base.__mro__}
    theirs.add(object)
    names = []
    for name in dir(cls):
        if name.startswith("_") or name in _LIFECYCLE:
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or owner in theirs:
            continue
        value = vars(owner)[name]
        if callable(value) and not isinstance(value, (staticmethod, classmethod, type)):
            names.append(name)
    return names


def observe_service(
    cls: type[Any], name: str, rec: _Recorder, runtime_bases: tuple[type[Any], ...]
) -> type[Any]:
    """The observing subclass of the service class ``cls`` registered as ``name``."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        __tracebackhide__ = True
        inside = rec.inside()
        inside.add(name)
        try:
            cls.__init__(self, *args, **kwargs)
        except Exception as exc:
            rec.failure(EventKind.SERVICE_SETUP_END, name, exc, stage="construct")
            raise
        finally:
            inside.discard(name)
        rec.record(EventKind.SERVICE_CONSTRUCT, name, cls=cls.__name__)

    def lifecycle(hook: str, begin: EventKind, end: EventKind) -> Callable[..., Any]:
        original = getattr(cls, hook, None)

        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            rec.record(begin, name)
            inside = rec.inside()
            inside.add(name)
            try:
                result = original(self, *args, **kwargs) if callable(original) else None
            except Exception as exc:
                event = rec.record(end, name, error=describe_error(exc))
                rec.failures.add(exc, event)
                rec.users_error(exc, event)
                raise
            finally:
                inside.discard(name)
            rec.record(end, name)
            return result

        run.__name__ = run.__qualname__ = hook
        if callable(original):
            run.__doc__ = original.__doc__
        return run

    def method(attr: str) -> Callable[..., Any]:
        original = getattr(cls, attr)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            inside = rec.inside()
            if name in inside:  # the service's own code calling itself
                return original(self, *args, **kwargs)
            begin = rec.record(
                EventKind.SERVICE_CALL_BEGIN, name, method=attr, caller=rec.take_caller(name)
            )
            inside.add(name)
            try:
                result = original(self, *args, **kwargs)
            except BaseException as exc:
                event = rec.record(
                    EventKind.SERVICE_CALL_END,
                    name,
                    begin=begin.seq,
                    method=attr,
                    error=describe_error(exc),
                )
                rec.users_error(exc, event)
                raise
            finally:
                inside.discard(name)
            rec.record(EventKind.SERVICE_CALL_END, name, begin=begin.seq, method=attr)
            return result

        call.__name__ = call.__qualname__ = attr
        call.__doc__ = original.__doc__
        call.__wrapped__ = original  # type: ignore[attr-defined]
        return call

    namespace: dict[str, Any] = {
        "__init__": __init__,
        "setup": lifecycle("setup", EventKind.SERVICE_SETUP_BEGIN, EventKind.SERVICE_SETUP_END),
        "cleanup": lifecycle(
            "cleanup", EventKind.SERVICE_CLEANUP_BEGIN, EventKind.SERVICE_CLEANUP_END
        ),
    }
    for attr in _service_methods(cls, runtime_bases):
        namespace[attr] = method(attr)
    return _like(cls, namespace)


def observe_function(cls: type[Any], node: str, role: str, rec: _Recorder) -> type[Any]:
    """The observing subclass of the function class ``cls`` at ``node`` (a ``role``)."""
    original = cls.execute

    def guarded(self: Any, body: Callable[[], Any]) -> Any:
        __tracebackhide__ = True
        task = rec.task(self, node)
        local = rec._local
        outer = getattr(local, "task", None)
        local.task = task
        try:
            return body()
        except Exception as exc:
            # Once per error: a runtime that runs a task inside another's call (SAGE 0.3
            # pumps a stream's source while a service call waits) nests the same error.
            if not rec.failures.has(exc):
                mark = {"injected": False} if rec.by_runtime(exc) else {}
                rec.failure(EventKind.TASK_ERROR, task, exc, node=node, **mark)
            raise
        finally:
            local.task = outer

    def source(self: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True

        def body() -> Any:
            __tracebackhide__ = True
            value = original(self, *args, **kwargs)
            if value is not None and not _is_stop_signal(value):
                rec.emit(node, value)
            return value

        return guarded(self, body)

    def map_(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        key = rec.take(node, data)

        def body() -> Any:
            __tracebackhide__ = True
            value = original(self, data, *args, **kwargs)
            rec.hand_on(node, value, key)
            return value

        return guarded(self, body)

    def filter_(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        key = rec.take(node, data)

        def body() -> Any:
            __tracebackhide__ = True
            keep = original(self, data, *args, **kwargs)
            if keep:
                rec.hand_on(node, data, key)
            elif key is not None:
                rec.record(EventKind.ITEM_DROP, rec.task(self, node), node=node, item=key)
            return keep

        return guarded(self, body)

    def sink(self: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        key = rec.take(node, data)

        def body() -> Any:
            __tracebackhide__ = True
            if key is not None:
                rec.record(EventKind.ITEM_SINK, rec.task(self, node), node=node, item=key)
            return original(self, data, *args, **kwargs)

        return guarded(self, body)

    execute: Callable[..., Any] = {
        "source": source,
        "map": map_,
        "filter": filter_,
        "sink": sink,
    }[role]
    execute.__name__ = execute.__qualname__ = "execute"
    execute.__doc__ = original.__doc__
    namespace: dict[str, Any] = {"execute": execute}
    calls = getattr(cls, "call_service", None)
    if callable(calls):

        def call_service(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            task = rec.task(self, node)
            rec.push_caller(service_name, task)
            try:
                return calls(self, service_name, *args, **kwargs)
            except Exception as exc:
                rec.call_failed(exc)
                raise
            finally:
                rec.drop_caller(service_name, task)

        call_service.__doc__ = calls.__doc__
        namespace["call_service"] = call_service
    return _like(cls, namespace)


def _label(function: Any) -> str:
    """A stage's label, as the reference names it: the class's name, or the callable's,
    or the iterable's type."""
    if isinstance(function, type):
        return function.__name__
    if callable(function):
        return str(getattr(function, "__name__", type(function).__name__))
    return type(function).__name__


# -- the environment the test gets -----------------------------------------------------
class ObservedStream:
    """A runtime's ``DataStream`` whose ``map``/``filter``/``sink`` stages are observed.

    Anything else (``flatmap``, ``keyby``, ``connect``, ...) is the runtime's own
    stream method, unobserved: the stages after it are not seen by the fixtures.
    """

    def __init__(self, job: RuntimeJob, stream: Any, node: str, ancestors: tuple[str, ...]):
        self._job = job
        self._stream = stream
        self._node = node
        self._ancestors = ancestors

    def _add(self, role: str, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True
        stream = self._job.declare(
            role,
            function,
            lambda: getattr(self._stream, role)(function, *args, **kwargs),
            (self._node, *self._ancestors),
        )
        return self if role == "sink" else stream

    def map(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``map``, observed."""
        __tracebackhide__ = True
        return self._add("map", function, args, kwargs)

    def filter(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``filter``, observed."""
        __tracebackhide__ = True
        return self._add("filter", function, args, kwargs)

    def sink(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``sink``, observed."""
        __tracebackhide__ = True
        return self._add("sink", function, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class ObservedEnvironment:
    """The runtime's own environment, with what the test registers and builds observed
    and its ending calls recorded as waits. Everything else is the runtime's."""

    def __init__(self, job: RuntimeJob) -> None:
        self._lifecycle_job = job

    def register_service(self, name: str, service_class: Any, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``register_service``, with the service class observed."""
        __tracebackhide__ = True
        return self._lifecycle_job.register_service(name, service_class, args, kwargs)

    def from_batch(self, source: Any, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``from_batch``, its source observed."""
        __tracebackhide__ = True
        return self._lifecycle_job.source("from_batch", source, args, kwargs)

    def from_source(self, source: Any, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``from_source`` (streaming), its source observed."""
        __tracebackhide__ = True
        return self._lifecycle_job.source("from_source", source, args, kwargs)

    def from_collection(self, source: Any, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``from_collection``, its source observed."""
        __tracebackhide__ = True
        return self._lifecycle_job.source("from_collection", source, args, kwargs)

    def submit(self, autostop: bool = False, **kwargs: Any) -> Any:
        """The runtime's ``submit``: with ``autostop=True`` the job's ending call."""
        __tracebackhide__ = True
        return self._lifecycle_job.submit(autostop, kwargs)

    def stop(self, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``stop()``: an ending call."""
        __tracebackhide__ = True
        return self._lifecycle_job.end("stop", args, kwargs)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """The runtime's ``close()``: an ending call."""
        __tracebackhide__ = True
        return self._lifecycle_job.end("close", args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lifecycle_job.env, name)

    def __repr__(self) -> str:
        return f"<observed {self._lifecycle_job.env!r} job={self._lifecycle_job.job!r}>"


class RuntimeJob:
    """One fixture job on a real runtime: the runtime's environment, its observation,
    its ending calls under the deadline, and what teardown needs.

    ``target`` supplies the runtime: ``environment(name, **kwargs)`` (a fresh
    environment, prepared as for the conformance suite), ``thread_allowlist``,
    ``grace``, and optionally ``hold``, ``service_bases``, ``route_logs(env)`` and
    ``release_environment(env)``.
    """

    def __init__(
        self,
        target: Any,
        *,
        name: str,
        job: str,
        trace: Trace,
        deadline: float,
        budget: Callable[[float], float],
        env_kwargs: dict[str, Any],
    ) -> None:
        self.target = target
        self.job = job
        self.trace = trace
        self.deadline = deadline
        self._budget = budget
        self.rec = _Recorder(trace, job)
        self.env = target.environment(name, **env_kwargs)
        self.observed = ObservedEnvironment(self)
        self._nodes = itertools.count()
        self._declared: list[tuple[str, str, tuple[str, ...]]] = []
        self._services = 0
        self.submitted = False
        self.ended = False
        self._threads_before: set[threading.Thread] = set()
        self._ours: set[threading.Thread] = set()
        self._checked = False
        self._hung = False

    # -- building ------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self._services or self._declared)

    def register_service(
        self, name: str, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        __tracebackhide__ = True
        if isinstance(cls, type):
            bases = tuple(getattr(self.target, "service_bases", ()))
            cls = observe_service(cls, name, self.rec, bases)
        result = self.env.register_service(name, cls, *args, **kwargs)
        self._services += 1
        return result

    def source(
        self, how: str, source: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ObservedStream:
        __tracebackhide__ = True
        return self.declare(
            "source", source, lambda: getattr(self.env, how)(source, *args, **kwargs), ()
        )

    def declare(
        self, role: str, function: Any, add: Callable[[], Any], ancestors: tuple[str, ...]
    ) -> ObservedStream:
        """Add a stage with the runtime's own call ``add``, then observe its function."""
        __tracebackhide__ = True
        pipeline = self.env.pipeline
        before = len(pipeline)
        stream = add()
        if len(pipeline) != before + 1 or not hasattr(pipeline[-1], "function_class"):
            raise TypeError(
                f"sage_lifecycle cannot observe {role}({function!r}): the runtime did not "
                "add one transformation with a function_class to env.pipeline"
            )
        transformation = pipeline[-1]
        node = f"{role}{next(self._nodes)}:{_label(function)}"
        transformation.function_class = observe_function(
            transformation.function_class, node, role, self.rec
        )
        self._declared.append((node, role, ancestors))
        if ancestors:
            self.rec.downstream.setdefault(ancestors[0], []).append(node)
        return ObservedStream(self, stream, node, ancestors)

    # -- running -------------------------------------------------------------------
    def _start(self) -> None:
        if self.submitted:
            return
        self.submitted = True
        for node, role, ancestors in self._declared:
            self.rec.record(EventKind.NODE_DECLARE, node, role=role, ancestors=ancestors)
        route = getattr(self.target, "route_logs", None)
        if callable(route):
            route(self.env)
        self._threads_before = set(threading.enumerate())

    def submit(self, autostop: bool, kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True
        self._start()

        def submit() -> Any:
            __tracebackhide__ = True
            return self.env.submit(autostop=autostop, **kwargs)

        if autostop:
            return self._ending("submit", submit)
        return self._call_within_deadline("submit", submit, recorded=False)

    def end(self, how: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        __tracebackhide__ = True
        if not self.submitted:  # nothing runs: the runtime's own answer, unrecorded
            return getattr(self.env, how)(*args, **kwargs)

        def end() -> Any:
            __tracebackhide__ = True
            return getattr(self.env, how)(*args, **kwargs)

        return self._ending(how, end)

    def _ending(self, subject: str, call: Callable[[], Any]) -> Any:
        """Run an ending call as a recorded wait, then check the job's threads once."""
        __tracebackhide__ = True
        try:
            return self._call_within_deadline(subject, call, recorded=True)
        finally:
            self.ended = True
            self.after_wait()

    def _call_within_deadline(
        self, subject: str, call: Callable[[], Any], *, recorded: bool
    ) -> Any:
        __tracebackhide__ = True
        from .reference import JobHangError

        rec = self.rec
        begin = rec.record(EventKind.WAIT_BEGIN, subject) if recorded else None
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            __tracebackhide__ = True
            try:
                box["value"] = call()
            except BaseException as exc:
                box["error"] = exc
                if begin is not None:
                    rec.record(
                        EventKind.WAIT_END,
                        subject,
                        begin=begin.seq,
                        outcome="raised",
                        reported=rec.failures.reported(exc),
                    )
            else:
                if begin is not None:
                    rec.record(EventKind.WAIT_END, subject, begin=begin.seq, outcome="returned")
            finally:
                done.set()

        thread = threading.Thread(target=run, name=f"lifecycle {self.job} {subject}", daemon=True)
        self._ours.add(thread)
        thread.start()
        deadline = self._budget(self.deadline)
        if not done.wait(deadline):
            self._hung = True  # its threads are the hang's, not leaks: no thread check
            if begin is None:
                begin = rec.record(EventKind.WAIT_BEGIN, subject, autostop=False)
            stacks = format_thread_stacks()
            rec.record(
                EventKind.WAIT_DEADLINE, subject, begin=begin.seq, deadline=deadline, stacks=stacks
            )
            raise JobHangError(
                f"{subject}() of job {self.job!r} did not return within its deadline of "
                f"{deadline:.3g} s; the lifecycle report shows the job's thread stacks"
            )
        route = getattr(self.target, "route_logs", None)
        if callable(route):
            route(self.env)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def after_wait(self) -> None:
        """Once, after the first ending call: let the job's threads end within the
        target's grace, and record the ones still alive (not kept on purpose)."""
        if self._checked or self._hung:
            return
        self._checked = True
        allow = tuple(getattr(self.target, "thread_allowlist", ()))
        new = [
            t
            for t in threading.enumerate()
            if t not in self._threads_before
            and t not in self._ours
            and not (allow and t.name.startswith(allow))
        ]
        hold = float(getattr(self.target, "hold", 0.0))
        grace = float(self.target.grace)
        alive = still_alive(new, self._budget(grace))
        if hold:  # a runtime that polls: what it still does shows within a quiet period
            self.trace.wait_idle(hold, timeout=self._budget(grace))
        for t in alive:
            self.rec.record(EventKind.THREAD_ALIVE, t.name)

    # -- teardown ------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why this job's verdict would not be about what the test meant, if so (as on
        the reference: never submitted, or submitted without autostop and never ended)."""
        return unended(
            self.job,
            built=self.built,
            submitted=self.submitted,
            ended=self.ended,
            ending="env.stop() or env.close() (teardown stopped it with stop(), and the "
            "contract was checked on that stop)",
        )

    def end_if_running(self, timeout: float) -> None:
        """Teardown: end a job the test left running with ``stop()``, judged on it."""
        if self.submitted and not self.ended:
            self.end("stop", (), {})

    def threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in self._threads_before]

    def release_now(self, timeout: float) -> None:
        """Ctrl-C or the test's timeout: nothing bounded can stop a black box; release."""

    def settle(self, timeout: float) -> None:
        """Nothing more to wait for: :meth:`after_wait` gave the job its grace."""

    def release(self, timeout: float) -> list[str]:
        release = getattr(self.target, "release_environment", None)
        if callable(release):
            release(self.env)
        return []


def unended(job: str, *, built: bool, submitted: bool, ended: bool, ending: str) -> str | None:
    """Why a job's verdict would not be about what the test meant: built and never
    submitted, or submitted without autostop and never ended (``ending``: how to end it)."""
    if built and not submitted:
        return (
            f"job {job!r} was built but never submitted, so nothing of it was checked; end "
            "the test with env.submit(autostop=True)"
        )
    if submitted and not ended:
        return (
            f"job {job!r} was submitted without autostop and never ended, so what it did "
            f"depends on when teardown stopped it; end it in the test with {ending}"
        )
    return None
