"""Schedules: the plan decides who goes next at scheduling points, deterministically, and
a recorded run replays exactly from its schedule string."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import run_cli
from sage_lifecycle.machines import BlackBoxMachine, Outcome, run_replay, run_search
from sage_lifecycle.profiles import register_profiles
from sage_lifecycle.reference_target import ReferenceTarget
from sage_lifecycle.resolve import resolve_target
from sage_lifecycle.schedule import Plan, Replay, ScheduleError, Scheduler, decode, encode, plans
from sage_lifecycle.topology import topologies

DEADLINE = 30.0


def release_order(scheduler: Scheduler, owners: tuple[str, ...] = ("a", "b", "c")) -> list[str]:
    """Park one thread per owner at a point, then let the scheduler release them all
    (each decision taken while every thread not yet released is parked)."""
    threads = [
        threading.Thread(target=scheduler.point, args=(f"go {o}",), name=f"job#7/{o}")
        for o in owners
    ]
    for t in threads:
        t.start()
    assert scheduler.wait_until(lambda labels: len(labels) == len(owners), DEADLINE)
    order = [scheduler.step() for _ in owners]
    for t in threads:
        t.join(DEADLINE)
        assert not t.is_alive()
    return [str(label).split(" @", 1)[0][3:] for label in order]


def test_a_plan_decides_the_same_order_every_time() -> None:
    for plan in (Plan("pct", seed=11), Plan("random", seed=11)):
        first = release_order(Scheduler(plan, timeout=DEADLINE))
        assert sorted(first) == ["a", "b", "c"]
        for _ in range(5):
            assert release_order(Scheduler(plan, timeout=DEADLINE)) == first


def test_seeds_give_different_orders() -> None:
    for kind in ("pct", "random"):
        orders = {
            tuple(release_order(Scheduler(Plan(kind, seed=s), timeout=DEADLINE))) for s in range(12)
        }
        assert len(orders) >= 3, (kind, orders)


def test_a_pct_change_point_preempts_the_thread_about_to_go() -> None:
    """At a change point the highest-priority thread drops below every other: the
    second goes first and the dropped one goes last."""
    plain = release_order(Scheduler(Plan("pct", seed=5, depth=2, changes=()), timeout=DEADLINE))
    changed = release_order(Scheduler(Plan("pct", seed=5, depth=2, changes=(0,)), timeout=DEADLINE))
    assert changed == [plain[1], plain[2], plain[0]]


def test_forced_decisions_replay_and_a_departure_is_noticed() -> None:
    forced = Scheduler(Plan("pct", seed=5), timeout=DEADLINE, forced=("go c @c", "go a @a"))
    assert release_order(forced) == ["c", "a", "b"]
    assert not forced.departed
    astray = Scheduler(Plan("pct", seed=5), timeout=DEADLINE, forced=("go z @z",))
    assert sorted(release_order(astray)) == ["a", "b", "c"]
    assert astray.departed


def test_closing_releases_every_parked_thread_and_later_points_pass() -> None:
    scheduler = Scheduler(Plan(), timeout=DEADLINE)
    threads = [threading.Thread(target=scheduler.point, args=(f"p{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    assert scheduler.wait_until(lambda labels: len(labels) == 2, DEADLINE)
    scheduler.close()
    for t in threads:
        t.join(DEADLINE)
        assert not t.is_alive()
    scheduler.point("late")  # returns at once: nothing holds the job after close
    assert scheduler.parked() == []
    assert scheduler.decisions == []


@settings(max_examples=50, deadline=None)
@given(topology=topologies(), plan=st.one_of(st.none(), plans(3)), data=st.data())
def test_a_schedule_string_reads_back_as_the_run_it_names(
    topology: object, plan: Plan | None, data: st.DataObject
) -> None:
    steps = tuple(data.draw(st.lists(st.tuples(st.sampled_from(["open", "fail"]), st.text()))))
    decisions = tuple(data.draw(st.lists(st.text())))
    run = Replay("no-hang", topology, steps, plan, decisions)  # type: ignore[arg-type]
    text = encode(run)
    assert text.startswith("L1.")
    assert text.isascii()
    assert " " not in text
    assert decode(text) == run


@pytest.mark.parametrize("text", ["", "pct:3", "L1.", "L1.not-base64!", "L1.eNo"])
def test_a_bad_schedule_string_is_one_clear_error(text: str) -> None:
    fix = re.escape("copy the whole --lifecycle-schedule=... value")
    with pytest.raises(ScheduleError, match=fix):
        decode(text)


# -- the racy mutant: found through a drawn schedule, replayed exactly ---------------------


@pytest.fixture(scope="module")
def racy_search() -> Outcome:
    register_profiles()
    from hypothesis import settings as hsettings

    machine = BlackBoxMachine.for_property(
        "cleanup-exactly-once", target_factory=resolve_target("mutant:racy_last_stop_signal")
    )
    return run_search(machine, hsettings(hsettings.get_profile("ci")), replays=3)


def _token(outcome: Outcome) -> str:
    found = re.search(r"--lifecycle-schedule=(L1\.\S+)", outcome.story)
    assert found, outcome.story
    return found.group(1)


def test_the_racy_mutant_is_caught_through_a_drawn_schedule(racy_search: Outcome) -> None:
    outcome = racy_search
    assert outcome.verdict == "FAIL", outcome.reason
    assert {v.property for v in outcome.violations} == {"cleanup-exactly-once"}
    assert outcome.failure is not None
    assert outcome.failure.plan is not None
    # The double cleanup needs both last stop signals counted before either looks.
    counted = [d for d in outcome.failure.decisions if d.startswith("counted the stop signal")]
    assert len(counted) == 2, outcome.failure.decisions
    assert "plan: " in outcome.story
    assert "decision(s) at scheduling points" in outcome.story


def test_its_schedule_string_replays_it_every_time(racy_search: Outcome) -> None:
    run = decode(_token(racy_search))
    mutant = BlackBoxMachine.for_property(
        "cleanup-exactly-once", target_factory=resolve_target("mutant:racy_last_stop_signal")
    )
    replayed = run_replay(mutant, run, runs=10)
    assert replayed.verdict == "FAIL"
    assert replayed.reproduced == (10, 10)
    assert "cleanup began 2 times" in replayed.reason
    reference = BlackBoxMachine.for_property(
        "cleanup-exactly-once", target_factory=resolve_target("reference")
    )
    held = run_replay(reference, run, runs=3)
    assert (held.verdict, held.reproduced) == ("PASS", (0, 3))
    assert held.reason == (
        "cleanup-exactly-once held on 3/3 replays of the recorded run (one schedule, not a search)"
    )


def test_a_replay_whose_adapter_crashes_is_an_error_not_a_verdict(racy_search: Outcome) -> None:
    """A run that never got to its end shows nothing about the property: ERROR, never
    PASS."""

    class Broken(ReferenceTarget):
        def build(self, probes: Any) -> None:
            raise OSError("no route to the runtime")

    machine = BlackBoxMachine.for_property("cleanup-exactly-once", target_factory=Broken)
    outcome = run_replay(machine, decode(_token(racy_search)), runs=2)
    assert outcome.verdict == "ERROR"
    assert "failed to build the job: OSError: no route to the runtime" in outcome.reason
    assert "(2 of 2 replays)" in outcome.reason


def test_the_command_line_replays_a_schedule_string(racy_search: Outcome, tmp_path: Path) -> None:
    token = _token(racy_search)
    done = run_cli(
        tmp_path, "--schedule", token, "--target", "mutant:racy_last_stop_signal", "--replays", "3"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "replay of one recorded run (cleanup-exactly-once), 3 times" in done.stdout
    assert re.search(
        r"cleanup-exactly-once +FAIL +service 's0' cleanup began 2 times "
        r"\(reproduced 3/3\)",
        done.stdout,
    ), done.stdout
    held = run_cli(tmp_path, "--schedule", token, "--replays", "2")
    assert held.returncode == 0, held.stdout + held.stderr
    assert re.search(r"cleanup-exactly-once +PASS +cleanup-exactly-once held on 2/2", held.stdout)
