"""Each checker on hand-built traces: one that satisfies its property, several that break it."""

from __future__ import annotations

from typing import Any

import pytest

from sage_lifecycle import PROPERTIES, EventKind, Trace, check
from sage_lifecycle.contract import parse_properties
from sage_lifecycle.report import LifecycleViolation, assert_contract, format_report
from sage_lifecycle.trace import Event

K = EventKind


class Job:
    """Records hand-written events of one job into a trace, in the order written."""

    def __init__(self, trace: Trace | None = None, job: str = "j#1") -> None:
        self.trace = trace if trace is not None else Trace()
        self.job = job

    def __call__(
        self, kind: EventKind, subject: str, error: str | None = None, **data: Any
    ) -> Event:
        return self.trace.record(kind, subject, job=self.job, error=error, **data)

    def events(self) -> tuple[Event, ...]:
        return self.trace.events()

    # Building blocks of a correct job.
    def service_up(self, name: str = "db") -> Event:
        self(K.SERVICE_SETUP_BEGIN, name)
        construct = self(K.SERVICE_CONSTRUCT, name)
        self(K.SERVICE_SETUP_END, name)
        return construct

    def task(self, name: str, role: str, ancestors: tuple[str, ...] = ()) -> Event:
        return self(K.TASK_START, f"{name}[0]", node=name, role=role, ancestors=ancestors)

    def call(self, service: str = "db", caller: str = "sink[0]") -> tuple[Event, Event]:
        begin = self(K.SERVICE_CALL_BEGIN, service, method="get", caller=caller)
        end = self(K.SERVICE_CALL_END, service, begin=begin.seq, method="get")
        return begin, end

    def cleanup(self, name: str = "db", error: str | None = None) -> Event:
        self(K.SERVICE_CLEANUP_BEGIN, name)
        return self(K.SERVICE_CLEANUP_END, name, error=error)

    def wait_begin(self, subject: str = "submit") -> Event:
        return self(K.WAIT_BEGIN, subject)

    def wait_end(
        self, begin: Event, outcome: str = "returned", reported: tuple[int, ...] = ()
    ) -> Event:
        return self(K.WAIT_END, begin.subject, begin=begin.seq, outcome=outcome, reported=reported)


def correct_job(j: Job) -> Job:
    """One service, source -> sink calling it, two items, threads joined, wait at the end."""
    w = j.wait_begin()
    j(K.THREAD_START, "t-src")
    j(K.THREAD_START, "t-sink")
    j.service_up("db")
    j.task("src", "source")
    j.task("sink", "sink", ("src",))
    for i in range(2):
        j(K.ITEM_EMIT, "src[0]", node="src", item=f"src#{i}")
        j(K.ITEM_SINK, "sink[0]", node="sink", item=f"src#{i}")
        j.call()
    j(K.TASK_STOP, "src[0]")
    j(K.TASK_STOP, "sink[0]")
    j(K.THREAD_JOINED, "t-src")
    j(K.THREAD_JOINED, "t-sink")
    j.cleanup("db")
    j.wait_end(w)
    return j


def props(events: Any, **kw: Any) -> list[str]:
    return [v.property for v in check(events, **kw)]


def only(prop: str, events: Any, **kw: Any) -> list[Any]:
    return check(events, properties=[prop], **kw)


def test_correct_job_satisfies_every_property() -> None:
    assert check(correct_job(Job()).events()) == []


def test_every_design_property_has_a_checker() -> None:
    assert list(PROPERTIES) == [
        "cleanup-exactly-once",
        "no-early-return",
        "no-use-after-cleanup",
        "no-hang",
        "failure-isolation",
        "no-data-loss",
        "no-thread-leak",
    ]


# -- cleanup-exactly-once ---------------------------------------------------------------


