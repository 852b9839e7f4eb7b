"""The reference ``Dispatcher``: SAGE's local job lifecycle, done right.

Vocabulary follows SAGE: ``tasks`` holds the task instances that have not yet stopped,
``services`` the services not yet cleaned up, ``is_running`` is true from start until the
job is finished, and ``receive_node_stop_signal(node)`` is how a task reports that it
stopped. The life of a job, each step recorded into the observer:

1. every service starts on its own thread: constructed, then ``setup()``;
2. a controller thread waits for the setups, then starts one thread per task instance;
3. sources emit until ``execute()`` returns ``None`` (a batch source) or a ``StopSignal``
   (a streaming source, for which ``None`` means "nothing now"), or a stop is
   requested (``env.stop()``: a streaming job runs until then); when the
   last instance of a stage ends, the stage sends one stop signal to each downstream
   instance, after every item its instances sent (the fan-out is P + Q, not P x Q);
   each instance stops once every upstream stage has signalled, and then signals the
   dispatcher;
4. when the last task has stopped, the controller joins the task threads, then cleans
   the services one at a time in reverse registration order (each exactly once, even
   when another's cleanup raised) and joins their threads;
5. the job is finished: ``is_running`` turns false and the condition wakes the waiters.

The wait (``wait``) is event-driven: it sleeps on the dispatcher's condition, which every
state change notifies, so it returns as soon as the job is finished; it has a deadline
and, past it, fails with the stacks of the job's threads. Failures of setup, cleanup and
tasks are collected and raised together by the wait, after everything was cleaned.

Subclasses (a user's dispatcher logic, the mutants of the catalogue: one bug each) may
override these steps of :class:`Dispatcher`, each documented where it is defined:
``receive_node_stop_signal`` (a task reports its stop), ``cleanup_services`` (SAGE's
``_cleanup_services_after_batch_completion``: clean them all), ``clean_service`` (one),
``forget_service`` (drop a cleaned one), ``is_finished`` (what the wait waits for),
``wait``, ``stop`` and ``close`` (the ending calls), and ``task_class`` (how a task runs:
its ``stage_ended`` and ``emit``). They may call ``record`` (an event into the trace),
``add_error`` (a failure for the wait to raise), ``spawn`` and ``join_thread`` (a job
thread, recorded), and ``point`` (a scheduling point).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from queue import Queue
from typing import Any, NamedTuple

from .._stacks import format_thread_stacks
from ..trace import Event, EventKind, NullObserver, Observer, describe_error
from .errors import (
    JobFailed,
    JobHangError,
    LifecycleError,
    ServiceCallTimeout,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from .functions import _is_stop_signal

__all__ = [
    "USER_ERRORS",
    "Dispatcher",
    "Item",
    "NodeSpec",
    "RuntimeContext",
    "ServiceFactory",
    "ServiceRuntime",
    "TaskRuntime",
    "clean_recorded",
]


class _Stop:
    """The stop signal that flows downstream after an instance's last item."""

    def __repr__(self) -> str:
        return "STOP"


_STOP = _Stop()
_CLEANUP = _Stop()

#: What user code (a service, a function) may raise and the job records as its failure.
#: SystemExit and KeyboardInterrupt are among them, so a job thread never dies silently;
#: the wait re-raises them as they are instead of wrapping them in JobFailed.
USER_ERRORS = (Exception, SystemExit, KeyboardInterrupt)

#: How long a streaming source that had nothing waits before asking again (on the stop
#: event: a stop request ends the wait at once).
_IDLE_POLL = 0.01


class Item(NamedTuple):
    """An item in flight between tasks: the key it was emitted under and its value."""

    key: str
    value: Any


