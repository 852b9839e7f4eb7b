"""The text a user reads: the timeline, the failure story, ``assert_contract``, the demo."""

from __future__ import annotations

import re

import pytest

from sage_lifecycle import EventKind, Trace, Violation, assert_contract, check
from sage_lifecycle.contract import by_property
from sage_lifecycle.report import LifecycleViolation, format_report, format_timeline

K = EventKind


def never_cleaned() -> Trace:
    """One job whose service 'db' is constructed and never cleaned up."""
    trace = Trace()
    trace.record(K.SERVICE_CONSTRUCT, "db", job="j#1", cls="Db")
    begin = trace.record(K.WAIT_BEGIN, "submit", job="j#1")
    trace.record(K.WAIT_END, "submit", job="j#1", begin=begin.seq, outcome="returned")
    return trace


def test_an_empty_timeline_says_so() -> None:
    assert format_timeline(()) == "    (no events)"


def test_the_timeline_marks_witnesses_and_shows_what_each_event_carries() -> None:
    trace = Trace()
    trace.record(K.SERVICE_CALL_BEGIN, "db", job="j", method="get", caller="p0.sink0[0]")
    trace.record(K.SERVICE_CLEANUP_END, "db", job="j", error="OSError: gone")
    first, second = trace.events()
    lines = format_timeline(trace.events(), highlight={second.seq}).splitlines()
    assert lines[0].split() == ["seq", "t(ms)", "thread", "event"]
    assert lines[1].startswith("       ")
    assert f" {first.seq} " in lines[1]
    assert "method=get caller=p0.sink0[0]" in lines[1]
    assert lines[2].startswith("    >> ")
    assert lines[2].endswith("db error=OSError: gone")


def test_a_long_timeline_keeps_the_witnesses_with_their_neighbours_and_says_what_it_left_out() -> (
    None
):
    trace = Trace()
    for i in range(200):
        trace.record(K.ITEM_EMIT, f"p0#{i}", job="j")
    witness = trace.events()[100]
    text = format_timeline(trace.events(), highlight={witness.seq}, limit=20)
    shown = [int(m) for m in re.findall(r"^ {4}(?:>>| {2}) +(\d+) ", text, re.M)]
    assert set(range(witness.seq - 2, witness.seq + 3)) <= set(shown)
    assert shown[0] == 1
    assert shown[-1] == 200
    left_out = sum(int(n) for n in re.findall(r"\((\d+) events left out\)", text))
    assert left_out + len(shown) == 200
    assert len(shown) <= 20


def test_the_story_names_each_property_its_statement_witnesses_and_counts() -> None:
    events = never_cleaned().events()
    violations = check(events)
    assert [v.property for v in violations] == ["cleanup-exactly-once"]
    text = format_report(violations, events)
    assert text.splitlines()[0] == "lifecycle contract violated: cleanup-exactly-once (1)"
    assert "cleanup-exactly-once [job j#1]: service 'db' was never cleaned up" in text
    assert "  property: every service that was constructed has exactly one cleanup" in text
    assert "  witnesses:\n    <Event #1 service.construct 'db'" in text
    assert "timeline (3 events, >> marks witnesses):" in text
    assert format_report([], events) == "lifecycle contract holds"


def test_the_story_counts_violations_by_property_in_order_and_shows_detail() -> None:
    events = never_cleaned().events()
    stuck = Violation("no-hang", "the wait hung", events[1:2], job="j#1", detail="stack\nlines")
    twice = [stuck, *check(events), stuck]
    assert by_property(twice) == {"no-hang": 2, "cleanup-exactly-once": 1}
    assert list(by_property(twice)) == ["no-hang", "cleanup-exactly-once"]
    text = format_report(twice, events)
    assert text.splitlines()[0] == (
        "lifecycle contract violated: no-hang (2), cleanup-exactly-once (1)"
    )
    assert "  detail:\n    stack\n    lines" in text


def test_assert_contract_raises_the_story_with_the_violations_and_passes_a_clean_trace() -> None:
    trace = never_cleaned()
    with pytest.raises(LifecycleViolation) as info:
        assert_contract(trace)
    assert [v.property for v in info.value.violations] == ["cleanup-exactly-once"]
    assert str(info.value) == format_report(info.value.violations, trace.events())
    assert_contract(trace, properties=["no-hang"])  # the property it breaks not chosen
    trace.record(K.SERVICE_CLEANUP_BEGIN, "db", job="j#1")
    trace.record(K.SERVICE_CLEANUP_END, "db", job="j#1")
    with pytest.raises(LifecycleViolation, match="no-early-return"):
        assert_contract(trace)  # cleaned, but after the wait returned


def test_the_demo_returns_1_and_says_missed_when_the_bug_is_not_caught(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sage_lifecycle import demo
    from sage_lifecycle.mutants import MUTANTS, Mutant
    from sage_lifecycle.reference import Dispatcher

    assert demo.main() == 0
    assert "SAGE's pre-#878 bug caught by cleanup-exactly-once" in capsys.readouterr().out
    correct = Mutant("pre_878", Dispatcher, "cleanup-exactly-once")
    monkeypatch.setitem(MUTANTS, "pre_878", correct)
    monkeypatch.setattr(demo, "MUTANTS", MUTANTS)
    assert demo.main() == 1
    out = capsys.readouterr().out
    assert "verdict: reference passed; SAGE's pre-#878 bug MISSED by cleanup-exactly-once" in out
