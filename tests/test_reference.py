"""The reference runtime keeps the lifecycle contract, and says clearly what is wrong."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from helpers import DEADLINE, first, join_or_fail, run_in_thread
from sage_lifecycle import EventKind, Trace, assert_contract, check
from sage_lifecycle.gates import Gate
from sage_lifecycle.reference import (
    BaseService,
    BatchFunction,
    Dispatcher,
    FilterFunction,
    JobFailed,
    JobHangError,
    JobStateError,
    LifecycleError,
    LocalEnvironment,
    MapFunction,
    PipelineDefinitionError,
    ServiceCallTimeout,
    ServiceNotFoundError,
    ServiceRegistrationError,
    ServiceUnavailableError,
    SinkFunction,
)

K = EventKind


# -- SAGE's hello_service_world, ported by changing imports -----------------------------


class HelloService(BaseService):
    def __init__(self) -> None:
        self.message = "hello service!"
        self.cleaned = False

    def hello(self) -> str:
        return self.message

    def cleanup(self) -> None:
        self.cleaned = True


class HelloBatch(BatchFunction):
    def __init__(self) -> None:
        self.counter = 0
        self.max_count = 5

    def execute(self) -> str | None:
        if self.counter >= self.max_count:
            return None
        self.counter += 1
        return f"Hello, World! #{self.counter}"


received: list[str] = []


class PrintSink(SinkFunction):
    def execute(self, data: str) -> None:
        received.append(f"{data} / {self.call_service('hello_service', method='hello')}")


def test_hello_service_world_submit_returns_after_the_service_cleanup_ended() -> None:
    received.clear()
    trace = Trace()
    env = LocalEnvironment("hello_service_world", observer=trace)
    env.register_service("hello_service", HelloService)
    env.from_batch(HelloBatch).sink(PrintSink)
    env.submit(autostop=True)

    events = trace.events()
    cleanup_end = first(events, K.SERVICE_CLEANUP_END, "hello_service")
    wait_end = first(events, K.WAIT_END, "submit")
    assert cleanup_end.seq < wait_end.seq
    assert wait_end.get("outcome") == "returned"
    assert received == [f"Hello, World! #{i} / hello service!" for i in range(1, 6)]
    assert [e.kind for e in events if e.subject == "hello_service"] == [
        K.SERVICE_SETUP_BEGIN,
        K.SERVICE_CONSTRUCT,
        K.SERVICE_SETUP_END,
        *[K.SERVICE_CALL_BEGIN, K.SERVICE_CALL_END] * 5,
        K.SERVICE_CLEANUP_BEGIN,
        K.SERVICE_CLEANUP_END,
    ]
    assert_contract(trace)
    assert env.dispatcher is not None
    assert not env.dispatcher.is_running
    assert env.dispatcher.tasks == {}
    assert env.dispatcher.services == {}
    assert not [t for t in env.dispatcher.threads() if t.is_alive()]


def test_hello_service_world_on_the_fixture(
    lifecycle_env: LocalEnvironment, lifecycle_trace: Trace
) -> None:
    received.clear()
    lifecycle_env.register_service("hello_service", HelloService)
    lifecycle_env.from_batch(HelloBatch).sink(PrintSink)
    lifecycle_env.submit(autostop=True)
    assert len(received) == 5
    assert first(lifecycle_trace.events(), K.WAIT_END).get("outcome") == "returned"


# -- the wait blocks while a cleanup blocks, and returns once it is released ------------


def test_submit_does_not_return_while_a_cleanup_blocks_and_returns_once_released() -> None:
    gate = Gate("cleanup:slow", timeout=DEADLINE)

    class SlowToClose(BaseService):
        def cleanup(self) -> None:
            gate.pass_through()

    trace = Trace()
    env = LocalEnvironment("blocking", observer=trace, deadline=DEADLINE)
    env.register_service("slow", SlowToClose)
    env.from_batch([1, 2, 3]).sink(lambda x: None)
    submitter, errors = run_in_thread(lambda: env.submit(autostop=True), "submitter")

    gate.wait_parked(timeout=DEADLINE)
    # Cleanup is parked at a closed gate: it cannot end, so the wait must not have ended.
    assert submitter.is_alive()
    assert not trace.of_kind(K.WAIT_END)
    assert trace.of_kind(K.SERVICE_CLEANUP_BEGIN)
    assert not trace.of_kind(K.SERVICE_CLEANUP_END)

    gate.open()
    join_or_fail(submitter)
    assert errors == []
    events = trace.events()
    cleanup_end = first(events, K.SERVICE_CLEANUP_END, "slow")
    wait_end = first(events, K.WAIT_END)
    # Between the cleanup end and the wait end there is only the reaping of threads:
    # the wait woke on the condition, it did not poll.
    between = [e.kind for e in events if cleanup_end.seq < e.seq < wait_end.seq]
    assert set(between) <= {K.THREAD_JOINED}
    assert first(events, K.WAIT_BEGIN).seq < first(events, K.THREAD_START).seq
    assert_contract(trace)


def test_a_wait_past_its_deadline_fails_with_the_stacks_of_the_job_threads() -> None:
    gate = Gate("cleanup:stuck", timeout=DEADLINE)

    class Stuck(BaseService):
        def cleanup(self) -> None:
            gate.pass_through()

    trace = Trace()
    env = LocalEnvironment("stuck", observer=trace, deadline=0.2)
    env.register_service("stuck", Stuck)
    env.from_batch([1]).sink(lambda x: None)
    with pytest.raises(JobHangError) as info:
        env.submit(autostop=True)
    message = str(info.value)
    assert "did not finish within its deadline of 0.2 s" in message
    assert "services not cleaned: ['stuck']" in message
    assert "stuck#" in message
    assert "/service:stuck" in message
    assert "pass_through" in message
    [hang] = check(trace.events(), properties=["no-hang"])
    assert "pass_through" in hang.detail

    gate.open()  # release the job so its threads end, then reap them
    env.close()  # a wait already ran: close does not wait again
    dispatcher = env.dispatcher
    assert dispatcher is not None
    done = trace.wait_for(
        lambda evs: any(e.kind is K.SERVICE_CLEANUP_END for e in evs), timeout=DEADLINE
    )
    assert done
    dispatcher.wait("reap")
    assert not [t for t in dispatcher.threads() if t.is_alive()]


# -- failure isolation ------------------------------------------------------------------


class Recorder(BaseService):
    def __init__(
        self, log: list[str], name: str, fail_setup: bool = False, fail_cleanup: bool = False
    ) -> None:
        self.log, self.name = log, name
        self.fail_setup, self.fail_cleanup = fail_setup, fail_cleanup

    def setup(self) -> None:
        if self.fail_setup:
            raise OSError(f"{self.name}: cannot connect")

    def cleanup(self) -> None:
        self.log.append(self.name)
        if self.fail_cleanup:
            raise OSError(f"{self.name}: cannot close")

    def get(self, x: int) -> int:
        return x


def test_failures_do_not_stop_other_cleanups_and_are_raised_together() -> None:
    log: list[str] = []
    trace = Trace()
    env = LocalEnvironment("faults", observer=trace)
    env.register_service("a", Recorder, log, "a")
    env.register_service("b", Recorder, log, "b", fail_setup=True)
    env.register_service("c", Recorder, log, "c", fail_cleanup=True)
    env.register_service("d", Recorder, log, "d")

    class Picky(MapFunction):
        def execute(self, data: int) -> int:
            if data == 2:
                raise ValueError("bad item 2")
            return int(self.call_service("a", data, method="get"))

    sunk: list[int] = []
    env.from_batch([1, 2, 3]).map(Picky).sink(sunk.append)
    env.from_batch([10, 20]).sink(sunk.append)
    with pytest.raises(JobFailed) as info:
        env.submit(autostop=True)
    messages = sorted(str(e) for e in info.value.exceptions)
    assert messages == ["b: cannot connect", "bad item 2", "c: cannot close"]
    assert log == ["d", "c", "b", "a"]  # reverse registration order, every one cleaned
    assert 10 in sunk
    assert 20 in sunk
    assert 1 in sunk
    assert_contract(trace)  # failure-isolation: all three reported, nothing left behind
    reported = first(trace.events(), K.WAIT_END).get("reported")
    assert len(reported) == 3


def test_close_raises_failures_that_no_wait_raised() -> None:
    env = LocalEnvironment("unwaited")
    env.register_service("c", Recorder, [], "c", fail_cleanup=True)
    env.from_batch([1]).sink(lambda x: None)
    env.submit()
    with pytest.raises(JobFailed, match="1 failure"):
        env.close()
    env.close()  # idempotent


def test_calls_to_a_service_whose_setup_failed_fail_in_the_caller() -> None:
    env = LocalEnvironment("setup-failed")
    env.register_service("b", Recorder, [], "b", fail_setup=True)

    class Uses(SinkFunction):
        def execute(self, data: int) -> None:
            self.call_service("b", data, method="get")

    env.from_batch([1]).sink(Uses)
    with pytest.raises(JobFailed) as info:
        env.submit(autostop=True)
    kinds = sorted(type(e).__name__ for e in info.value.exceptions)
    assert kinds == ["OSError", "ServiceUnavailableError"]


# -- topologies: several pipelines, fan-out, parallelism, filters -----------------------


class Count(BaseService):
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1  # calls are serialised on the service's thread: no lock needed
        return self.n


class Even(FilterFunction):
    def execute(self, data: int) -> bool:
        return data % 2 == 0


class Bump(MapFunction):
    def execute(self, data: int) -> int:
        self.call_service("count", method="bump")
        return data


def test_parallel_stages_fan_out_and_filters_deliver_every_item() -> None:
    trace = Trace()
    env = LocalEnvironment("topology", observer=trace)
    env.register_service("count", Count)
    lock = threading.Lock()
    evens: list[int] = []
    alls: list[int] = []
    others: list[int] = []

    def keep(into: list[int]) -> Callable[[int], None]:
        def sink(x: int) -> None:
            with lock:
                into.append(x)

        return sink

    stream = env.from_batch(range(100)).map(Bump, parallelism=3)
    stream.filter(Even, parallelism=2).sink(keep(evens), parallelism=2)
    stream.sink(keep(alls))
    env.from_batch(range(1000, 1010)).sink(keep(others), parallelism=4)
    env.submit(autostop=True)

    assert sorted(evens) == list(range(0, 100, 2))
    assert sorted(alls) == list(range(100))
    assert sorted(others) == list(range(1000, 1010))
    assert len(trace.of_kind(K.ITEM_DROP)) == 50
    assert len(trace.of_kind(K.SERVICE_CALL_BEGIN)) == 100
    assert len(trace.of_kind(K.TASK_START)) == 1 + 3 + 2 + 2 + 1 + 1 + 4
    assert len(trace.of_kind(K.TASK_CREATE)) == len(trace.of_kind(K.TASK_START))
    assert_contract(trace)


def test_stop_signals_flow_downstream_after_the_last_item() -> None:
    trace = Trace()
    env = LocalEnvironment("chain", observer=trace)
    env.from_batch(range(5)).map(lambda x: x).filter(lambda x: True).sink(lambda x: None)
    env.submit(autostop=True)
    stops = [e.get("node").split(":")[0] for e in trace.of_kind(K.TASK_STOP)]
    assert stops == ["source0", "map1", "filter2", "sink3"]
    last_sink = trace.of_kind(K.ITEM_SINK)[-1]
    assert last_sink.seq < trace.of_kind(K.TASK_STOP)[-1].seq


def test_services_can_call_services() -> None:
    class Front(BaseService):
        def ask(self, x: int) -> int:
            return int(self.call_service("count", method="bump")) + x

    trace = Trace()
    env = LocalEnvironment("nested", observer=trace)
    env.register_service("count", Count)
    env.register_service("front", Front)
    got: list[int] = []
    env.from_batch([100]).sink(lambda x: got.append(0))

    class Asker(SinkFunction):
        def execute(self, data: int) -> None:
            got.append(int(self.call_service("front", data, method="ask")))

    env.from_batch([100]).sink(Asker)
    env.submit(autostop=True)
    assert sorted(got) == [0, 101]
    assert_contract(trace)


# -- autostop=False, stop() and close() -------------------------------------------------


class Endless(BatchFunction):
    def __init__(self, started: threading.Event) -> None:
        self.numbers = itertools.count()
        self.started = started

    def execute(self) -> int:
        self.started.set()
        return next(self.numbers)


def test_submit_without_autostop_returns_at_once_and_stop_drains_and_cleans() -> None:
    trace = Trace()
    started = threading.Event()
    seen: list[int] = []
    env = LocalEnvironment("endless", observer=trace)
    env.register_service("count", Count)
    env.from_batch(Endless, started).map(Bump).sink(seen.append)
    job = env.submit()
    assert job == env.job
    assert started.wait(DEADLINE)
    env.stop()
    emitted = len(trace.of_kind(K.ITEM_EMIT))
    assert emitted >= 1
    assert len(seen) == emitted
    assert first(trace.events(), K.WAIT_END, "stop").get("outcome") == "returned"
    assert_contract(trace)
    env.close()  # already stopped: nothing more to do
    assert len(trace.of_kind(K.WAIT_END)) == 1


def test_environment_as_context_manager_closes_the_job() -> None:
    trace = Trace()
    started = threading.Event()
    with LocalEnvironment("ctx", observer=trace) as env:
        env.from_batch(Endless, started).sink(lambda x: None)
        env.submit()
        assert started.wait(DEADLINE)
    assert first(trace.events(), K.WAIT_END, "close").get("outcome") == "returned"
    assert_contract(trace)


# -- concurrency of stop signals ---------------------------------------------------------


def test_concurrent_and_duplicate_stop_signals_complete_the_batch_exactly_once() -> None:
    dispatcher = Dispatcher("white-box#1")
    names = [f"t{i}" for i in range(50)]
    dispatcher.tasks = {n: None for n in names}  # type: ignore[misc]
    accepted: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def signal_all() -> None:
        barrier.wait(timeout=DEADLINE)
        for n in names:
            if dispatcher.receive_node_stop_signal(n):
                with lock:
                    accepted.append(n)

    threads = [threading.Thread(target=signal_all, name=f"signaller-{i}") for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        join_or_fail(t)
    assert sorted(accepted) == sorted(names)  # each task's stop accepted exactly once
    assert dispatcher.duplicate_stop_signals == 7 * 50
    assert dispatcher.tasks == {}
    assert dispatcher._batch_complete


# -- clear errors ----------------------------------------------------------------------


def test_registration_errors_name_the_value_and_the_fix() -> None:
    env = LocalEnvironment("errors")
    env.register_service("db", Count)
    with pytest.raises(
        ServiceRegistrationError, match=r"'db' is already registered \(Count\); choose another name"
    ):
        env.register_service("db", Count)
    with pytest.raises(ServiceRegistrationError, match="expected a class"):
        env.register_service("x", Count())  # type: ignore[arg-type]
    with pytest.raises(ServiceRegistrationError, match="non-empty string"):
        env.register_service("", Count)


def test_pipeline_definition_errors() -> None:
    env = LocalEnvironment("errors")
    with pytest.raises(
        PipelineDefinitionError, match=r"map\(42\): a stage must be a function class"
    ):
        env.from_batch([1]).map(42)
    with pytest.raises(PipelineDefinitionError, match="has no execute"):
        env.from_batch([1]).sink(Count)
    with pytest.raises(PipelineDefinitionError, match="parallelism=0"):
        env.from_batch([1]).map(str, parallelism=0)
    with pytest.raises(
        PipelineDefinitionError, match="expected a BatchFunction class or an iterable"
    ):
        env.from_batch("abc")
    with pytest.raises(PipelineDefinitionError, match="no pipeline"):
        LocalEnvironment("empty").submit()
    with pytest.raises(ValueError, match="deadline"):
        LocalEnvironment("x", deadline=0)
    with pytest.raises(
        ValueError,
        match=r"LocalEnvironment\(deadline=1e\+300\): the deadline must be a positive number "
        r"of seconds up to 9.22e\+09",
    ):
        LocalEnvironment("x", deadline=1e300)
    with pytest.raises(
        PipelineDefinitionError,
        match=r"item 1 is None, and a batch ends at its first None \(as in SAGE\), so the "
        "items after it would never be delivered; remove the None or wrap the items",
    ):
        env.from_batch([1, None, 3])
    with pytest.raises(JobStateError, match="before submit"):
        LocalEnvironment("x").stop()


def test_submitting_twice_and_building_after_submit_are_refused() -> None:
    env = LocalEnvironment("twice")
    env.from_batch([1]).sink(lambda x: None)
    env.submit(autostop=True)
    with pytest.raises(JobStateError, match="already submitted"):
        env.submit(autostop=True)
    with pytest.raises(JobStateError, match="after submit"):
        env.register_service("late", Count)


def test_unknown_service_call_names_the_registered_ones() -> None:
    env = LocalEnvironment("unknown")
    env.register_service("count", Count)

    class Typo(SinkFunction):
        def execute(self, data: int) -> None:
            self.call_service("cuont", method="bump")

    env.from_batch([1]).sink(Typo)
    with pytest.raises(JobFailed) as info:
        env.submit(autostop=True)
    [err] = info.value.exceptions
    assert isinstance(err, ServiceNotFoundError)
    assert "'cuont', which is not registered" in str(err)
    assert "'count'" in str(err)


def test_a_call_after_cleanup_is_refused_and_recorded() -> None:
    class Early(BaseService):
        pass

    class Late(BaseService):
        def cleanup(self) -> None:
            # 'late' is cleaned first (reverse order) ... and calls 'early', still open: fine.
            self.call_service("early", method="__repr__")

    class Calls(BaseService):
        def cleanup(self) -> None:
            # 'calls' was registered first, so 'late' is already cleaned.
            self.call_service("late", method="__repr__")

    trace = Trace()
    env = LocalEnvironment("after-cleanup", observer=trace)
    env.register_service("calls", Calls)
    env.register_service("early", Early)
    env.register_service("late", Late)
    env.from_batch([1]).sink(lambda x: None)
    with pytest.raises(JobFailed) as info:
        env.submit(autostop=True)
    [err] = info.value.exceptions
    assert isinstance(err, ServiceUnavailableError)
    assert "service:calls called late.__repr__() after the service's cleanup began" in str(err)
    assert len(trace.of_kind(K.SERVICE_CALL_REJECTED)) == 1
    assert_contract(trace)


def test_a_service_calling_itself_gets_a_clear_error() -> None:
    class Selfish(BaseService):
        def a(self) -> Any:
            return self.call_service("me", method="b")

        def b(self) -> int:
            return 1

    env = LocalEnvironment("selfish")
    env.register_service("me", Selfish)

    class Caller(SinkFunction):
        def execute(self, data: int) -> None:
            self.call_service("me", method="a")

    env.from_batch([1]).sink(Caller)
    with pytest.raises(JobFailed) as info:
        env.submit(autostop=True)
    [err] = info.value.exceptions
    assert isinstance(err, LifecycleError)
    assert "call the method directly" in str(err)


def test_a_slow_service_call_times_out_with_a_clear_error() -> None:
    gate = Gate("slow-call", timeout=DEADLINE)

    class Slow(BaseService):
        def work(self) -> None:
            gate.pass_through()

    env = LocalEnvironment("slow-call")
    env.register_service("slow", Slow)

    class Impatient(SinkFunction):
        def execute(self, data: int) -> None:
            try:
                self.call_service("slow", method="work", timeout=0.05)
            finally:
                gate.open()  # let the service finish so the job can end

    env.from_batch([1]).sink(Impatient)
    with pytest.raises(JobFailed) as info:
        env.submit(autostop=True)
    [err] = info.value.exceptions
    assert isinstance(err, ServiceCallTimeout)
    assert "did not complete within 0.05 s" in str(err)


def test_call_service_outside_a_job_is_explained() -> None:
    with pytest.raises(RuntimeError, match="outside a running job"):
        HelloService().call_service("x")


def test_a_none_from_a_generator_fails_the_job_instead_of_ending_the_batch() -> None:
    got: list[int] = []
    env = LocalEnvironment("holes", deadline=DEADLINE)
    env.from_batch(x for x in (1, None, 3)).sink(got.append)
    with pytest.raises(JobFailed) as info:
        env.submit(autostop=True)
    assert got == [1]
    assert "item 1 is None, and a batch ends at its first None" in str(info.value.exceptions[0])


@pytest.mark.parametrize("exit_exc", [SystemExit(3), KeyboardInterrupt()])
def test_system_exit_and_keyboard_interrupt_in_user_code_reach_the_wait(
    exit_exc: BaseException,
) -> None:
    # A job thread must not swallow them (threading ignores SystemExit): the job is
    # still cleaned up, and the wait raises the very exception, not a JobFailed.
    trace = Trace()

    def sink(x: object) -> None:
        raise exit_exc

    env = LocalEnvironment("exits", observer=trace, deadline=DEADLINE)
    env.register_service("db", Count)
    env.from_batch([1]).sink(sink)
    with pytest.raises(type(exit_exc)) as info:
        env.submit(autostop=True)
    assert info.value is exit_exc
    events = trace.events()
    assert first(events, K.SERVICE_CLEANUP_END, "db").seq < first(events, K.WAIT_END).seq
    assert first(events, K.WAIT_END).data["outcome"] == "raised"
    assert_contract(events)


def test_thread_stacks_are_grouped_and_capped_for_jobs_of_many_threads() -> None:
    from sage_lifecycle._stacks import format_thread_stacks, render_stacks

    parked = "  File 'x.py', line 1, in wait\n    event.wait()"
    entries = [(f"pool-{i}", True, parked) for i in range(5_000)]
    entries += [
        (f"odd-{i}", False, f"  File 'y.py', line {i}, in f\n" + "x" * 200) for i in range(3)
    ]
    text = render_stacks(entries)
    assert text.startswith("--- 5000 threads with this stack: 'pool-0', 'pool-1'")
    assert "'pool-7' and 4992 more ---" in text
    assert "--- thread 'odd-2' (daemon=False) ---" in text
    assert len(text) < 2_000  # 5,000 threads once printed 8.7 MB
    capped = render_stacks(entries, limit=450)
    assert capped.endswith("--- 2 more stacks (2 threads) left out ---")
    assert "odd-0" in capped
    assert render_stacks([]) == "(no live threads)"
    # and on real threads: this one's stack, by name
    assert "--- thread 'MainThread' (daemon=False) ---" in format_thread_stacks(
        [threading.main_thread()]
    )
