"""The pytest plugin: options, ini values, the marker, fixtures and the summary.

Thin by design: it imports the reference runtime and the checkers only inside the
fixtures and hooks that use them, so loading it costs tests that do not use it nothing.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

__all__ = [
    "lifecycle_env",
    "lifecycle_env_factory",
    "lifecycle_trace",
    "pytest_addhooks",
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_call",
    "pytest_terminal_summary",
    "pytest_timeout_set_timer",
]

if TYPE_CHECKING:
    from .contract import Violation
    from .reference import Dispatcher, LocalEnvironment
    from .trace import Trace

_DEADLINE_HELP = (
    "deadline in seconds for each wait of a lifecycle_env job (submit, stop, close); "
    "past it the test fails with no-hang and the job's thread stacks (default: 30; the "
    "conformance suite needs at least 0.5)"
)
_PROPERTIES_HELP = (
    "comma-separated contract properties checked at the end of each lifecycle test, "
    "or 'all' (default: all)"
)
_TARGET_HELP = (
    "runtime the conformance suite, and the lifecycle_env fixtures, run against: "
    "reference (default), mutant:<name>, sage, sage-flownet, sage-kernel, module:attr "
    "naming your adapter, or a name registered under the sage_lifecycle.targets "
    "entry-point group"
)
_CONFORMANCE_HELP = (
    "run the lifecycle conformance suite (Hypothesis state machines) against "
    "--lifecycle-target instead of collecting tests, and end with a verdict per property"
)
_HOLD_HELP = (
    "seconds the job must stay quiet before the conformance driver opens the next gate "
    "(default: 0.005); longer finds more timing bugs on a slow machine, never a false alarm"
)
_CLOCK_HELP = (
    "the conformance driver's clock: 'auto' (default) runs a target that declares "
    "virtual_time on the harness's virtual clock, so sleeps, polls and timed joins cannot "
    "outlast a parked gate; 'wall' waits for wall-clock quiet on every target"
)
_CLOCKS = ("auto", "wall")
_PCT_HELP = (
    "depth of the PCT schedules the conformance driver draws on virtual time: priorities "
    "plus depth-1 change points decide which thread goes next at the job's scheduling "
    "points (default: 2; 1 to 5)"
)
_SCHEDULE_HELP = (
    "replay exactly one recorded conformance run: the string a failure report prints "
    "after 'replay exactly this run:' (its topology, steps and schedule); runs it "
    "--lifecycle-replay-runs times (default 10) and prints how often the violation came back"
)
_REPLAYS_HELP = (
    "how many times --lifecycle-replay or --lifecycle-schedule replays its run, and a "
    "search replays a violation Hypothesis could not reproduce (default: 10; also "
    "spelled --lifecycle-replays)"
)
_REPLAY_HELP = (
    "replay exactly one recorded conformance run from a report's JSON file "
    "(--lifecycle-report wrote it): on the target it names, unless --lifecycle-target "
    "is given; --lifecycle-replay-runs times (default 10)"
)
_REPORT_HELP = (
    "directory for a JSON record and an HTML timeline of each failing conformance "
    "example (default: none written); see docs/reports.md"
)
_PCT_DEPTHS = range(1, 6)
_MARKER = (
    "lifecycle(*, deadline=None, properties=None, dispatcher=None, target=None): run this "
    "test's lifecycle_env jobs with this deadline in seconds, check only these contract "
    "properties, run them on this Dispatcher subclass, or on this target's real runtime "
    "(sage, sage-flownet, sage-kernel, mutant:<name>; default: --lifecycle-target)"
)
#: The smallest deadline the conformance suite accepts: the reference's own steps on a
#: loaded 2-core machine take tens of milliseconds, so less would measure the machine.
_CONFORMANCE_MIN_DEADLINE = 0.5
_MARKER_KEYS = frozenset({"deadline", "properties", "dispatcher", "target"})


@dataclass
class _Settings:
    deadline: float
    properties: tuple[str, ...]
    conformance: bool = False
    target: str = "reference"
    #: Where ``target`` came from, for error messages.
    target_where: str = "--lifecycle-target"


@dataclass
class _SummaryCounts:
    tests: int = 0
    jobs: int = 0
    unended: int = 0
    by_property: Counter[str] = field(default_factory=Counter)
    #: The properties the tests checked (a marker may choose fewer than the session).
    properties: set[str] = field(default_factory=set)


@dataclass
class _TestJobs:
    """What one test's lifecycle fixtures made: the trace and the jobs to close and check."""

    trace: Trace
    deadline: float
    properties: tuple[str, ...]
    dispatcher: type[Dispatcher] | None
    #: The target whose real runtime runs the jobs (``None``: the reference).
    target: Any = None
    jobs: list[_Job] = field(default_factory=list)
    done: bool = False
    #: When pytest-timeout will end this test (``time.monotonic()``), if it will.
    expires: float | None = None
    #: Why the deadline is shorter than configured, shown with a failure.
    notes: list[str] = field(default_factory=list)

    def budget(self, wanted: float) -> float:
        """``wanted`` seconds, or less so that the test ends before its timeout fires."""
        if self.expires is None:
            return wanted
        left = self.expires - time.monotonic()
        return max(0.0, min(wanted, left - _timeout_margin(left)))