def test_cleanup_never_run_is_caught_only_when_complete() -> None:
    j = Job()
    construct = j.service_up("db")
    w = j.wait_begin()
    j.wait_end(w)
    [v] = only("cleanup-exactly-once", j.events())
    assert v.message == "service 'db' was never cleaned up"
    assert v.witnesses == (construct,)
    assert only("cleanup-exactly-once", j.events(), complete=False) == []


def test_cleanup_twice_is_caught_even_mid_run() -> None:
    j = Job()
    j.service_up("db")
    j.cleanup("db")
    j.cleanup("db")
    [v] = only("cleanup-exactly-once", j.events(), complete=False)
    assert "began 2 times" in v.message
    assert [w.kind for w in v.witnesses] == [
        K.SERVICE_CONSTRUCT,
        K.SERVICE_CLEANUP_BEGIN,
        K.SERVICE_CLEANUP_BEGIN,
    ]


def test_cleanup_begun_but_never_ended_without_any_wait() -> None:
    j = Job()
    j.service_up("db")
    j(K.SERVICE_CLEANUP_BEGIN, "db")
    [v] = only("cleanup-exactly-once", j.events())
    assert "never ended" in v.message


def test_a_cleanup_that_never_ended_belongs_to_the_wait_not_to_this_property() -> None:
    """With a wait, an unfinished cleanup is an early return (or a hang): one verdict."""
    j = Job()
    j.service_up("db")
    w = j.wait_begin()
    begin = j(K.SERVICE_CLEANUP_BEGIN, "db")
    end = j.wait_end(w)
    assert only("cleanup-exactly-once", j.events()) == []
    [v] = check(j.events())
    assert v.property == "no-early-return"
    assert v.witnesses == (begin, end)
    assert "never did" in v.message


def test_a_missing_cleanup_names_the_failure_before_it_and_is_no_early_return() -> None:
    j = Job()
    w = j.wait_begin()
    j(K.SERVICE_SETUP_BEGIN, "db")
    construct = j(K.SERVICE_CONSTRUCT, "db")
    failed = j(K.SERVICE_SETUP_END, "db", error="OSError: no route")
    j.wait_end(w, outcome="raised", reported=(failed.seq,))
    [v] = check(j.events())
    assert v.property == "cleanup-exactly-once"
    assert (
        v.message == "service 'db' was never cleaned up (its setup failed with OSError: no route)"
    )
    assert v.witnesses == (construct, failed)


def test_cleanup_of_unknown_service() -> None:
    j = Job()
    j.cleanup("ghost")
    [v] = only("cleanup-exactly-once", j.events())
    assert "never constructed" in v.message


# -- no-early-return --------------------------------------------------------------------


def test_wait_returning_before_cleanup_end_is_caught_with_both_events() -> None:
    j = Job()
    j.service_up("db")
    w = j.wait_begin()
    j(K.SERVICE_CLEANUP_BEGIN, "db")
    end_wait = j.wait_end(w)
    late = j(K.SERVICE_CLEANUP_END, "db")
    [v] = only("no-early-return", j.events())
    assert v.witnesses == (end_wait, late)
    assert v.message == "submit() returned before the cleanup of service 'db' ended"


def test_a_cleanup_that_begins_after_the_wait_returned_is_an_early_return() -> None:
    j = Job()
    j.service_up("db")
    w = j.wait_begin()
    end_wait = j.wait_end(w)
    late = j(K.SERVICE_CLEANUP_BEGIN, "db")
    j(K.SERVICE_CLEANUP_END, "db")
    [v] = check(j.events(), complete=False)
    assert v.property == "no-early-return"
    assert v.witnesses == (end_wait, late)
    assert v.message == "submit() returned before the cleanup of service 'db' began"


