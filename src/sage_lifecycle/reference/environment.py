"""``LocalEnvironment`` and ``DataStream``: SAGE's user-facing API on the reference dispatcher.

Code written for SAGE ports by changing imports::

    from sage_lifecycle.reference import BaseService, LocalEnvironment, SinkFunction

    env = LocalEnvironment("hello")
    env.register_service("greeter", Greeter)
    env.from_batch(["a", "b"]).map(str.upper).sink(PrintSink)
    env.submit(autostop=True)   # returns after every service's cleanup ended
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._checks import is_whole_number
from ..trace import Observer
from .dispatcher import Dispatcher, NodeSpec, ServiceFactory
from .errors import JobStateError, PipelineDefinitionError, ServiceRegistrationError
from .functions import _CallableStage, _IterableBatch, _none_item_message

__all__ = ["DataStream", "LocalEnvironment"]

_job_numbers = itertools.count(1)
_job_numbers_lock = threading.Lock()


def _next_job(name: str) -> str:
    with _job_numbers_lock:
        return f"{name}#{next(_job_numbers)}"


def _stage_factory(
    role: str, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, Callable[[], Any]]:
    """Validate a stage at declaration and return its display name and factory."""
    if isinstance(function, type):
        if not callable(getattr(function, "execute", None)):
            raise PipelineDefinitionError(
                f"{role}({function.__name__}): the class has no execute() method; derive "
                f"it from the {role} function base class and implement execute()"
            )
        return function.__name__, lambda: function(*args, **kwargs)
    if callable(function):
        if args or kwargs:
            raise PipelineDefinitionError(
                f"{role}({function!r}, ...): extra arguments are passed to a function "
                "class's constructor, but this stage is a plain callable; drop them or "
                "use a function class"
            )
        name = getattr(function, "__name__", type(function).__name__)
        return name, lambda: _CallableStage(function)
    raise PipelineDefinitionError(
        f"{role}({function!r}): a stage must be a function class with execute() or a "
        f"callable, not {type(function).__name__}"
    )


class DataStream:
    """A stream of items at one node of a pipeline; each call adds a stage downstream."""

    def __init__(self, env: LocalEnvironment, node: NodeSpec) -> None:
        self._env = env
        self._node = node

    def _add(
        self,
        role: str,
        function: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parallelism: int,
    ) -> DataStream:
        self._env._check_open(f"{role}()")
        if not is_whole_number(parallelism, 1):
            raise PipelineDefinitionError(
                f"{role}(..., parallelism={parallelism!r}): parallelism must be an integer >= 1"
            )
        label, factory = _stage_factory(role, function, args, kwargs)
        node = NodeSpec(
            name=self._env._node_name(role, label),
            role=role,
            factory=factory,
            parallelism=parallelism,
            upstream=self._node,
        )
        self._node.downstream.append(node)
        self._env._nodes.append(node)
        return DataStream(self._env, node)

    def map(self, function: Any, *args: Any, parallelism: int = 1, **kwargs: Any) -> DataStream:
        """Transform each item with ``function`` (a ``MapFunction`` class or a callable)."""
        return self._add("map", function, args, kwargs, parallelism)

    def filter(self, function: Any, *args: Any, parallelism: int = 1, **kwargs: Any) -> DataStream:
        """Keep the items for which ``function`` returns true."""
        return self._add("filter", function, args, kwargs, parallelism)

    def sink(self, function: Any, *args: Any, parallelism: int = 1, **kwargs: Any) -> DataStream:
        """Consume each item with ``function`` (a ``SinkFunction`` class or a callable)."""
        return self._add("sink", function, args, kwargs, parallelism)


class LocalEnvironment:
    """A job on the reference dispatcher, with SAGE's ``LocalEnvironment`` API.

    ``observer`` receives every lifecycle event (pass a :class:`~sage_lifecycle.Trace`);
    ``job`` names the job in events (default: ``name#<n>``, numbered in creation order);
    ``deadline`` bounds every wait in seconds; ``dispatcher_class`` lets a test run the
    same job on a subclass of :class:`Dispatcher`, such as a deliberately buggy one;
    ``scheduling_point`` becomes its dispatcher's :attr:`Dispatcher.scheduling_point`
    (the harness's scheduler).
    """

    def __init__(
        self,
        name: str = "local_environment",
        config: dict[str, Any] | None = None,
        *,
        observer: Observer | None = None,
        deadline: float = 60.0,
        dispatcher_class: type[Dispatcher] = Dispatcher,
        job: str | None = None,
        scheduling_point: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"LocalEnvironment(name={name!r}): name must be a non-empty string")
        if (
            isinstance(deadline, bool)
            or not isinstance(deadline, (int, float))
            or not math.isfinite(deadline)
            or deadline <= 0
            or deadline > threading.TIMEOUT_MAX
        ):
            raise ValueError(
                f"LocalEnvironment(deadline={deadline!r}): the deadline must be a positive "
                f"number of seconds up to {threading.TIMEOUT_MAX:.3g}"
            )
        if not (isinstance(dispatcher_class, type) and issubclass(dispatcher_class, Dispatcher)):
            raise TypeError(
                f"LocalEnvironment(dispatcher_class={dispatcher_class!r}): expected "
                "Dispatcher or a subclass of it"
            )
        self.name = name
        self.config = dict(config or {})
        #: The job's id in events and reports: ``job`` if given, else ``name#<n>``.
        self.job = job if job is not None else _next_job(name)
        self.observer = observer
        self.deadline = float(deadline)
        self._dispatcher_class = dispatcher_class
        self._scheduling_point = scheduling_point
        self._services: dict[str, ServiceFactory] = {}
        self._nodes: list[NodeSpec] = []
        self._node_count = itertools.count()
        self._dispatcher: Dispatcher | None = None
        self._closed = False

    # -- building ------------------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self._dispatcher is not None:
            raise JobStateError(
                f"{what} on environment {self.name!r} after submit(); build the whole job "
                "before submitting it, or create a new LocalEnvironment"
            )

    def _node_name(self, role: str, label: str) -> str:
        return f"{role}{next(self._node_count)}:{label}"

    def register_service(
        self, name: str, service_class: type[Any], *args: Any, **kwargs: Any
    ) -> None:
        """Register a service class, constructed with ``*args, **kwargs`` at submit."""
        self._check_open(f"register_service({name!r}, ...)")
        if not isinstance(name, str) or not name:
            raise ServiceRegistrationError(
                f"register_service({name!r}, ...): the service name must be a non-empty string"
            )
        if name in self._services:
            raise ServiceRegistrationError(
                f"register_service({name!r}, ...): a service named {name!r} is already "
                f"registered ({self._services[name].cls.__name__}); choose another name"
            )
        if not isinstance(service_class, type):
            raise ServiceRegistrationError(
                f"register_service({name!r}, {service_class!r}): expected a class (for "
                "example a BaseService subclass), not an instance or function"
            )
        self._services[name] = ServiceFactory(name, service_class, args, dict(kwargs))

    def from_batch(self, source: Any, *args: Any, **kwargs: Any) -> DataStream:
        """Start a pipeline from a ``BatchFunction`` class or a finite iterable."""
        self._check_open("from_batch()")
        if isinstance(source, type):
            label, factory = _stage_factory("from_batch", source, args, kwargs)
        elif isinstance(source, (str, bytes)) or not isinstance(source, Iterable):
            raise PipelineDefinitionError(
                f"from_batch({source!r}): expected a BatchFunction class or an iterable of "
                "items (a list, a range, ...)"
            )
        else:
            if args or kwargs:
                raise PipelineDefinitionError(
                    "from_batch(iterable, ...): extra arguments apply only to a BatchFunction class"
                )
            if isinstance(source, Sequence):
                holes = [i for i, item in enumerate(source) if item is None]
                if holes:
                    raise PipelineDefinitionError(_none_item_message(holes[0]))
            items = source
            label, factory = type(source).__name__, lambda: _IterableBatch(items)
        node = NodeSpec(name=self._node_name("source", label), role="source", factory=factory)
        self._nodes.append(node)
        return DataStream(self, node)

    def from_source(self, source: Any, *args: Any, **kwargs: Any) -> DataStream:
        """Start a streaming pipeline from a ``SourceFunction`` class (as in SAGE 0.3).

        Its ``execute()`` returns an item, ``None`` for "nothing now", or a
        ``StopSignal`` to end. Start the job with ``submit(autostop=False)`` and end it
        with ``stop()`` or ``close()``.
        """
        self._check_open("from_source()")
        if not isinstance(source, type):
            raise PipelineDefinitionError(
                f"from_source({source!r}): expected a SourceFunction class; for a finite "
                "list of items use from_batch(...)"
            )
        label, factory = _stage_factory("from_source", source, args, kwargs)
        node = NodeSpec(
            name=self._node_name("source", label), role="source", factory=factory, streaming=True
        )
        self._nodes.append(node)
        return DataStream(self, node)

    # -- running -------------------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether anything was added to the job: a service or a pipeline."""
        return bool(self._services or self._nodes)

    @property
    def dispatcher(self) -> Dispatcher | None:
        """The job's dispatcher once submitted, else ``None``."""
        return self._dispatcher

    def submit(self, autostop: bool = False) -> str:
        """Start the job; with ``autostop=True`` block until the batch is done.

        Returns the job id. With ``autostop=True`` it returns only after every task
        stopped and every service's ``cleanup()`` ended, and raises
        :class:`~sage_lifecycle.reference.JobFailed` if anything failed on the way.
        """
        if self._dispatcher is not None:
            raise JobStateError(
                f"environment {self.name!r} was already submitted (job {self.job!r}); "
                "create a new LocalEnvironment for each job"
            )
        if not any(n.role == "source" for n in self._nodes):
            raise PipelineDefinitionError(
                f"environment {self.name!r} has no pipeline; add one with "
                "env.from_batch(...).sink(...) before submit()"
            )
        dispatcher = self._dispatcher_class(
            self.job, observer=self.observer, deadline=self.deadline
        )
        if self._scheduling_point is not None:
            dispatcher.scheduling_point = self._scheduling_point
        self._dispatcher = dispatcher
        begin = dispatcher.begin_wait("submit") if autostop else None
        dispatcher.start(list(self._services.values()), list(self._nodes))
        if autostop:
            dispatcher.wait("submit", begin=begin)
        return self.job

    def stop(self) -> None:
        """Stop the sources after their current item, drain, clean up, and wait.

        Raises the job's failures, like ``submit(autostop=True)``, if no wait raised them
        yet.
        """
        if self._dispatcher is None:
            raise JobStateError(
                f"stop() on environment {self.name!r} before submit(); nothing is running"
            )
        self._dispatcher.stop("stop")

    def close(self, timeout: float | None = None) -> None:
        """Stop the job and wait for it unless a wait already did; safe to call twice.

        Raises the job's failures if no wait raised them yet, so they are never lost.
        ``timeout`` bounds the wait instead of the environment's deadline.
        """
        if self._closed:
            return
        self._closed = True
        if self._dispatcher is not None:
            self._dispatcher.close(timeout)

    def __enter__(self) -> LocalEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