def _timeout_margin(left: float) -> float:
    """Time kept free before pytest-timeout fires, for the report and the teardown."""
    return min(1.0, 0.2 * max(left, 0.0))


#: Seconds a test interrupted by Ctrl-C or its timeout may spend closing its jobs.
_RELEASE_NOW = 0.5


class _Job(Protocol):
    """One fixture job as teardown sees it, on the reference or on a real runtime
    (:class:`sage_lifecycle.observe.RuntimeJob` has the same methods)."""

    job: str
    deadline: float
    #: What the test got: the environment it builds and runs the job with.
    observed: Any

    def problem(self) -> str | None:
        """Why this job's verdict would not be about what the test meant, if so."""
        ...

    def end_if_running(self, timeout: float) -> None:
        """Teardown: end the job if the test did not, raising what its ending call raises."""
        ...

    def settle(self, timeout: float) -> None:
        """Let a job whose wait returned early show what it still does."""
        ...

    def release(self, timeout: float) -> list[str]:
        """After the verdict: let the job's threads go; the names of those still alive."""
        ...

    def threads(self) -> list[threading.Thread]:
        """The job's threads, for stacks."""
        ...

    def release_now(self, timeout: float) -> None:
        """Ctrl-C or the test's timeout: let the job's threads go, within ``timeout``."""
        ...


class _ReferenceJob(_Job):
    """A fixture job on the reference ``LocalEnvironment``: its dispatcher records all."""

    def __init__(self, env: LocalEnvironment) -> None:
        self.observed = self.env = env
        self.job = env.job
        self.deadline = env.deadline

    def problem(self) -> str | None:
        from .observe import unended

        dispatcher = self.env.dispatcher
        return unended(
            self.job,
            built=self.env.built,
            submitted=dispatcher is not None,
            ended=dispatcher is not None and dispatcher.waited,
            ending="env.submit(autostop=True), env.stop() or env.close()",
        )

    def end_if_running(self, timeout: float) -> None:
        self.env.close(timeout=timeout)

    def settle(self, timeout: float) -> None:
        if self.env.dispatcher is not None:
            self.env.dispatcher.settle(timeout)

    def release(self, timeout: float) -> list[str]:
        dispatcher = self.env.dispatcher
        return [t.name for t in dispatcher.release(timeout)] if dispatcher else []

    def threads(self) -> list[threading.Thread]:
        return self.env.dispatcher.threads() if self.env.dispatcher else []

    def release_now(self, timeout: float) -> None:
        if self.env.dispatcher is not None:
            self.env.dispatcher.request_stop()
            self.env.dispatcher.release(timeout)


#: When pytest-timeout will fire for an item (``time.monotonic()``), and its timeout.
_EXPIRES = pytest.StashKey[float]()
_TIMEOUT = pytest.StashKey[float]()
_SETTINGS = pytest.StashKey[_Settings]()
_STATS = pytest.StashKey[_SummaryCounts]()
_TEST_JOBS = pytest.StashKey[_TestJobs]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


_HYPOTHESIS_PLUGIN = "hypothesispytest"  # the name Hypothesis's entry point registers