def test_any_event_of_the_job_after_the_ending_call_is_an_early_return() -> None:
    """A wait that returns before the job even started: everything comes after it."""
    j = Job()
    w = j.wait_begin()
    end_wait = j.wait_end(w)
    start = j.task("src", "source")
    j(K.ITEM_EMIT, "src[0]", node="src", item="src#0")
    j(K.TASK_STOP, "src[0]")
    j(K.GATE_OPEN, "end:p0")  # the harness's own events are not the job's
    [v] = only("no-early-return", j.events())
    assert v.witnesses == (end_wait, start)
    assert "task.start of 'src[0]'" in v.message


def test_many_waits_report_the_late_cleanup_once_against_the_ending_call() -> None:
    """The first completed wait ends the job; later waits add no duplicate verdicts (and
    no rescans: benchmarks/contract_scaling.py measures the check's cost per event)."""
    j = Job()
    j.service_up("db")
    first = j.wait_end(j.wait_begin())
    for _ in range(500):
        j.wait_end(j.wait_begin())
    late = j(K.SERVICE_CLEANUP_BEGIN, "db")
    j(K.SERVICE_CLEANUP_END, "db")
    [v] = check(j.events())
    assert v.property == "no-early-return"
    assert v.witnesses == (first, late)


def test_wait_returning_while_task_runs_is_caught_mid_run() -> None:
    j = Job()
    w = j.wait_begin()
    start = j.task("src", "source")
    end_wait = j.wait_end(w)
    [v] = only("no-early-return", j.events(), complete=False)
    assert v.witnesses == (start, end_wait)
    assert "had not stopped yet" in v.message


def test_wait_cut_off_by_deadline_is_not_an_early_return() -> None:
    j = Job()
    j.service_up("db")
    w = j.wait_begin()
    j.wait_end(w, outcome="deadline")
    assert only("no-early-return", j.events()) == []


# -- no-use-after-cleanup ---------------------------------------------------------------


def test_call_after_cleanup_began_is_caught() -> None:
    j = Job()
    j.service_up("db")
    begin_cleanup = j(K.SERVICE_CLEANUP_BEGIN, "db")
    call, _ = j.call()
    [v] = only("no-use-after-cleanup", j.events(), complete=False)
    assert v.witnesses == (begin_cleanup, call)
    assert "after its cleanup began" in v.message


def test_call_overlapping_cleanup_begin_is_caught() -> None:
    j = Job()
    j.service_up("db")
    call = j(K.SERVICE_CALL_BEGIN, "db", method="get", caller="map[0]")
    cleanup = j(K.SERVICE_CLEANUP_BEGIN, "db")
    end = j(K.SERVICE_CALL_END, "db", begin=call.seq)
    [v] = only("no-use-after-cleanup", j.events())
    assert v.witnesses == (call, cleanup, end)


def test_calls_before_cleanup_are_fine() -> None:
    j = Job()
    j.service_up("db")
    j.call()
    j.call()
    j.cleanup()
    assert only("no-use-after-cleanup", j.events()) == []


def test_a_calling_task_failing_on_its_own_after_the_cleanup_began_is_caught() -> None:
    """A call the runtime refused because the cleanup had begun shows up only as the
    caller's own failure (no call event): it is a use after cleanup all the same. An
    injected failure, or one of a task that does not call the service, is not."""
    j = Job()
    j(K.NODE_DECLARE, "p0.sink0", role="sink", ancestors=("p0.source",), calls=("db",))
    j(K.NODE_DECLARE, "p0.sink1", role="sink", ancestors=("p0.source",), calls=())
    j.service_up("db")
    cleanup = j(K.SERVICE_CLEANUP_BEGIN, "db")
    j(K.TASK_ERROR, "p0.sink0", error="InjectedFault: x", node="p0.sink0", injected=True)
    j(K.TASK_ERROR, "p0.sink1", error="RuntimeError: y", node="p0.sink1", injected=False)
    assert only("no-use-after-cleanup", j.events(), complete=False) == []
    refused = j(
        K.TASK_ERROR,
        "p0.sink0",
        error="ServiceUnavailableError: called db.call() after the service's cleanup began",
        node="p0.sink0",
        injected=False,
    )
    [v] = only("no-use-after-cleanup", j.events(), complete=False)
    assert v.witnesses == (cleanup, refused)
    assert v.message.startswith("p0.sink0, which calls db, failed after the cleanup of 'db'")


