"""Searches run to verdicts: :func:`run_search` for a property, :func:`run_white_box`, replays
of a recorded schedule, and :func:`check_topology` for one topology."""

from __future__ import annotations

import dataclasses
import inspect
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis.errors import Flaky

from ..contract import Violation
from ..report import LifecycleViolation
from ..schedule import Replay
from ..target import Target
from ..topology import Topology
from ._common import AT_ONCE, Failure, HarnessError, Search
from .black_box import BlackBoxMachine
from .white_box import WhiteBoxFinding, WhiteBoxMachine

__all__ = ["Outcome", "check_topology", "replay", "run_replay", "run_search", "run_white_box"]


@dataclass
class Outcome:
    """What one search says about the target, for the verdict table.

    ``verdict`` is ``PASS`` (the search ran, exercised the property, found nothing),
    ``FAIL`` (``story`` holds the counterexample), ``ERROR`` (the harness could not reach a
    verdict: ``reason`` says why), ``NOT EXERCISED`` (jobs ran, but none put the property
    to the test) or ``NOT RUN`` (no job ran to a verdict).
    """

    verdict: str
    topologies: int = 0
    exercised: int = 0
    reason: str = ""
    story: str = ""
    failure: Failure | None = None
    #: For a violation Hypothesis could not replay: (reproduced, replays).
    reproduced: tuple[int, int] | None = None
    violations: tuple[Violation, ...] = field(default_factory=tuple)
    #: Examples that ended in a failure nobody injected and no property explains (the
    #: verdict stands on what was checked), and the story of the first.
    unexplained: int = 0
    unexplained_story: str = ""
    #: How many examples met each situation that puts a property to the test
    #: (``"<property>: <situation>"``), most frequent first.
    situations: dict[str, int] = field(default_factory=dict)