#: The options, in the order --help shows them: name, metavar (``None``: a flag, with a
#: boolean ini twin), help, and the ini twin's default (``None``: no ini value).
_OPTIONS: tuple[tuple[str, str | None, str, str | None], ...] = (
    ("deadline", "SECONDS", _DEADLINE_HELP, "30"),
    ("properties", "IDS", _PROPERTIES_HELP, "all"),
    ("target", "TARGET", _TARGET_HELP, "reference"),
    ("conformance", None, _CONFORMANCE_HELP, None),
    ("hold", "SECONDS", _HOLD_HELP, "0.005"),
    ("clock", "auto|wall", _CLOCK_HELP, "auto"),
    ("pct-depth", "N", _PCT_HELP, "2"),
    ("schedule", "STRING", _SCHEDULE_HELP, None),
    ("replay", "FILE", _REPLAY_HELP, None),
    ("replay-runs", "N", _REPLAYS_HELP, None),
    ("report", "DIR", _REPORT_HELP, ""),
)
#: Other spellings an option keeps (0.2 named the replay count ``--lifecycle-replays``).
_ALIASES = {"replay-runs": ("--lifecycle-replays",)}


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # The conformance suite is Hypothesis state machines: make sure Hypothesis's plugin
    # (and its --hypothesis-profile) is there even with plugin autoload off. Registered
    # under its entry point's name, so autoload, if on, does not load it twice.
    if not pluginmanager.is_blocked(_HYPOTHESIS_PLUGIN) and not pluginmanager.has_plugin(
        _HYPOTHESIS_PLUGIN
    ):
        import _hypothesis_pytestplugin  # type: ignore[import-untyped]

        if not pluginmanager.is_registered(_hypothesis_pytestplugin):
            pluginmanager.register(_hypothesis_pytestplugin, _HYPOTHESIS_PLUGIN)
    group = parser.getgroup("lifecycle", "service and job lifecycle contract (sage_lifecycle)")
    for name, metavar, text, ini in _OPTIONS:
        dest = f"lifecycle_{name.replace('-', '_')}"
        if metavar is None:  # a flag
            group.addoption(
                f"--lifecycle-{name}", dest=dest, action="store_true", default=None, help=text
            )
            parser.addini(dest, text, type="bool", default=False)
            continue
        # No default: an option not given falls back to its ini value (see _option).
        group.addoption(
            f"--lifecycle-{name}",
            *_ALIASES.get(name, ()),
            dest=dest,
            metavar=metavar,
            default=None,
            help=text,
        )
        if ini is not None:
            parser.addini(dest, text, default=ini)


def _parse_seconds(value: object, where: str, what: str = "deadline", example: str = "30") -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0 or seconds > threading.TIMEOUT_MAX:
        raise pytest.UsageError(
            f"Invalid lifecycle {what} {value!r} from {where}: expected a positive number "
            f"of seconds up to {threading.TIMEOUT_MAX:.3g}, for example "
            f"--lifecycle-{what}={example}"
        )
    return seconds


def _parse_count(value: object, where: str, what: str, allowed: range) -> int:
    text = str(value).strip()
    if not (text.isdigit() and int(text) in allowed):
        raise pytest.UsageError(
            f"Invalid lifecycle {what.replace('-', ' ')} {value!r} from {where}: expected a "
            f"whole number from {allowed.start} to {allowed.stop - 1}, for example "
            f"--lifecycle-{what}={allowed.start + 1}"
        )
    return int(text)


def _option(config: pytest.Config, name: str) -> tuple[object, str]:
    value = config.getoption(name)
    if value is not None:
        return value, f"--{name.replace('_', '-')}"
    return config.getini(name), f"the {name} ini value"


@pytest.hookimpl(tryfirst=True)  # before Hypothesis's plugin loads --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)
    deadline = _parse_seconds(*_option(config, "lifecycle_deadline"))
    raw, where = _option(config, "lifecycle_properties")
    from .contract import parse_properties

    try:
        properties = parse_properties(str(raw), where=where)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    conformance = bool(_option(config, "lifecycle_conformance")[0])
    target, target_where = _option(config, "lifecycle_target")
    hold = _parse_seconds(*_option(config, "lifecycle_hold"), what="hold", example="0.01")
    clock, clock_where = _option(config, "lifecycle_clock")
    if str(clock).strip() not in _CLOCKS:
        raise pytest.UsageError(
            f"Invalid lifecycle clock {clock!r} from {clock_where}: expected "
            f"{' or '.join(_CLOCKS)}, for example --lifecycle-clock=wall"
        )
    depth = _parse_count(*_option(config, "lifecycle_pct_depth"), "pct-depth", _PCT_DEPTHS)
    replays_given = config.getoption("lifecycle_replay_runs")
    replays = 10
    if replays_given is not None:
        replays = _parse_count(
            replays_given, "--lifecycle-replay-runs", "replay-runs", range(1, 10001)
        )
    replay, replay_target = _replay_option(config, conformance, target)
    if replay_target is not target:
        target, target_where = replay_target, "the report --lifecycle-replay names"
    if replay is not None:
        properties = (replay.property,)
    report_dir = _report_dir(config)
    settings = _Settings(deadline, properties, conformance, str(target), target_where)
    config.stash[_SETTINGS] = settings
    config.stash[_STATS] = _SummaryCounts()
    if conformance:
        _register_conformance(
            config,
            settings,
            target_where,
            hold,
            str(clock).strip(),
            pct_depth=depth,
            replay=replay,
            replays=replays,
            report_dir=report_dir,
        )
    elif settings.target.strip() != "reference":  # checked now, resolved by the first fixture
        from .resolve import validate_target_spec
        from .target import TargetError

        try:
            validate_target_spec(settings.target)
        except TargetError as exc:
            raise pytest.UsageError(
                f"Invalid lifecycle target from {target_where}: {exc}"
            ) from None