def test_a_calling_task_failing_on_its_own_before_the_cleanup_is_no_use_after_it() -> None:
    j = Job()
    j(K.NODE_DECLARE, "p0.sink0", role="sink", ancestors=("p0.source",), calls=("db",))
    j.service_up("db")
    j(K.TASK_ERROR, "p0.sink0", error="RuntimeError: y", node="p0.sink0", injected=False)
    j.cleanup()
    assert only("no-use-after-cleanup", j.events()) == []


# -- no-hang ----------------------------------------------------------------------------


def test_deadline_event_is_a_hang_with_stacks_as_detail() -> None:
    j = Job()
    w = j.wait_begin()
    j(K.WAIT_DEADLINE, "submit", begin=w.seq, deadline=0.5, stacks="--- thread 'x' ---")
    j.wait_end(w, outcome="deadline")
    [v] = only("no-hang", j.events(), complete=False)
    assert "within its deadline of 0.5 s" in v.message
    assert "thread 'x'" in v.detail


def test_wait_without_end_is_a_hang_only_when_complete() -> None:
    j = Job()
    w = j.wait_begin()
    assert only("no-hang", j.events(), complete=False) == []
    [v] = only("no-hang", j.events())
    assert v.witnesses == (w,)


# -- failure-isolation ------------------------------------------------------------------


def test_reported_failure_with_everything_cleaned_is_fine() -> None:
    j = Job()
    w = j.wait_begin()
    j.service_up("a")
    j.service_up("b")
    failed = j.cleanup("b", error="OSError: disk")
    j.cleanup("a")
    j.wait_end(w, outcome="raised", reported=(failed.seq,))
    assert only("failure-isolation", j.events()) == []


def test_failure_not_reported_by_the_wait_is_lost() -> None:
    j = Job()
    w = j.wait_begin()
    j.service_up("a")
    failed = j.cleanup("a", error="OSError: disk")
    end = j.wait_end(w)
    [v] = only("failure-isolation", j.events(), complete=False)
    assert v.witnesses == (failed, end)
    assert "did not report it" in v.message


def test_failure_that_stops_other_cleanups_is_a_missing_cleanup() -> None:
    j = Job()
    w = j.wait_begin()
    a = j.service_up("a")
    j.service_up("b")
    failed = j.cleanup("b", error="OSError: disk")
    j.wait_end(w, outcome="raised", reported=(failed.seq,))
    assert only("failure-isolation", j.events()) == []
    [v] = check(j.events())
    assert v.property == "cleanup-exactly-once"
    assert v.witnesses == (a, failed)
    assert "'a' was never cleaned up (after service.cleanup.end of 'b' failed" in v.message


def test_failure_that_stops_the_wait_is_a_hang() -> None:
    j = Job()
    w = j.wait_begin()
    j(K.TASK_ERROR, "map[0]", error="ValueError: bad item")
    assert only("failure-isolation", j.events()) == []
    [v] = check(j.events())
    assert v.property == "no-hang"
    assert v.witnesses == (w,)


# -- no-data-loss -----------------------------------------------------------------------


def lossy_job(drop: bool = False, fail: bool = False) -> tuple[Job, Event, Event]:
    j = Job()
    w = j.wait_begin()
    j.task("src", "source")
    j.task("flt", "filter", ("src",))
    j.task("sink", "sink", ("flt", "src"))
    emit = j(K.ITEM_EMIT, "src[0]", node="src", item="src#0")
    j(K.ITEM_EMIT, "src[0]", node="src", item="src#1")
    j(K.ITEM_SINK, "sink[0]", node="sink", item="src#1")
    if drop:
        j(K.ITEM_DROP, "flt[0]", node="flt", item="src#0")
    if fail:
        j(K.TASK_ERROR, "flt[0]", error="ValueError: x")
    end = j.wait_end(w)
    return j, emit, end