def _notes(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", None) or []
    return "\n".join(str(n) for n in notes)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _error(search: Search, reason: str, story: str) -> Outcome:
    """No verdict: the harness could not reach one (``reason`` says why)."""
    return Outcome("ERROR", search.runs, search.exercised, reason=reason, story=story)


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def run_search(machine: type[BlackBoxMachine], settings: Any, *, replays: int = 10) -> Outcome:
    """Run one machine's search to a verdict that is a claim about the target (see
    :func:`_search`), with the search's unexplained failures beside it."""
    outcome = _search(machine, settings, replays=replays)
    search = machine.search
    with search.lock:
        return dataclasses.replace(
            outcome,
            unexplained=search.unexplained,
            unexplained_story=search.unexplained_story,
            situations=dict(search.situations.most_common()),
        )


class _Seeded:
    """A machine's factory under its ``search_name``: Hypothesis digests a factory's name
    and signature to seed a derandomized search, and this one digests as a class of that
    name would, while the machines it makes keep their own class (and name in reports)."""

    def __init__(self, machine: type[BlackBoxMachine], name: str) -> None:
        self.machine = machine
        self.__name__ = name
        self.__signature__ = inspect.signature(machine)

    def __call__(self) -> BlackBoxMachine:
        return self.machine()


def _seeded(machine: type[BlackBoxMachine]) -> Any:
    """What to hand Hypothesis to run ``machine``: seeded by its ``search_name``, if any."""
    name = machine.search_name
    return machine if name is None else _Seeded(machine, name)


def _search(machine: type[BlackBoxMachine], settings: Any, *, replays: int) -> Outcome:
    """Run one machine's search to a verdict that is a claim about the target.

    A :class:`LifecycleViolation` is a FAIL with its (shrunk) story. A violation the
    harness saw but Hypothesis could not replay (``Flaky*``: a target whose bug shows on
    some runs only) is still a FAIL: the story of the run that showed it, and how many of
    ``replays`` replays of its topology and schedule reproduced it. A crashed adapter or
    a job that never ran is an ERROR; a search in which no topology exercised the
    property is NOT EXERCISED. Only the rest is PASS.
    """
    from hypothesis.stateful import run_state_machine_as_test

    search = machine.search
    try:
        run_state_machine_as_test(_seeded(machine), settings=settings)
    except LifecycleViolation as exc:
        return Outcome(
            "FAIL",
            search.runs,
            search.exercised,
            reason=exc.violations[0].message if exc.violations else _first_line(str(exc)),
            story=f"{exc}\n{_notes(exc)}".rstrip(),
            failure=search.failures[-1] if search.failures else None,
            violations=exc.violations,
        )
    except HarnessError as exc:
        return _error(search, _first_line(str(exc)), str(exc))
    except Flaky as exc:
        with search.lock:
            seen = list(search.failures)
        if not seen:
            # Not a violation (those are recorded as seen): what the first run raised, an
            # adapter crash or a job that never ran, is the reason, named as itself.
            leaf = _leaves(exc)[0]
            if leaf is exc:
                reason = f"Hypothesis: {type(exc).__name__}: {_first_line(str(exc))}"
            else:
                reason = (
                    f"{type(leaf).__name__}: {_first_line(str(leaf))} (in one run; Hypothesis "
                    "could not make it happen again)"
                )
            return _error(search, reason, _traceback(exc))
        failure = seen[-1]
        hits = replay(machine, failure, runs=replays)
        story = (
            f"{failure.story}\n\nThis violation was seen in the run above; Hypothesis could not "
            f"replay it reliably ({type(exc).__name__}), so it is reported as seen. "
            f"Replaying its topology and schedule {replays} times reproduced it "
            f"{hits}/{replays}: the target's bug shows on some runs only."
        )
        return Outcome(
            "FAIL",
            search.runs,
            search.exercised,
            reason=f"{failure.violations[0].message} (reproduced {hits}/{replays})",
            story=story,
            failure=failure,
            reproduced=(hits, replays),
            violations=failure.violations,
        )
    except Exception as exc:
        leaves = _leaves(exc)
        found = [e for e in leaves if isinstance(e, LifecycleViolation)]
        if found:
            # Hypothesis found several distinct failures: a violation among them is this
            # search's finding, with its own story; the others are named after it.
            first = found[0]
            others = [e for e in leaves if e is not first]
            also = "".join(
                f"\n\nHypothesis also found, in another example: {type(e).__name__}: "
                f"{_first_line(str(e))}"
                for e in others
            )
            return Outcome(
                "FAIL",
                search.runs,
                search.exercised,
                reason=first.violations[0].message if first.violations else _first_line(str(first)),
                story=f"{first}{also}",
                failure=search.failures[-1] if search.failures else None,
                violations=first.violations,
            )
        leaf = leaves[0]
        return _error(search, f"{type(leaf).__name__}: {_first_line(str(leaf))}", _traceback(exc))
    if search.examples == 0:
        return Outcome("NOT RUN", search.runs, 0, reason="no topology ran to a verdict")
    if search.exercised == 0:
        return Outcome(
            "NOT EXERCISED",
            search.runs,
            0,
            reason=f"{search.examples} topologies ran, none put the property to the test",
        )
    return Outcome("PASS", search.runs, search.exercised)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    inner = getattr(exc, "exceptions", None)
    if not inner:
        return [exc]
    return [leaf for e in inner for leaf in _leaves(e)]


def run_white_box(machine: type[WhiteBoxMachine], settings: Any) -> Outcome:
    """Run the white-box machine to a verdict, as :func:`run_search` does for a property.

    Its findings are assertions on the dispatcher's state and the contract; one that
    Hypothesis could not replay (``FlakyFailure`` carries what the first run raised) is
    still a FAIL, reported as seen.
    """
    from hypothesis.stateful import run_state_machine_as_test

    try:
        run_state_machine_as_test(machine, settings=settings)
    except Exception as exc:
        leaves = _leaves(exc)
        if not all(isinstance(e, AssertionError) for e in leaves):
            first = next(e for e in leaves if not isinstance(e, AssertionError))
            reason = f"{type(first).__name__}: {_first_line(str(first))}"
            return Outcome("ERROR", reason=reason, story=_traceback(exc))
        first = leaves[0]
        story = _traceback(exc)
        if isinstance(exc, Flaky):
            story += (
                f"\nThis was seen in the run above; Hypothesis could not replay it reliably "
                f"({type(exc).__name__}), so it is reported as seen."
            )
        if isinstance(first, WhiteBoxFinding | LifecycleViolation):
            reason = _first_line(str(first))
            if isinstance(first, LifecycleViolation) and first.violations:
                reason = f"{first.violations[0].property}: {first.violations[0].message}"
        else:
            reason = f"{type(first).__name__}: {_first_line(str(first))}"
        if len(leaves) > 1:
            reason += f" (and {len(leaves) - 1} more distinct failure(s))"
        return Outcome("FAIL", reason=reason, story=story)
    return Outcome("PASS")


def replay(machine: type[BlackBoxMachine], failure: Failure, *, runs: int) -> int:
    """Run ``failure``'s topology and schedule ``runs`` times; count the runs that show a
    violation of the same property again. Outside Hypothesis: nothing is drawn."""
    wanted = {v.property for v in failure.violations}
    run = Replay(
        next(iter(wanted), ""),
        failure.topology,
        failure.schedule,
        failure.plan,
        failure.decisions,
    )
    return _replay_runs(machine, run, wanted, runs).hits


def run_replay(machine: type[BlackBoxMachine], run: Replay, *, runs: int) -> Outcome:
    """Replay one recorded run (a report's JSON file, or ``--lifecycle-schedule``) ``runs``
    times on ``machine``'s target, outside Hypothesis: nothing is drawn.

    FAIL with the story of the first replay that showed a violation of the run's
    property and how often it came back (``reproduced``); PASS when the property was put
    to the test on every replay and held on each (a claim about this one schedule, not a
    search: the reason says so); NOT EXERCISED when a replay did not put it to the test;
    ERROR when a replay crashed in the adapter or the harness and none showed it.
    """
    r = _replay_runs(machine, run, {run.property}, runs)
    rate = f"reproduced {r.hits}/{runs}"
    notes = ""
    if r.departed:
        notes += (
            f" In {r.departed} of them the run departed from the recorded decisions (a point "
            "they name was not reached), and the plan decided from there."
        )
    if r.crashed:
        notes += (
            f" {len(r.crashed)} of them ended in the harness or the adapter: "
            f"{type(r.crashed[0]).__name__}: {_first_line(str(r.crashed[0]))}."
        )
    situations = dict(r.situations.most_common())
    if r.first is not None:
        return Outcome(
            "FAIL",
            runs,
            r.exercised,
            reason=f"{r.first.violations[0].message} ({rate})",
            story=f"{r.first.story}\n\nReplayed this one run {runs} times: {rate}.{notes}",
            failure=r.first,
            reproduced=(r.hits, runs),
            violations=r.first.violations,
            situations=situations,
        )
    if r.crashed:
        # A run that never got to its end shows nothing about the property.
        return Outcome(
            "ERROR",
            runs,
            r.exercised,
            reason=f"{type(r.crashed[0]).__name__}: {_first_line(str(r.crashed[0]))} "
            f"({len(r.crashed)} of {runs} replays)",
            story=_traceback(r.crashed[0]) + notes,
            reproduced=(0, runs),
            situations=situations,
        )
    if r.exercised < runs:
        return Outcome(
            "NOT EXERCISED",
            runs,
            r.exercised,
            reason=f"{runs - r.exercised} of {runs} replays of this run did not put "
            f"{run.property} to the test{notes}",
            reproduced=(0, runs),
            situations=situations,
        )
    return Outcome(
        "PASS",
        runs,
        r.exercised,
        reason=f"{run.property} held on {runs}/{runs} replays of the recorded run "
        f"(one schedule, not a search){notes}",
        reproduced=(0, runs),
        situations=situations,
    )


@dataclass
class _Replayed:
    """What ``runs`` replays of one run showed."""

    #: Replays that showed a violation of the wanted properties, and the first's story.
    hits: int = 0
    first: Failure | None = None
    #: What the replays that crashed (adapter, harness) raised.
    crashed: list[Exception] = field(default_factory=list)
    #: Replays that departed from the recorded decisions.
    departed: int = 0
    #: Replays that put the property to the test, and the situations they met.
    exercised: int = 0
    situations: Counter[str] = field(default_factory=Counter)


def _replay_runs(
    machine: type[BlackBoxMachine], run: Replay, wanted: set[str], runs: int
) -> _Replayed:
    """Replay ``run`` ``runs`` times, counting what the replays showed."""
    search = Search()
    quiet = type(f"{machine.__name__}_Replay", (machine,), {"search": search})
    out = _Replayed()
    for _ in range(runs):
        m = quiet()
        m.plan, m.forced = run.plan, run.decisions if run.plan is not None else None
        seen: list[LifecycleViolation] = []
        try:
            steps = list(run.steps)
            if steps[:1] == [("end", AT_ONCE)]:
                m.final_ending = AT_ONCE  # begin() stops it as soon as it started
                steps = steps[1:]
            m.begin(run.topology)
            for action, what in steps:
                if action == "end":
                    m.end_now(what)
                    m._settle()
                else:
                    m.act_on(what, fail=action == "fail")
                m.contract_holds_so_far()
        except LifecycleViolation as exc:
            seen.append(exc)
        except Exception as exc:  # an adapter that crashed on replay: not a reproduction
            out.crashed.append(exc)
        try:
            m.teardown()
        except LifecycleViolation as exc:
            seen.append(exc)
        except Exception as exc:
            out.crashed.append(exc)
        out.departed += bool(m.scheduler is not None and m.scheduler.departed)
        if any({v.property for v in e.violations} & wanted for e in seen):
            out.hits += 1
            if out.first is None:
                # The run's own story, as the search records it (without its advice on
                # how to replay: this is the replay).
                out.first = next(
                    f for f in search.failures if {v.property for v in f.violations} & wanted
                )
    with search.lock:
        out.exercised = search.exercised
        out.situations = Counter(search.situations)
    return out


def check_topology(
    target_factory: Callable[[], Target],
    topology: Topology,
    *,
    deadline: float = 30.0,
    properties: tuple[str, ...] | None = None,
) -> list[Violation]:
    """Run one topology through the black-box machine and return the violations found.

    The gates open in name order once the job has gone quiet; no step is drawn. Useful
    to keep a finding as a regression test::

        found = check_topology(resolve_target("sage"), topology)
        assert {v.property for v in found} == {"no-early-return"}
    """

    class One(BlackBoxMachine):
        pass

    One.target_factory = staticmethod(target_factory)
    One.deadline = deadline
    One.properties = properties
    One.search = Search()
    m = One()
    try:
        m.begin(topology)
        m.teardown()
    except LifecycleViolation as exc:
        m.teardown()
        return list(exc.violations)
    return []