def _register_conformance(
    config: pytest.Config,
    settings: _Settings,
    where: str,
    hold: float,
    clock: str = "auto",
    *,
    pct_depth: int = 2,
    replay: Any = None,
    replays: int = 10,
    report_dir: Path | None = None,
) -> None:
    """Conformance mode: its own plugin object, registered only when the mode is on."""
    from ._conformance import PLUGIN_NAME, ConformancePlugin, ConformanceSettings
    from .machines._common import target_version
    from .profiles import register_profiles
    from .reference_target import ReferenceTarget

    register_profiles()
    if settings.deadline < _CONFORMANCE_MIN_DEADLINE:
        raise pytest.UsageError(
            f"Invalid lifecycle deadline {settings.deadline} for the conformance suite: below "
            f"{_CONFORMANCE_MIN_DEADLINE} s a correct runtime on a loaded machine can miss it "
            "(a false no-hang); use --lifecycle-deadline=30, or at least "
            f"{_CONFORMANCE_MIN_DEADLINE}"
        )
    if hold >= settings.deadline:
        raise pytest.UsageError(
            f"Invalid lifecycle hold {hold} s: it must be shorter than the deadline "
            f"({settings.deadline} s), or every gate would count as a hang; for example "
            "--lifecycle-hold=0.01"
        )
    factory = _resolve(settings.target, where)
    sample = factory()
    workers = config.getoption("numprocesses", None)
    if getattr(sample, "one_process_at_a_time", False) and workers not in (None, 0, 1):
        raise pytest.UsageError(
            f"--lifecycle-target={settings.target} with pytest-xdist (-n {workers}): this "
            "runtime binds a fixed port, so two processes cannot run it at once; run it "
            "without -n (its searches then run one after the other)"
        )
    dispatcher = sample.dispatcher if isinstance(sample, ReferenceTarget) else None
    if replay is not None:
        dispatcher = None  # a replay runs its one property, not the white box
    conf = ConformanceSettings(
        target=settings.target,
        factory=factory,
        deadline=settings.deadline,
        hold=hold,
        properties=settings.properties,
        dispatcher=dispatcher,
        virtual_time=clock == "auto" and bool(getattr(sample, "virtual_time", False)),
        pct_depth=pct_depth,
        replay=replay,
        replays=replays,
        report_dir=report_dir,
        target_version=target_version(sample),
    )
    config.pluginmanager.register(ConformancePlugin(conf, config), PLUGIN_NAME)


def _replay_option(config: pytest.Config, conformance: bool, target: object) -> tuple[Any, object]:
    """The run ``--lifecycle-replay`` (a report file) or ``--lifecycle-schedule`` (a
    string) names, if any, and the target: the report's, unless one was given."""
    schedule = config.getoption("lifecycle_schedule")
    path = config.getoption("lifecycle_replay")
    if schedule is None and path is None:
        return None, target
    given = "--lifecycle-replay" if path is not None else "--lifecycle-schedule"
    if schedule is not None and path is not None:
        raise pytest.UsageError(
            "--lifecycle-replay and --lifecycle-schedule both name a run to replay: give one"
        )
    if not conformance:
        raise pytest.UsageError(
            f"{given} replays a conformance run: add --lifecycle-conformance (or run "
            f"sage-lifecycle {given.removeprefix('--lifecycle-')}=...)"
        )
    from .schedule import ScheduleError, decode

    if schedule is not None:
        try:
            return decode(str(schedule)), target
        except ScheduleError as exc:
            raise pytest.UsageError(f"--lifecycle-schedule: {exc}") from None
    from .artifacts import ReportError, read_replay

    file = Path(config.invocation_params.dir, str(path))
    try:
        run, recorded = read_replay(file)
    except ReportError as exc:
        raise pytest.UsageError(f"--lifecycle-replay: {exc}") from None
    if config.getoption("lifecycle_target") is None:
        target = recorded
    return run, target