@dataclass(frozen=True)
class ServiceFactory:
    """A registered service: its name and how to construct it."""

    name: str
    cls: type[Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class NodeSpec:
    """A logical pipeline stage: name, role, how to build its function, and its edges."""

    name: str
    role: str  # "source", "map", "filter" or "sink"
    factory: Callable[[], Any]
    parallelism: int = 1
    #: A streaming source (``from_source``): ``None`` means "nothing now", and a
    #: ``StopSignal`` ends it. A batch source (``from_batch``) ends at ``None``.
    streaming: bool = False
    upstream: NodeSpec | None = None
    downstream: list[NodeSpec] = field(default_factory=list)

    @property
    def ancestors(self) -> tuple[str, ...]:
        """Names of every node upstream of this one, nearest first."""
        out: list[str] = []
        node = self.upstream
        while node is not None:
            out.append(node.name)
            node = node.upstream
        return tuple(out)


class RuntimeContext:
    """What a running function or service sees of the runtime: ``call_service``."""

    def __init__(self, dispatcher: Dispatcher, owner: str) -> None:
        self.dispatcher = dispatcher
        self.owner = owner

    def call_service(
        self,
        name: str,
        *args: Any,
        timeout: float | None = None,
        method: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``method`` of service ``name``: SAGE's context signature, so functions and
        services written on SAGE's own base classes run on the reference too."""
        return self.dispatcher.call_service(
            self.owner, name, args, kwargs, method=method, timeout=timeout
        )


@dataclass(eq=False)
class _Call:
    caller: str
    method: str | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Future[Any]


class ServiceRuntime:
    """One service: its thread, its request queue and its lifecycle state."""

    def __init__(self, dispatcher: Dispatcher, spec: ServiceFactory) -> None:
        self.dispatcher = dispatcher
        self.spec = spec
        self.name = spec.name
        self.instance: Any = None
        self.setup_error: BaseException | None = None
        self.state = "new"  # new -> ready | failed -> closing -> closed
        self.setup_done = threading.Event()
        self.cleaned = False
        #: What the service's cleanup raised, if it raised.
        self.cleanup_error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self._queue: Queue[_Call | _Stop] = Queue()
        self._lock = threading.Lock()

    # -- called from other threads -------------------------------------------------
    def call(
        self,
        caller: str,
        method: str | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
    ) -> Any:
        if threading.current_thread() is self.thread:
            raise LifecycleError(
                f"service {self.name!r} called itself through "
                f"call_service({self.name!r}, method={method!r}); call the method directly"
            )
        future: Future[Any] = Future()
        with self._lock:
            if self.state in ("closing", "closed"):
                message = (
                    f"{caller} called {self.name}.{method or '__call__'}() after the "
                    "service's cleanup began"
                )
                self.dispatcher.record(
                    EventKind.SERVICE_CALL_REJECTED,
                    self.name,
                    error=message,
                    method=method,
                    caller=caller,
                )
                raise ServiceUnavailableError(message)
            self._queue.put(_Call(caller, method, args, kwargs, future))
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise ServiceCallTimeout(
                f"{caller}'s call to {self.name}.{method or '__call__'}() did not complete "
                f"within {timeout} s; pass timeout=... to call_service, or raise the job's "
                "deadline"
            ) from None

    def begin_cleanup(self) -> None:
        """Refuse new calls and queue the cleanup behind the calls already queued."""
        with self._lock:
            if self.state in ("closing", "closed"):
                return
            self.state = "closing"
            self._queue.put(_CLEANUP)

    def shut_down(self) -> None:
        """Best effort: make the service's thread exit, whatever state it was left in."""
        self.begin_cleanup()
        self._queue.put(_CLEANUP)  # harmless if the thread already left its loop

    # -- the service's own thread --------------------------------------------------
    def run(self) -> None:
        d = self.dispatcher
        d.record(EventKind.SERVICE_SETUP_BEGIN, self.name)

        def construct_and_set_up() -> None:
            instance = self.spec.cls(*self.spec.args, **self.spec.kwargs)
            # A class with __slots__ cannot hold a context: it just cannot call services.
            with contextlib.suppress(AttributeError):
                instance.ctx = RuntimeContext(d, f"service:{self.name}")
            self.instance = instance
            d.record(EventKind.SERVICE_CONSTRUCT, self.name, cls=type(instance).__name__)
            setup = getattr(instance, "setup", None)
            if callable(setup):
                setup()

        self.setup_error = d.run_user_code(
            EventKind.SERVICE_SETUP_END, self.name, construct_and_set_up
        )
        with self._lock:
            if self.state == "new":
                self.state = "ready" if self.setup_error is None else "failed"
        self.setup_done.set()

        while True:
            request = self._queue.get()
            if isinstance(request, _Stop):
                break
            self._serve(request)

        self.run_cleanup()
        with self._lock:
            self.state = "closed"

    def run_cleanup(self) -> None:
        """Run the instance's ``cleanup()`` once, recorded; later calls do nothing.

        The service's own thread calls it after the calls queued before the cleanup.
        """
        with self._lock:
            if self.cleaned or self.instance is None:
                return
            self.cleaned = True
        self.cleanup_error = clean_recorded(self.dispatcher, self)

    def _serve(self, call: _Call) -> None:
        d = self.dispatcher
        label = call.method or "__call__"
        if self.setup_error is not None or self.instance is None:
            refused = ServiceUnavailableError(
                f"{call.caller} called {self.name}.{label}(), but the service's setup "
                f"failed: {describe_error(self.setup_error or RuntimeError('unknown'))}"
            )
            refused.__cause__ = self.setup_error  # the caller's error carries the setup's
            call.future.set_exception(refused)
            return
        target = getattr(self.instance, label, None)
        if not callable(target):
            call.future.set_exception(
                LifecycleError(
                    f"{call.caller} called {self.name}.{label}(), but "
                    f"{type(self.instance).__name__} has no such method; pass "
                    "method='<name of a method>' to call_service"
                )
            )
            return
        begin = d.record(EventKind.SERVICE_CALL_BEGIN, self.name, method=label, caller=call.caller)
        begin_seq = begin.seq if begin is not None else -1
        try:
            result = target(*call.args, **call.kwargs)
        except USER_ERRORS as exc:
            d.record(
                EventKind.SERVICE_CALL_END,
                self.name,
                error=describe_error(exc),
                begin=begin_seq,
                method=label,
            )
            call.future.set_exception(exc)
        else:
            d.record(EventKind.SERVICE_CALL_END, self.name, begin=begin_seq, method=label)
            call.future.set_result(result)


def clean_recorded(dispatcher: Dispatcher, runtime: ServiceRuntime) -> BaseException | None:
    """Run a service instance's ``cleanup()`` on the calling thread, between its recorded
    cleanup begin and end, with no guard against a second run (``run_cleanup`` has that
    guard). A failure is recorded and collected for the wait; it is returned."""
    dispatcher.record(EventKind.SERVICE_CLEANUP_BEGIN, runtime.name)
    cleanup = getattr(runtime.instance, "cleanup", None)
    return dispatcher.run_user_code(
        EventKind.SERVICE_CLEANUP_END, runtime.name, cleanup if callable(cleanup) else _nothing
    )


def _nothing() -> None:
    pass


class _NodeEnd:
    """How many instances of one stage are still running; the last one to end says so
    downstream. One stop per downstream instance per upstream stage: the fan-out of
    stop signals between two parallel stages grows as P + Q, not P x Q."""

    def __init__(self, instances: int) -> None:
        self._lock = threading.Lock()
        self.running = instances

    def end_one(self) -> int:
        """Count one instance as ended; return how many are still running."""
        with self._lock:
            self.running -= 1
            return self.running


class TaskRuntime:
    """One parallel instance of a pipeline stage, run on its own thread."""

    def __init__(self, dispatcher: Dispatcher, node: NodeSpec, index: int) -> None:
        self.dispatcher = dispatcher
        self.node = node
        self.index = index
        self.name = f"{node.name}[{index}]"
        self.queue: Queue[Item | _Stop] = Queue()
        self.targets: list[list[TaskRuntime]] = []
        self._next: list[int] = []
        #: Stop signals this instance waits for: one from each upstream stage.
        self.expected_stops = 0
        #: Shared by the instances of this stage (set by the dispatcher).
        self.node_end = _NodeEnd(1)
        self.thread: threading.Thread | None = None
        self.function: Any = None

    def connect(self, downstream: list[TaskRuntime]) -> None:
        self.targets.append(downstream)
        self._next.append(self.index % len(downstream))
        if self.index == 0:  # the stage, not each instance, sends the stop
            for t in downstream:
                t.expected_stops += 1

    def emit(self, item: Item) -> None:
        """Hand an item on to the next instance of each downstream stage, round robin."""
        for i, edge in enumerate(self.targets):
            edge[self._next[i] % len(edge)].queue.put(item)
            self._next[i] += 1

    def stage_ended(self) -> bool:
        """Count this instance as ended; whether the whole stage has now ended."""
        return self.node_end.end_one() == 0

    def _send_stop(self) -> None:
        """When the stage's last instance ends, stop every downstream instance: each
        instance's items are already queued ahead of it (queues are FIFO)."""
        if self.stage_ended():
            for edge in self.targets:
                for target in edge:
                    target.queue.put(_STOP)

    def _fail(self, exc: BaseException) -> None:
        event = self.dispatcher.record(
            EventKind.TASK_ERROR, self.name, error=describe_error(exc), node=self.node.name
        )
        self.dispatcher.add_error(exc, event)

    def run(self) -> None:
        d = self.dispatcher
        node = self.node
        d.record(
            EventKind.TASK_START,
            self.name,
            node=node.name,
            role=node.role,
            ancestors=node.ancestors,
        )
        try:
            try:
                self.function = node.factory()
                self.function.ctx = RuntimeContext(d, self.name)
            except USER_ERRORS as exc:
                self._fail(exc)
                self.function = None
            if node.role == "source":
                self._run_source()
            else:
                self._run_stage()
        finally:
            self._send_stop()
            d.record(EventKind.TASK_STOP, self.name, node=node.name)
            d.point(f"stop signal of {self.name}")
            d.receive_node_stop_signal(self)

    def _run_source(self) -> None:
        if self.function is None:
            return
        d = self.dispatcher
        n = 0
        try:
            while not d.stop_requested.is_set():
                value = self.function.execute()
                if _is_stop_signal(value):
                    return
                if value is None:
                    if not self.node.streaming:
                        return
                    # Nothing now: ask again soon, at once if the job is stopped.
                    d.stop_requested.wait(_IDLE_POLL)
                    continue
                key = f"{self.node.name}#{n}"
                n += 1
                d.record(EventKind.ITEM_EMIT, self.name, node=self.node.name, item=key)
                self.emit(Item(key, value))
        except USER_ERRORS as exc:
            self._fail(exc)

    def _run_stage(self) -> None:
        d = self.dispatcher
        role = self.node.role
        failed = self.function is None
        stops = 0
        while stops < self.expected_stops:
            message = self.queue.get()
            if isinstance(message, _Stop):
                stops += 1
                continue
            if failed:  # a failed stage drains its input so upstream never blocks
                continue
            try:
                if role == "map":
                    self.emit(Item(message.key, self.function.execute(message.value)))
                elif role == "filter":
                    if self.function.execute(message.value):
                        self.emit(message)
                    else:
                        d.record(
                            EventKind.ITEM_DROP, self.name, node=self.node.name, item=message.key
                        )
                else:
                    d.record(EventKind.ITEM_SINK, self.name, node=self.node.name, item=message.key)
                    self.function.execute(message.value)
            except USER_ERRORS as exc:
                self._fail(exc)
                failed = True


class Dispatcher:
    """Runs one job: services, task threads, stop signals, cleanup and the wait.

    Example::

        d = Dispatcher("job#1", observer=trace, deadline=10.0)
        d.start(services, nodes)
        d.wait("submit")   # blocks until finished; raises JobFailed / JobHangError
    """

    #: The class of one task instance; a subclass may change how a task runs.
    task_class: type[TaskRuntime]
    #: Where :meth:`point` parks a thread: the harness's scheduler, or ``None`` (pass).
    scheduling_point: Callable[[str], None] | None = None

    def __init__(
        self, job: str, *, observer: Observer | None = None, deadline: float = 60.0
    ) -> None:
        self.job = job
        self.observer: Observer = observer if observer is not None else NullObserver()
        self.deadline = deadline
        #: Task instances that have not stopped yet, by name (SAGE's ``tasks``).
        self.tasks: dict[str, TaskRuntime] = {}
        #: Services not yet cleaned up, by name (SAGE's ``services``).
        self.services: dict[str, ServiceRuntime] = {}
        self.is_running = False
        #: How many stop signals arrived for a task that had already stopped.
        self.duplicate_stop_signals = 0
        self.stop_requested = threading.Event()
        self._cond = threading.Condition()
        self._registry: dict[str, ServiceRuntime] = {}
        self._task_list: list[TaskRuntime] = []
        self._threads: list[threading.Thread] = []
        self._controller: threading.Thread | None = None
        self._batch_complete = False
        self._finished = False
        self._reaped = False
        self._errors: list[tuple[BaseException, int]] = []
        self._errors_raised = False
        #: Whether a wait has run to its end (returned, raised, or hit its deadline).
        self.waited = False
        self._lock = threading.Lock()

    # -- recording -----------------------------------------------------------------
    def record(
        self, kind: EventKind, subject: str, *, error: str | None = None, **data: Any
    ) -> Event | None:
        """Record an event of this job into the observer (before its effect shows)."""
        return self.observer.record(kind, subject, job=self.job, error=error, **data)

    def add_error(self, exc: BaseException, event: Event | None) -> None:
        """Collect a failure (and the event that recorded it) for the wait to raise."""
        with self._lock:
            self._errors.append((exc, event.seq if event is not None else -1))

    def run_user_code(
        self, end: EventKind, subject: str, step: Callable[[], object]
    ) -> BaseException | None:
        """Run user code (a service's setup or cleanup): record ``end`` for ``subject``
        when it returns, or with its error when it raises, and collect that error for the
        wait. Returns the error, if any."""
        try:
            step()
        except USER_ERRORS as exc:
            self.add_error(exc, self.record(end, subject, error=describe_error(exc)))
            return exc
        self.record(end, subject)
        return None

    def spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """Start a job thread named ``<job>/<name>`` running ``target``, recorded."""
        thread = threading.Thread(target=target, name=f"{self.job}/{name}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        self.record(EventKind.THREAD_START, thread.name)
        thread.start()
        return thread

    def join_thread(self, thread: threading.Thread) -> None:
        """Join a job thread and record that it was joined (``no-thread-leak``'s evidence)."""
        thread.join()
        self.record(EventKind.THREAD_JOINED, thread.name)

    def point(self, label: str) -> None:
        """A scheduling point: under the harness's scheduler, the calling thread waits
        here until the schedule lets it go, so another thread may run first; otherwise
        nothing. The dispatcher marks the delivery of each stop signal; a subclass may
        mark its own steps, between which a thread could be preempted."""
        hook = self.scheduling_point
        if hook is not None:
            hook(label)

    def threads(self) -> list[threading.Thread]:
        """Every thread this job started."""
        with self._lock:
            return list(self._threads)

    # -- starting ------------------------------------------------------------------
    def start(self, services: Sequence[ServiceFactory], nodes: Sequence[NodeSpec]) -> None:
        """Start the job: services first, then (on the controller) every task instance."""
        for spec in services:
            runtime = ServiceRuntime(self, spec)
            self._registry[spec.name] = runtime
            self.services[spec.name] = runtime
        instances: dict[str, list[TaskRuntime]] = {}
        for node in nodes:
            instances[node.name] = [self.task_class(self, node, i) for i in range(node.parallelism)]
            end = _NodeEnd(node.parallelism)
            for task in instances[node.name]:
                task.node_end = end
        for node in nodes:
            for downstream in node.downstream:
                for task in instances[node.name]:
                    task.connect(instances[downstream.name])
        for group in instances.values():
            for task in group:
                self.tasks[task.name] = task
                self._task_list.append(task)
                # Announce the task before any thread runs: a wait that returns before
                # the task even started has still returned early.
                self.record(
                    EventKind.TASK_CREATE,
                    task.name,
                    node=task.node.name,
                    role=task.node.role,
                    ancestors=task.node.ancestors,
                )
        with self._cond:
            self.is_running = True
            self._batch_complete = not self.tasks
        for runtime in self._registry.values():
            runtime.thread = self.spawn(f"service:{runtime.name}", runtime.run)
        self._controller = self.spawn("controller", self._control)

    def _control(self) -> None:
        try:
            for runtime in self._registry.values():
                runtime.setup_done.wait()
            for task in self._task_list:
                task.thread = self.spawn(task.name, task.run)
            with self._cond:
                self._cond.wait_for(lambda: self._batch_complete)
            for task in self._task_list:
                if task.thread is not None:
                    self.join_thread(task.thread)
            self.cleanup_services()
        finally:
            with self._cond:
                self.is_running = False
                self._finished = True
                self._cond.notify_all()

    # -- stop signals and cleanup --------------------------------------------------
    def receive_node_stop_signal(self, node: TaskRuntime | str) -> bool:
        """Record that a task stopped; the last one completes the batch.

        Safe against concurrent and duplicate signals: a signal for a task that already
        stopped changes nothing and returns ``False``.
        """
        name = node if isinstance(node, str) else node.name
        with self._cond:
            if name not in self.tasks:
                self.duplicate_stop_signals += 1
                return False
            del self.tasks[name]
            if not self.tasks:
                self._batch_complete = True
            self._cond.notify_all()
            return True

    def cleanup_services(self) -> None:
        """Clean every service exactly once, in reverse registration order, and join it.

        Runs only after every task stopped, so no task can still call a service. A
        cleanup that raises is recorded and the next service is cleaned all the same.
        """
        for runtime in reversed(list(self._registry.values())):
            self.clean_service(runtime)

    def clean_service(self, runtime: ServiceRuntime) -> None:
        """Clean one service on its own thread, behind its queued calls, and join it."""
        runtime.begin_cleanup()
        if runtime.thread is not None:
            self.join_thread(runtime.thread)
        self.forget_service(runtime)

    def forget_service(self, runtime: ServiceRuntime) -> None:
        """Drop a cleaned service from ``services`` and wake the waiters."""
        with self._cond:
            self.services.pop(runtime.name, None)
            self._cond.notify_all()

    def request_stop(self) -> None:
        """Ask the sources to stop after their current item (``env.stop()``)."""
        self.stop_requested.set()

    def stop(self, subject: str = "stop", timeout: float | None = None) -> None:
        """End a job (``env.stop()``): ask the sources to stop, then wait for the end.

        What is in flight drains, every service is cleaned, every thread joined, and the
        failures are raised, as by ``submit(autostop=True)``. Safe to call again and from
        several threads at once: each call returns once the job is finished, and the
        failures are raised once.
        """
        begin = self.begin_wait(subject)  # before the request: what it owes is what came before
        self.request_stop()
        self.wait(subject, timeout, begin=begin)

    def close(self, timeout: float | None = None) -> None:
        """Release the job (``env.close()``): stop it unless a wait already ended it."""
        if not self.waited:
            self.stop("close", timeout)

    # -- waiting -------------------------------------------------------------------
    def is_finished(self) -> bool:
        """The wait's predicate: every task stopped, every service cleaned, all joined."""
        return self._finished and not self.tasks and not self.services

    def _reap(self) -> None:
        """Join the controller, once it has finished; never block on a running job."""
        if self._finished and not self._reaped and self._controller is not None:
            self._reaped = True
            self.join_thread(self._controller)

    def begin_wait(self, subject: str) -> Event | None:
        """Record that a wait call began; ``submit`` does so before starting the job."""
        return self.record(EventKind.WAIT_BEGIN, subject)

    def wait(
        self,
        subject: str = "submit",
        timeout: float | None = None,
        *,
        begin: Event | None = None,
    ) -> None:
        """Block until the job is finished, then raise the failures it collected.

        Raises :class:`JobHangError` with every job thread's stack if the job does not
        finish within ``timeout`` (the dispatcher's deadline by default), and
        :class:`JobFailed` carrying every setup, cleanup and task failure otherwise.
        """
        limit = self.deadline if timeout is None else timeout
        if begin is None:
            begin = self.begin_wait(subject)
        begin_seq = begin.seq if begin is not None else -1
        with self._cond:
            finished = self._cond.wait_for(self.is_finished, limit)
        self.waited = True
        if not finished:
            stacks = format_thread_stacks(t for t in self.threads() if t.is_alive())
            self.record(
                EventKind.WAIT_DEADLINE,
                subject,
                begin=begin_seq,
                deadline=limit,
                stacks=stacks,
            )
            self.record(EventKind.WAIT_END, subject, begin=begin_seq, outcome="deadline")
            raise JobHangError(
                f"job {self.job!r}: {subject}() did not finish within its deadline of "
                f"{limit:.3g} s; tasks not stopped: {sorted(self.tasks)}; services not "
                f"cleaned: {sorted(self.services)}. Stacks of the job's threads:\n{stacks}"
            )
        self._reap()
        with self._lock:
            pending = [] if self._errors_raised else list(self._errors)
            self._errors_raised = True
        if pending:
            self.record(
                EventKind.WAIT_END,
                subject,
                begin=begin_seq,
                outcome="raised",
                reported=tuple(seq for _, seq in pending),
            )
            exits = [exc for exc, _ in pending if not isinstance(exc, Exception)]
            if exits:  # SystemExit / KeyboardInterrupt from user code: propagate it
                raise exits[0]
            raise JobFailed(
                f"job {self.job!r} finished with {len(pending)} failure(s); every service "
                "was cleaned up",
                [exc for exc, _ in pending if isinstance(exc, Exception)],
            )
        self.record(EventKind.WAIT_END, subject, begin=begin_seq, outcome="returned")

    def settle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the job's own end (the controller finished).

        After a wait that returned early, this lets the trace show what the job did
        next (a late cleanup, say) before it is checked. Forces nothing.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._finished, timeout)

    def release(self, timeout: float) -> list[threading.Thread]:
        """Best effort after a failed or early wait: let the job end and join its threads.

        Asks the sources to stop (a streaming job may still be running), waits up to
        ``timeout`` for the job to finish, cleans any service still open
        (a buggy subclass may have skipped it) and joins every thread. Returns the
        threads still alive. Anything this records comes after the wait it follows.
        """
        deadline = time.monotonic() + timeout
        self.request_stop()  # a streaming job nobody stopped would never finish
        if self.settle(timeout):
            for runtime in self._registry.values():
                runtime.shut_down()
        for thread in self.threads():
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        return [t for t in self.threads() if t.is_alive()]

    # -- service calls -------------------------------------------------------------
    def call_service(
        self,
        caller: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        method: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call ``method`` of service ``name`` on its thread and return the result."""
        runtime = self._registry.get(name)
        if runtime is None:
            registered = ", ".join(map(repr, self._registry)) or "none"
            raise ServiceNotFoundError(
                f"{caller} called service {name!r}, which is not registered in job "
                f"{self.job!r} (registered: {registered}); register it with "
                f"env.register_service({name!r}, ServiceClass)"
            )
        return runtime.call(
            caller, method, args, kwargs, self.deadline if timeout is None else timeout
        )


Dispatcher.task_class = TaskRuntime