def test_item_that_never_reached_the_sink_is_lost() -> None:
    j, emit, end = lossy_job()
    [v] = only("no-data-loss", j.events())
    assert v.witnesses == (emit, end)
    assert "'src#0'" in v.message
    assert "'sink'" in v.message


def test_item_dropped_by_an_upstream_filter_is_not_owed() -> None:
    j, _, _ = lossy_job(drop=True)
    assert only("no-data-loss", j.events()) == []


def test_sink_downstream_of_a_fault_is_skipped() -> None:
    j, _, _ = lossy_job(fail=True)
    assert only("no-data-loss", j.events()) == []


@pytest.mark.parametrize("setup_injected", [True, False])
def test_a_pipeline_calling_a_service_whose_setup_was_made_to_fail_owes_nothing(
    setup_injected: bool,
) -> None:
    """SAGE 0.2.5.3 times such a call out after 10 s (a TimeoutError nobody injected): the
    item cannot pass a stage whose service the harness broke, so that is no data loss
    (no-hang and failure-isolation own the timeout); a setup failure the harness did not
    inject excuses nothing."""
    j = Job()
    j(K.SERVICE_CONSTRUCT, "s0")
    j(K.SERVICE_SETUP_BEGIN, "s0")
    j(K.SERVICE_SETUP_END, "s0", error="InjectedFault: setup of s0 failed", injected=setup_injected)
    w = j.wait_begin()
    j(K.NODE_DECLARE, "p0.source", role="source", ancestors=())
    j(K.NODE_DECLARE, "p0.stage0", role="map", ancestors=("p0.source",), calls=("s0",))
    j(K.NODE_DECLARE, "p0.sink0", role="sink", ancestors=("p0.stage0", "p0.source"), calls=())
    j(K.ITEM_EMIT, "p0.source", node="p0.source", item="p0#0")
    j(K.TASK_ERROR, "p0.stage0", error="TimeoutError: call timeout", injected=False)
    j.wait_end(w)
    lost = only("no-data-loss", j.events())
    assert (lost == []) is setup_injected, lost


def test_item_reaching_the_sink_after_the_wait_is_late_not_lost() -> None:
    j, _, end = lossy_job()
    late = j(K.ITEM_SINK, "sink[0]", node="sink", item="src#0")
    assert only("no-data-loss", j.events()) == []
    [v] = [v for v in check(j.events()) if "reached sink" in v.message]
    assert v.property == "no-early-return"
    assert v.witnesses == (end, late)
    assert "before item 'src#0' reached sink 'sink[0]'" in v.message


def test_sink_on_another_pipeline_is_not_owed() -> None:
    j = Job()
    w = j.wait_begin()
    j.task("a", "source")
    j.task("b", "source")
    j.task("sink_b", "sink", ("b",))
    j(K.ITEM_EMIT, "a[0]", node="a", item="a#0")
    j.wait_end(w)
    assert only("no-data-loss", j.events()) == []


# -- no-thread-leak ---------------------------------------------------------------------


def test_threads_never_joined_are_one_leak_naming_them_all() -> None:
    j = Job()
    w = j.wait_begin()
    start = j(K.THREAD_START, "worker")
    j(K.THREAD_START, "pool-1")
    j(K.THREAD_JOINED, "pool-1")
    j(K.THREAD_START, "pool-2")
    end = j.wait_end(w)
    assert only("no-thread-leak", j.events(), complete=False) == []
    [v] = only("no-thread-leak", j.events())
    assert v.witnesses[0] == start
    assert v.witnesses[-1] == end
    expected = "2 thread(s) started before submit() returned were never joined: 'worker', 'pool-2'"
    assert v.message == expected