def _report_dir(config: pytest.Config) -> Path | None:
    """Where failing examples' reports go (``--lifecycle-report`` or its ini value)."""
    value, _ = _option(config, "lifecycle_report")
    text = str(value or "").strip()
    if not text:
        return None
    return Path(config.invocation_params.dir, text)


def _resolve(target: str, where: str) -> Any:
    from .resolve import resolve_target
    from .target import TargetError

    try:
        return resolve_target(target)
    except TargetError as exc:
        raise pytest.UsageError(f"Invalid lifecycle target from {where}: {exc}") from None


def _marker_settings(item: pytest.Item, settings: _Settings) -> _TestJobs:
    from .trace import Trace

    where = f"@pytest.mark.lifecycle on {item.nodeid}"
    try:
        deadline, properties, dispatcher, spec = _marker_values(item, settings, where)
        marked = item.get_closest_marker("lifecycle")
        if marked is None or marked.kwargs.get("target") is None:
            where = f"{settings.target_where} (for {item.nodeid})"
        target, dispatcher = _fixture_target(item.config, spec, dispatcher, where)
    except ValueError as exc:  # failed outside the handler: the message shows once
        message = str(exc)
    else:
        return _TestJobs(Trace(), deadline, properties, dispatcher, target)
    pytest.fail(message, pytrace=False)


_TARGETS = pytest.StashKey[dict[str, Any]]()


def _fixture_target(
    config: pytest.Config, spec: str, dispatcher: type[Dispatcher] | None, where: str
) -> tuple[Any, type[Dispatcher] | None]:
    """The target whose runtime runs a test's fixture jobs (``None``: the reference)
    and the reference's dispatcher; ``ValueError`` names what is wrong and the fix.

    A mutant is the reference on its dispatcher; any other target must be able to run
    a user's own job (an ``environment(name)`` method). Made once per session.
    """
    spec = spec.strip()
    if spec == "reference":
        return None, dispatcher
    if dispatcher is not None:
        raise ValueError(
            f"{where}: dispatcher= runs the job on the reference, but the target is "
            f"{spec!r}; drop one of them"
        )
    from .reference_target import ReferenceTarget
    from .resolve import resolve_target
    from .target import TargetError

    cache = config.stash.setdefault(_TARGETS, {})
    if spec not in cache:  # once per session; a failure is kept as its message
        try:
            cache[spec] = resolve_target(spec)()
        except (TargetError, ImportError) as exc:
            cache[spec] = str(exc)
    target = cache[spec]
    if isinstance(target, str):
        raise ValueError(f"{where}: {target}")
    if isinstance(target, ReferenceTarget):
        return None, target.dispatcher
    if not callable(getattr(target, "environment", None)):
        raise ValueError(
            f"{where}: target {spec!r} cannot run a test's own job: its adapter has no "
            "environment(name) method making a fresh environment of its runtime; use "
            "reference, sage, sage-flownet or sage-kernel, or add the method"
        )
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")
    if getattr(target, "one_process_at_a_time", False) and workers not in ("", "0", "1"):
        raise ValueError(
            f"{where}: target {spec!r} binds a fixed port, so two pytest-xdist workers "
            f"(-n {workers}) cannot run it at once; run these tests without -n"
        )
    return target, None


