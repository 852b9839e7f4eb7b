"""Conformance mode as a plugin object: registered only when ``--lifecycle-conformance`` is on.

It replaces collection with one search per selected property (plus the white-box machine
for reference-based targets), holds its settings and the verdicts, and prints the table.
Verdicts travel on each test report's ``user_properties``, so under pytest-xdist the
controller's table is gathered from every worker and equals the table without xdist.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import _console
from .pytest_plugin import _EXPIRES, _TIMEOUT

if TYPE_CHECKING:
    from .schedule import Replay

PLUGIN_NAME = "lifecycle-conformance"
#: The verdict record of a search, from its test to its report.
_VERDICT_KEY = pytest.StashKey[dict[str, Any]]()
WHITE_BOX = "white-box dispatcher"
#: Lines of the runtime's console output a conformance report keeps.
_CONSOLE_TAIL = 20


@dataclass(frozen=True)
class ConformanceSettings:
    target: str
    factory: Callable[[], Any]
    deadline: float
    hold: float
    properties: tuple[str, ...]
    #: The reference Dispatcher (sub)class behind the target, if any: the white box.
    dispatcher: type[Any] | None
    #: Whether the target runs on the virtual clock (it declares ``virtual_time`` and
    #: ``--lifecycle-clock`` is ``auto``).
    virtual_time: bool = False
    replays: int = 10
    #: PCT's depth for the schedules drawn on virtual time.
    pct_depth: int = 2
    #: One recorded run to replay (``--lifecycle-replay``, ``--lifecycle-schedule``)
    #: instead of the searches.
    replay: Replay | None = None
    #: Where a JSON record and an HTML timeline of each failing example go (``None``:
    #: nowhere), and the runtime's version the records name.
    report_dir: Path | None = None
    target_version: str = ""


class ConformancePlugin:
    """Collects the searches, runs them, and turns their reports into the verdict table."""

    def __init__(self, settings: ConformanceSettings, config: pytest.Config) -> None:
        self.settings = settings
        self.config = config
        #: Row name -> the verdict record of its search (from whichever process ran it).
        self.verdicts: dict[str, dict[str, Any]] = {}
        self.exitstatus: int = 0
        self._threads_before = set(threading.enumerate())
        #: The property whose search runs now, and its bookkeeping.
        self.running: tuple[str, Any] | None = None

    # -- collection ----------------------------------------------------------------
    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool:
        return True  # the conformance suite replaces the project's own tests

    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        from . import conformance

        module = pytest.Module.from_parent(session, path=Path(conformance.__file__))
        items[:] = list(_items(module))

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "lifecycle_property" in metafunc.fixturenames:
            props = list(self.settings.properties)
            metafunc.parametrize("lifecycle_property", props, ids=props)

    def rows(self) -> list[str]:
        rows = list(self.settings.properties)
        if self.settings.dispatcher is not None:
            rows.append(WHITE_BOX)
        return rows

    # -- running -------------------------------------------------------------------
    def run_property(self, item: pytest.Item, prop: str) -> None:
        """The body of one property's conformance test: its search, to a verdict."""
        __tracebackhide__ = True
        from hypothesis import settings as hsettings

        from .machines import BlackBoxMachine, OutOfTime, run_replay, run_search

        s = self.settings
        machine = BlackBoxMachine.for_property(
            prop,
            target_factory=s.factory,
            deadline=self._deadline(item),
            hold=s.hold,
            virtual_time=s.virtual_time,
            pct_depth=s.pct_depth,
            expires=self._stop_at(item),
        )
        started = time.monotonic()
        self.running = (prop, machine.search)
        try:
            if s.replay is not None:
                outcome = run_replay(machine, s.replay, runs=s.replays)
            else:
                with _hypothesis_statistics(item):
                    outcome = run_search(machine, hsettings(), replays=s.replays)
        except OutOfTime:
            outcome = self._cut(item, machine.search)
        except BaseException:
            if self._expired(item) is None:
                raise
            outcome = self._cut(item, machine.search)
        else:
            if self._expired(item) is not None and outcome.verdict != "FAIL":
                outcome = self._cut(item, machine.search)
        finally:
            self.running = None
        self._report(item, prop, outcome, started)

    def _stop_at(self, item: pytest.Item) -> float | None:
        """When the search stops by itself: early enough that its teardown and the
        verdict fit inside pytest-timeout's timeout, so that never has to fire."""
        expires = item.stash.get(_EXPIRES, None)
        timeout = item.stash.get(_TIMEOUT, None)
        if expires is None or timeout is None:
            return None
        return expires - min(1.0, 0.25 * timeout)

    def _deadline(self, item: pytest.Item) -> float:
        """The deadline, cut to a quarter of what pytest-timeout leaves the search (a hang
        then ends with its story, not with the test's timeout)."""
        expires = item.stash.get(_EXPIRES, None)
        if expires is None:
            return self.settings.deadline
        return max(0.05, min(self.settings.deadline, (expires - time.monotonic()) / 4))

    def _expired(self, item: pytest.Item) -> float | None:
        """pytest-timeout's timeout, if the search's share of it ran out."""
        stop_at = self._stop_at(item)
        if stop_at is None or time.monotonic() < stop_at:
            return None
        return item.stash.get(_TIMEOUT, None)

    def _cut(self, item: pytest.Item, search: Any) -> Any:
        """The verdict of a search pytest-timeout ended: a violation already seen is still
        a FAIL (with the story of the run that showed it); otherwise no verdict."""
        from .machines import Outcome

        timeout = self._expired(item)
        cut = (
            f"pytest-timeout's {timeout:g} s ended the search after {search.runs} topologies; "
            "give the conformance tests a longer --timeout or a smaller --hypothesis-profile"
        )
        with search.lock:
            seen = list(search.failures)
        if seen:
            failure = seen[-1]
            return Outcome(
                "FAIL",
                search.runs,
                search.exercised,
                reason=failure.violations[0].message,
                story=f"{failure.story}\n\nNot shrunk or replayed: {cut}.",
                failure=failure,
                violations=failure.violations,
            )
        return Outcome("ERROR", search.runs, search.exercised, reason=cut)

    def timeout_story(self) -> str:
        """For pytest-timeout's thread method, which ends the process: what ran so far."""
        running = self.running
        lines = [f"{r}: {v['verdict']}" for r, v in self.verdicts.items()]
        if running is not None:
            prop, search = running
            lines.append(
                f"{prop}: cut by pytest-timeout after {search.runs} topologies, "
                f"{len(search.failures)} violation(s) seen"
            )
        return "lifecycle conformance so far:\n" + "\n".join(f"  {line}" for line in lines)

    def run_white_box(self, item: pytest.Item) -> None:
        """The body of the white-box test: the target's dispatcher under stop signals."""
        __tracebackhide__ = True
        from hypothesis import settings as hsettings

        from .machines import OutOfTime, WhiteBoxMachine, run_white_box

        s = self.settings
        machine = type(
            "WhiteBoxMachine",
            (WhiteBoxMachine,),
            {
                "dispatcher_class": s.dispatcher,
                "deadline": self._deadline(item),
                "expires": self._stop_at(item),
            },
        )
        started = time.monotonic()
        try:
            outcome = run_white_box(machine, hsettings())
        except OutOfTime:
            outcome = None
        except BaseException:
            if self._expired(item) is None:
                raise
            outcome = None
        if outcome is None or (self._expired(item) is not None and outcome.verdict != "FAIL"):
            from .machines import Outcome

            outcome = Outcome(
                "ERROR",
                reason=f"pytest-timeout's {self._expired(item):g} s ended the white-box search",
            )
        self._report(item, WHITE_BOX, outcome, started)

    def _report(self, item: pytest.Item, row: str, outcome: Any, started: float) -> None:
        """Put the verdict on the report (it travels to the xdist controller), and fail the
        test with the search's own story unless it is PASS."""
        __tracebackhide__ = True
        record: dict[str, Any] = {
            "row": row,
            "verdict": outcome.verdict,
            "topologies": outcome.topologies,
            "exercised": outcome.exercised,
            "reason": outcome.reason,
            "seconds": round(time.monotonic() - started, 1),
            "situations": _situations(row, dict(getattr(outcome, "situations", {}) or {})),
        }
        if outcome.reproduced is not None:
            record["reproduced"] = list(outcome.reproduced)
        unexplained = getattr(outcome, "unexplained", 0)
        also = ""
        if unexplained:
            # The target failed on its own where no property says why: the verdict
            # stands on what was checked, and the failure is shown, never passed over.
            record["unexplained"] = unexplained
            record["unexplained_reason"] = outcome.unexplained_story.splitlines()[0]
            also = (
                f"\n\nBeside the verdict, {unexplained} example(s) ended in a failure nobody "
                f"injected and no property explains; the first:\n{outcome.unexplained_story}"
            )
        written = self._write_report(row, outcome)
        if written:
            record["report"] = written
            also += f"\n\nreport: {written[0]}\ntimeline: {written[1]}"
        # On the report, not in user_properties: those become <properties> of the
        # <testcase> in JUnit XML, which the xunit2 schema does not allow.
        item.stash[_VERDICT_KEY] = record
        if outcome.verdict == "FAIL":
            raise _Finding(f"{row}: FAIL\n\n{outcome.story}{also}")
        if outcome.verdict == "ERROR":
            raise _Finding(
                f"{row}: ERROR, no verdict: {outcome.reason}\n\n{outcome.story}".rstrip() + also
            )
        if outcome.verdict in ("NOT RUN", "NOT EXERCISED"):
            raise _Finding(
                f"{row}: {outcome.verdict}: {outcome.reason} ({outcome.topologies} drawn){also}"
            )
        if also:
            raise _Finding(f"{row}: {outcome.verdict}{also}")

    def _write_report(self, row: str, outcome: Any) -> tuple[str, str] | None:
        """With ``--lifecycle-report``: the failing example's JSON record and HTML
        timeline, written; their paths."""
        s = self.settings
        failure = getattr(outcome, "failure", None)
        if s.report_dir is None or outcome.verdict != "FAIL" or failure is None:
            return None
        from .artifacts import failure_record, write_failure

        record = failure_record(failure, reproduced=outcome.reproduced, context=self.context(row))
        json_path, html_path = write_failure(s.report_dir, record)
        return str(json_path), str(html_path)

    def context(self, row: str = "") -> dict[str, Any]:
        """What a report or JUnit XML says about the run: target, profile, seed."""
        from hypothesis import settings as hsettings

        s = self.settings
        seed = self.config.getoption("hypothesis_seed", None)
        if seed is None:
            seed = "derandomized" if hsettings().derandomize else "random"
        return {
            "target": s.target,
            "target_version": s.target_version,
            "profile": self.config.getoption("hypothesis_profile", None) or "default",
            "seed": str(seed),
            "search": row,
            "replay_of": s.replay.property if s.replay is not None else None,
        }

    # -- reporting -----------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Carry the verdict on the call's report (it travels to the xdist controller),
        and move what the runtime printed during a search out of the report, into the
        console log, keeping its last lines: the verdict and its story stay readable."""
        report = yield
        if call.when == "call" and _VERDICT_KEY in item.stash:
            report.lifecycle_verdict = item.stash[_VERDICT_KEY]  # type: ignore[attr-defined]
        captured = [(n, c) for n, c in report.sections if n.startswith("Captured ")]
        if captured:
            lines: list[str] = []
            for name, content in captured:
                _console.append(f"{item.nodeid}: {name}", content)
                lines += content.rstrip().splitlines()
            report.sections = [s for s in report.sections if not s[0].startswith("Captured ")]
            shown = lines[-_CONSOLE_TAIL:]
            title = f"runtime console output (last {len(shown)} of {len(lines)} lines)"
            report.sections.append((title, "\n".join(shown)))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        value = getattr(report, "lifecycle_verdict", None)
        if isinstance(value, dict):
            self.verdicts[str(value["row"])] = dict(value)
        row = _row_of(report.nodeid)
        if report.failed and row and row not in self.verdicts:
            self.verdicts[row] = {"row": row, "verdict": "ERROR", "reason": f"{report.when} failed"}

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, None, None]:
        """Before JUnit XML is written: the verdicts as testsuite-level properties (valid
        under xunit2; under xdist the controller writes them, from the verdicts the
        reports carried). After: the exit status, non-zero unless every row is PASS."""
        self._junit_properties(session.config)
        yield
        table_ok = all(self.verdicts.get(r, {}).get("verdict") == "PASS" for r in self.rows())
        if not table_ok and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.exitstatus = int(session.exitstatus)

    def _junit_properties(self, config: pytest.Config) -> None:
        from _pytest.junitxml import xml_key

        xml = config.stash.get(xml_key, None)
        if xml is None:
            return
        for name, value in self.context().items():
            if value is not None and name != "search":
                xml.add_global_property(f"lifecycle.{name}", value)
        for row in self.rows():
            v = self.verdicts.get(row, {})
            counts = (
                f" ({v['exercised']} of {v['topologies']} exercised it)"
                if v.get("topologies")
                else ""
            )
            xml.add_global_property(
                f"lifecycle.verdict.{row.replace(' ', '-')}",
                f"{v.get('verdict', 'NOT RUN')}{counts}",
            )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        s = self.settings
        rows = self.rows()
        width = max(len(r) for r in rows)
        tr = terminalreporter
        tr.write_sep("=", f"lifecycle conformance: target {s.target}")
        tr.write_line(
            "clock: virtual (the job's sleeps, polls and timed waits jump when it is quiet); "
            + (
                "schedule: the recorded one"
                if s.replay is not None
                else f"schedules: PCT of depth {s.pct_depth} or random, drawn per job"
            )
            if s.virtual_time
            else f"clock: wall (a gate opens after {s.hold:g} s of quiet)"
        )
        total = sum(int(self.verdicts.get(r, {}).get("topologies", 0)) for r in rows)
        n = len(s.properties)
        if s.replay is not None:
            tr.write_line(
                f"replay of one recorded run ({s.replay.property}), {s.replays} times: "
                "one schedule, not a search; PASS says only that this run held"
            )
        else:
            tr.write_line(
                f"{total} topologies run in {n} search{'es' if n != 1 else ''}, one per "
                "property (budget per search: the Hypothesis profile's max_examples)"
            )
        for row in rows:
            v = self.verdicts.get(row)
            if v is None:
                tr.write_line(
                    f"{row:<{width}}  NOT RUN  (its search was not run: deselected, "
                    "interrupted, or --collect-only)"
                )
                continue
            verdict = str(v["verdict"])
            if row == WHITE_BOX:
                detail = "" if verdict == "PASS" else v.get("reason", "")
            elif s.replay is not None and verdict in ("PASS", "FAIL"):
                detail = str(v.get("reason", ""))
            elif verdict == "PASS":
                detail = f"{v['topologies']} topologies, {v['exercised']} exercised it"
            elif verdict == "FAIL":
                detail = (
                    f"{v.get('reason', '')}; counterexample above, under test_contract[{row}] "
                    f"({v['topologies']} topologies with shrinking)"
                )
            else:
                detail = f"{v.get('reason', '')} ({v.get('topologies', 0)} topologies)"
            if v.get("unexplained"):
                detail += (
                    f"; and {v['unexplained']} ended in a failure nobody injected "
                    f"({str(v.get('unexplained_reason', '')).removeprefix('unexplained failure: ')}"
                    f"; story under test_contract[{row}])"
                )
            tr.write_line(f"{row:<{width}}  {verdict:<7}  {detail}".rstrip())
            # What put the property to the test, and how often (Hypothesis's statistics
            # show the same events).
            for situation, count in dict(v.get("situations") or {}).items():
                shown = situation.removeprefix(f"{row}: ")
                tr.write_line(f"{'':<{width}}    {count:>4}  {shown}")
        written = [v["report"][0] for v in self.verdicts.values() if v.get("report")]
        if s.report_dir is not None:
            tr.write_line(
                f"reports: {len(written)} failing example(s) written to {s.report_dir}"
                + "".join(f"\n  {w}" for w in written)
            )

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """A target that left non-daemon threads running must not hang the process after
        the verdicts: give them a moment, then say so and leave without them."""
        stray = [
            t
            for t in threading.enumerate()
            if t not in self._threads_before and t.is_alive() and not t.daemon
        ]
        end = time.monotonic() + 1.0
        for t in stray:
            t.join(max(0.0, end - time.monotonic()))
        stray = [t for t in stray if t.is_alive()]
        if stray and not hasattr(config, "workerinput"):
            names = ", ".join(repr(t.name) for t in stray[:10])
            sys.stderr.write(
                f"sage-lifecycle: the target left {len(stray)} non-daemon thread(s) running "
                f"({names}); exiting without waiting for them\n"
            )
            sys.stdout.flush()
            sys.stderr.flush()
            atexit._run_exitfuncs()  # what a normal exit does: temp dirs, log handlers
            os._exit(self.exitstatus)


def _situations(row: str, counts: dict[str, int]) -> dict[str, int]:
    """How many examples met each situation that puts ``row``'s property to the test,
    those never met included (as 0): a situation no example reached is worth seeing."""
    from .contract import PROPERTIES

    prop = PROPERTIES.get(row)
    if prop is None:
        return counts
    every = {f"{row}: {s}": counts.get(f"{row}: {s}", 0) for s in prop.known_situations}
    return dict(sorted(every.items(), key=lambda kv: -kv[1]))


@contextlib.contextmanager
def _hypothesis_statistics(item: pytest.Item) -> Generator[None, None, None]:
    """Hypothesis's statistics of the search run in this test, for
    ``--hypothesis-show-statistics``: its plugin collects them only around ``@given``
    tests, so the search hands them to the item as the plugin does for those (they carry
    the situations each example recorded with ``hypothesis.event``)."""
    try:
        from hypothesis.statistics import collector, describe_statistics
    except ImportError:  # pragma: no cover - a Hypothesis without it: no statistics
        yield
        return

    def note(stats: Any) -> None:
        stats["nodeid"] = item.nodeid
        item.hypothesis_statistics = describe_statistics(stats)  # type: ignore[attr-defined]

    with collector.with_value(note):  # type: ignore[arg-type]
        yield


class _Finding(AssertionError):
    """A search's verdict other than PASS, with its story: pytest prints it as the failure."""


def _row_of(nodeid: str) -> str:
    if "test_white_box" in nodeid:
        return WHITE_BOX
    if "[" in nodeid:
        return nodeid.rsplit("[", 1)[1].rstrip("]")
    return ""


def _items(node: pytest.Item | pytest.Collector) -> Generator[pytest.Item, None, None]:
    if isinstance(node, pytest.Item):
        yield node
        return
    for child in node.collect():
        yield from _items(child)