def test_thread_joined_a_moment_after_the_wait_is_not_evidence_by_itself() -> None:
    j = Job()
    w = j.wait_begin()
    j(K.THREAD_START, "worker")
    j.wait_end(w)
    j(K.THREAD_JOINED, "worker")
    assert only("no-thread-leak", j.events()) == []


def test_thread_found_alive_by_a_black_box_harness_is_a_leak() -> None:
    j = Job()
    alive = j(K.THREAD_ALIVE, "pool-1")
    [v] = only("no-thread-leak", j.events())
    assert v.witnesses == (alive,)


# -- checking, selection, reports -------------------------------------------------------


def test_jobs_are_checked_separately() -> None:
    trace = Trace()
    correct_job(Job(trace, "a#1"))
    b = Job(trace, "b#2")
    b.service_up("db")  # never cleaned, in another job
    w = b.wait_begin()
    b.wait_end(w)
    found = check(trace.events())
    assert {v.job for v in found} == {"b#2"}
    assert set(props(trace.events())) == {"cleanup-exactly-once"}


def test_parse_properties_names_the_bad_id_and_the_choices() -> None:
    assert parse_properties("all", where="x") == tuple(PROPERTIES)
    assert parse_properties("no-hang, no-early-return", where="x") == ("no-hang", "no-early-return")
    with pytest.raises(
        ValueError,
        match=r"unknown lifecycle property 'no-hnag' from --opt; expected 'all' or .*no-hang",
    ):
        parse_properties("no-hnag", where="--opt")


def test_report_tells_the_story_and_marks_witnesses() -> None:
    j = Job()
    j.service_up("db")
    w = j.wait_begin()
    end_wait = j.wait_end(w)
    j.cleanup("db")
    violations = check(j.events(), properties=["no-early-return"])
    text = format_report(violations, j.events())
    assert text.splitlines()[0] == "lifecycle contract violated: no-early-return (1)"
    assert "submit() returned before the cleanup of service 'db' began" in text
    marked = [line for line in text.splitlines() if line.lstrip().startswith(">>")]
    assert len(marked) == 2
    assert "wait.end" in marked[0]
    assert "service.cleanup.begin" in marked[1]
    assert str(end_wait.seq) in marked[0]


def test_assert_contract_raises_with_the_violations() -> None:
    j = Job()
    j.service_up("db")
    with pytest.raises(LifecycleViolation) as info:
        assert_contract(j.trace)
    assert [v.property for v in info.value.violations] == ["cleanup-exactly-once"]
    assert_contract(correct_job(Job()).trace)


def test_long_timelines_keep_witnesses_and_say_what_they_left_out() -> None:
    j = Job()
    j.service_up("db")
    for i in range(200):
        j(K.ITEM_EMIT, "src[0]", node="src", item=f"src#{i}")
    w = j.wait_begin()
    j.wait_end(w)
    j.cleanup("db")  # after the wait: two witnesses far from the head
    text = format_report(check(j.events()), j.events())
    assert "events left out" in text
    assert sum(1 for line in text.splitlines() if line.lstrip().startswith(">>")) >= 2


def test_task_created_but_not_yet_started_when_the_wait_returned_is_an_early_return() -> None:
    j = Job()
    w = j.wait_begin()
    created = j(K.TASK_CREATE, "sink[0]", node="sink", role="sink", ancestors=("src",))
    j.task("src", "source")
    emit = j(K.ITEM_EMIT, "src[0]", node="src", item="src#0")
    j(K.TASK_STOP, "src[0]")
    end = j.wait_end(w)
    found = check(j.events(), complete=False)
    early = [v for v in found if v.property == "no-early-return"]
    assert [v.witnesses for v in early] == [(created, end)]
    assert not [v for v in found if v.property == "no-data-loss"]  # it may still arrive
    [loss] = [v for v in check(j.events()) if v.property == "no-data-loss"]
    assert loss.witnesses == (emit, end)