def _marker_values(
    item: pytest.Item, settings: _Settings, where: str
) -> tuple[float, tuple[str, ...], type[Dispatcher] | None, str]:
    """The marker's settings over the session's; ``ValueError`` names what is wrong."""
    from .contract import parse_properties
    from .reference import Dispatcher

    marker = item.get_closest_marker("lifecycle")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        raise ValueError(f"{where}: takes keyword arguments only, got {marker.args!r}")
    unknown = sorted(set(kwargs) - _MARKER_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unknown argument(s) {', '.join(unknown)}; expected "
            f"{', '.join(sorted(_MARKER_KEYS))}"
        )
    deadline = settings.deadline
    if kwargs.get("deadline") is not None:
        try:
            deadline = _parse_seconds(kwargs["deadline"], f"{where} (deadline=...)")
        except pytest.UsageError as exc:
            raise ValueError(str(exc)) from None
    properties = settings.properties
    if kwargs.get("properties") is not None:
        properties = parse_properties(kwargs["properties"], where=f"{where} (properties=...)")
    dispatcher = kwargs.get("dispatcher")
    if dispatcher is not None and not (
        isinstance(dispatcher, type) and issubclass(dispatcher, Dispatcher)
    ):
        raise ValueError(
            f"{where}: dispatcher={dispatcher!r} is not a subclass of "
            "sage_lifecycle.reference.Dispatcher"
        )
    spec = kwargs.get("target")
    if spec is None:
        spec = settings.target
    elif not isinstance(spec, str):
        raise ValueError(
            f"{where}: target={spec!r} is not a target name; expected for example target='sage'"
        )
    else:
        from .resolve import validate_target_spec
        from .target import TargetError

        try:
            validate_target_spec(spec)
        except TargetError as exc:
            raise ValueError(f"{where} (target=...): {exc}") from None
    return deadline, properties, dispatcher, spec


def _test_jobs(request: pytest.FixtureRequest) -> _TestJobs:
    item: pytest.Item = request.node
    state = item.stash.get(_TEST_JOBS, None)
    if state is None:
        state = _marker_settings(item, request.config.stash[_SETTINGS])
        state.expires = item.stash.get(_EXPIRES, None)
        item.stash[_TEST_JOBS] = state
    return state


@pytest.fixture
def lifecycle_trace(request: pytest.FixtureRequest) -> Trace:
    """The lifecycle trace of this test: every event of its ``lifecycle_env`` jobs.

    An append-only, thread-safe list of ``sage_lifecycle.Event`` with one global
    sequence number. Use it for custom assertions, or pass it as ``observer=`` to your
    own ``LocalEnvironment``; ``sage_lifecycle.assert_contract(trace)`` checks it.
    """
    return _test_jobs(request).trace


def _make_env(state: _TestJobs, name: str, **kwargs: Any) -> Any:
    # Numbered within the test, so a job's id never depends on which tests ran before.
    job = kwargs.setdefault("job", f"{name}#{len(state.jobs) + 1}")
    if "deadline" not in kwargs:
        # Half of what is left before pytest-timeout fires: the wait's own deadline
        # then ends a hang with the story, and the teardown still fits after it.
        fit = state.budget(state.deadline)
        if state.expires is not None:
            fit = min(fit, max(0.0, state.expires - time.monotonic()) / 2)
        if fit < state.deadline:
            state.notes.append(
                f"the lifecycle deadline of job {job} was cut from "
                f"{state.deadline:g} s to {fit:.3g} s to fit the test's pytest-timeout"
            )
        kwargs["deadline"] = max(fit, 0.001)
    handle: _Job
    if state.target is not None:
        from .observe import RuntimeJob

        deadline = kwargs.pop("deadline")
        kwargs.pop("job")
        handle = RuntimeJob(
            state.target,
            name=name,
            job=job,
            trace=state.trace,
            deadline=deadline,
            budget=state.budget,
            env_kwargs=kwargs,
        )
    else:
        from .reference import LocalEnvironment

        if state.dispatcher is not None:
            kwargs.setdefault("dispatcher_class", state.dispatcher)
        handle = _ReferenceJob(LocalEnvironment(name, observer=state.trace, **kwargs))
    state.jobs.append(handle)
    return handle.observed


@pytest.fixture
def lifecycle_env_factory(
    request: pytest.FixtureRequest,
) -> Generator[Callable[..., Any], None, None]:
    """Make jobs that are checked when the test ends.

    Call it as ``lifecycle_env_factory("name", **kwargs)``; every job shares
    ``lifecycle_trace``. On the reference (the default) each is a reference
    ``LocalEnvironment``; with a target (``@pytest.mark.lifecycle(target="sage")`` or
    ``--lifecycle-target``) it is that runtime's own environment, ``kwargs`` going to
    its constructor, with what the test registers and builds observed. After the test
    body, each job still running is stopped and the whole trace is checked against the
    lifecycle contract: a violation fails the test with the property, the witness
    events and the timeline.
    """
    state = _test_jobs(request)

    def make(name: str | None = None, **kwargs: Any) -> Any:
        return _make_env(state, name or request.node.name, **kwargs)

    yield make
    if not state.done:  # the call phase did not run: close the jobs it left running
        errors = _end_all(state)
        if errors:
            pytest.fail(_unwaited(errors), pytrace=False)


@pytest.fixture
def lifecycle_env(lifecycle_env_factory: Callable[..., Any]) -> Any:
    """A fresh job environment whose trace is checked at teardown.

    On the reference (the default) a reference ``LocalEnvironment``; with a target
    (``@pytest.mark.lifecycle(target="sage")``, ``--lifecycle-target=sage`` or its ini
    twin) that runtime's own environment (SAGE's ``LocalEnvironment``, FlowNet's, the
    legacy line's). Either has SAGE's API (``register_service``,
    ``from_batch(...).map(...).sink(...)``, ``submit(autostop=True)``, ``stop()``) and
    records every lifecycle event into ``lifecycle_trace``. After the test body the
    job is stopped if still running and the trace is checked against the whole
    contract (or the properties chosen with ``--lifecycle-properties`` /
    ``@pytest.mark.lifecycle(properties=...)``); a violation fails the test with a
    readable timeline.
    """
    return lifecycle_env_factory()


def _end_all(state: _TestJobs) -> list[BaseException]:
    from .reference import JobHangError

    state.done = True
    errors: list[BaseException] = []
    for job in state.jobs:
        try:
            job.end_if_running(state.budget(job.deadline))
        except JobHangError:
            pass  # the trace holds the deadline event: no-hang reports it with stacks
        except Exception as exc:
            errors.append(exc)
    return errors


def _interrupted(item: pytest.Item, state: _TestJobs, why: str) -> str:
    """The story so far of a test that Ctrl-C or its timeout ended: no wait, no blame.

    Only what is already wrong counts (the safety half of the contract); a wait still
    running is shown, not reported as a hang, since the test, not the job, ran out of time.
    """
    from ._stacks import format_thread_stacks
    from .contract import check
    from .report import format_report, format_timeline
    from .trace import EventKind

    state.done = True
    events = state.trace.events()
    violations = check(events, properties=state.properties, complete=False)
    ended = {e.get("begin") for e in events if e.kind is EventKind.WAIT_END}
    waiting = [e for e in events if e.kind is EventKind.WAIT_BEGIN and e.seq not in ended]
    threads = [t for job in state.jobs for t in job.threads()]
    lines = [f"{why}; the lifecycle story so far:"]
    lines += [
        f"  {e.subject}() of job {e.job!r} was still waiting (event #{e.seq})" for e in waiting
    ]
    lines.append(
        format_report(violations, events)
        if violations
        else "no contract violation so far\ntimeline:\n" + format_timeline(events)
    )
    lines += [*state.notes, "stacks of the job's threads:", format_thread_stacks(threads)]
    for job in state.jobs:  # best effort, bounded: let the job's threads go
        job.release_now(_RELEASE_NOW / max(1, len(state.jobs)))
    item.config.stash[_STATS].tests += 1
    item.config.stash[_STATS].jobs += len(state.jobs)
    item.config.stash[_STATS].properties.update(state.properties)
    return "\n".join(lines)


def _unended(item: pytest.Item, state: _TestJobs) -> list[str]:
    """Jobs the test built but never submitted, or submitted and never ended.

    Either way the verdict would not be about what the test meant: a job never
    submitted was never checked, and what a job left running did depends on when
    teardown happened to stop it. So both fail the test, every time (a job left running
    is still stopped at teardown and judged on that stop).
    """
    return [problem for job in state.jobs if (problem := job.problem()) is not None]


def _finish(
    item: pytest.Item, state: _TestJobs, body_failed: bool = False
) -> tuple[list[Violation], str]:
    from .contract import by_property, check
    from .report import format_report

    unended = [] if body_failed else _unended(item, state)
    errors = _end_all(state)
    for job in state.jobs:  # a wait that returned early: let the trace show the rest
        job.settle(state.budget(state.deadline) / 2)
    events = state.trace.events()
    violations = check(events, properties=state.properties)
    # Only now, with the verdict taken, let a misbehaving job end so no thread outlives
    # the test; what this records comes after the trace that was checked.
    grace = state.budget(state.deadline)
    stuck = [name for job in state.jobs for name in job.release(grace)]
    item.ihook.pytest_lifecycle_checked(item=item, events=events, violations=violations)
    stats = item.config.stash[_STATS]
    stats.tests += 1
    stats.jobs += len(state.jobs)
    stats.properties.update(state.properties)
    stats.unended += len(unended)
    stats.by_property.update(by_property(violations))
    text = format_report(violations, events) if violations else ""
    if errors:
        text += ("\n\n" if text else "") + _unwaited(errors)
    if stuck:
        text += ("\n\n" if text else "") + (
            f"threads still alive {grace:.3g} s after the test: {', '.join(stuck)}"
        )
    if unended:
        text += ("\n\n" if text else "") + "\n".join(unended)
    if text and state.notes:
        text += "\n\n" + "\n".join(state.notes)
    return violations, text


def _unwaited(errors: Sequence[BaseException]) -> str:
    lines = [f"  {type(e).__name__}: {e}" for e in errors]
    return "jobs ended with failures the test never waited for (closed at teardown):\n" + (
        "\n".join(lines)
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        result = yield
    except BaseException as exc:
        state = item.stash.get(_TEST_JOBS, None)
        if state is not None and not state.done:
            why = _why_interrupted(item, state, exc)
            if why is not None:
                text = _interrupted(item, state, why)
            else:
                _, text = _finish(item, state, body_failed=True)
            reporter = item.config.pluginmanager.get_plugin("terminalreporter")
            if isinstance(exc, KeyboardInterrupt) and reporter is not None:
                # pytest reports no test on Ctrl-C: the story goes straight to the terminal
                capman = item.config.pluginmanager.get_plugin("capturemanager")
                with capman.global_and_fixture_disabled() if capman else nullcontext():
                    reporter.write_sep("!", f"lifecycle: {item.nodeid}")
                    reporter.write_line(text)
            elif text:
                item.add_report_section("call", "lifecycle", text)
        raise
    state = item.stash.get(_TEST_JOBS, None)
    if state is not None and not state.done:
        _, text = _finish(item, state)
        if text:
            pytest.fail(text, pytrace=False)
    return result


def _why_interrupted(item: pytest.Item, state: _TestJobs, exc: BaseException) -> str | None:
    """Whether Ctrl-C or pytest-timeout ended the test (then teardown must be quick)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    if state.expires is not None and time.monotonic() >= state.expires - 0.05:
        return f"{item.nodeid} ran out of its pytest-timeout"
    return None


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout is the outer bound: fit the lifecycle deadlines inside it.

    With the ``signal`` method pytest-timeout's own timer fails the test in the main
    thread, and ``pytest_runtest_call`` adds the lifecycle story. The ``thread`` method
    ends the process from a timer thread: this timer tells the story first, then hands
    over to pytest-timeout's (which dumps every thread's stack and exits).
    """
    timeout = float(settings.timeout)
    item.stash[_EXPIRES] = time.monotonic() + timeout
    item.stash[_TIMEOUT] = timeout
    signal_ok = threading.current_thread() is threading.main_thread()
    if settings.method == "signal" and signal_ok:
        return None
    import pytest_timeout  # type: ignore[import-untyped]

    def expire() -> None:
        if not pytest_timeout.is_debugging():
            state = item.stash.get(_TEST_JOBS, None)
            from ._conformance import PLUGIN_NAME

            conformance = item.config.pluginmanager.get_plugin(PLUGIN_NAME)
            story = ""
            if state is not None and not state.done:
                why = f"Timeout: {item.nodeid} ran out of its pytest-timeout of {timeout:g} s"
                story = _interrupted(item, state, why)
            elif conformance is not None:
                story = conformance.timeout_story()
            if story:
                writer = item.config.get_terminal_writer()
                writer.sep("+", title="lifecycle")
                writer.line(story)
                writer.flush()
        pytest_timeout.timeout_timer(item, settings)

    timer = threading.Timer(timeout, expire)
    timer.name = f"sage_lifecycle timeout {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        if timer is not threading.current_thread():
            timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook
    timer.start()
    return True


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    settings = config.stash.get(_SETTINGS, None)
    stats = config.stash.get(_STATS, None)
    if settings is None or stats is None or stats.tests == 0:
        return
    if stats.by_property:
        found = ", ".join(f"{p}: {n}" for p, n in stats.by_property.items())
        verdict = f"violations found ({found})"
    else:
        verdict = "no violations in their traces"
    if stats.unended:
        verdict += f"; {_plural(stats.unended, 'job')} never submitted or never ended"
    terminalreporter.write_line(
        f"lifecycle: {_plural(stats.tests, 'test')} with {_plural(stats.jobs, 'job')} checked "
        f"against {_plural(len(stats.properties), 'property', 'properties')}: {verdict}"
    )


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"
