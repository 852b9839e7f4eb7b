"""The pytest plugin: options, ini values, the marker, fixtures and the summary.

Thin by design: it imports the reference runtime and the checkers only inside the
fixtures and hooks that use them, so loading it costs tests that do not use it nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .contract import Violation
    from .reference import Dispatcher, LocalEnvironment
    from .trace import Trace

_DEADLINE_HELP = (
    "deadline in seconds for each wait of a lifecycle_env job (submit, stop, close); "
    "past it the test fails with no-hang and the job's thread stacks (default: 30)"
)
_PROPERTIES_HELP = (
    "comma-separated contract properties checked at the end of each lifecycle test, "
    "or 'all' (default: all)"
)
_MARKER = (
    "lifecycle(*, deadline=None, properties=None, dispatcher=None): run this test's "
    "lifecycle_env jobs with this deadline in seconds, check only these contract "
    "properties, and run them on this Dispatcher subclass"
)
_MARKER_KEYS = frozenset({"deadline", "properties", "dispatcher"})


@dataclass
class _Settings:
    deadline: float
    properties: tuple[str, ...]


@dataclass
class _Stats:
    tests: int = 0
    jobs: int = 0
    by_property: dict[str, int] = field(default_factory=dict)


@dataclass
class _Session:
    """What one test's lifecycle fixtures made: the trace and the jobs to close and check."""

    trace: Trace
    deadline: float
    properties: tuple[str, ...]
    dispatcher: type[Dispatcher] | None
    envs: list[LocalEnvironment] = field(default_factory=list)
    done: bool = False


_SETTINGS = pytest.StashKey[_Settings]()
_STATS = pytest.StashKey[_Stats]()
_SESSION = pytest.StashKey[_Session]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lifecycle", "service and job lifecycle contract (sage_lifecycle)")
    group.addoption(
        "--lifecycle-deadline",
        dest="lifecycle_deadline",
        metavar="SECONDS",
        default=None,
        help=_DEADLINE_HELP,
    )
    group.addoption(
        "--lifecycle-properties",
        dest="lifecycle_properties",
        metavar="IDS",
        default=None,
        help=_PROPERTIES_HELP,
    )
    parser.addini("lifecycle_deadline", _DEADLINE_HELP, default="30")
    parser.addini("lifecycle_properties", _PROPERTIES_HELP, default="all")


def _parse_deadline(value: object, where: str) -> float:
    try:
        deadline = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        deadline = math.nan
    if not math.isfinite(deadline) or deadline <= 0:
        raise pytest.UsageError(
            f"Invalid lifecycle deadline {value!r} from {where}: expected a positive number "
            "of seconds, for example --lifecycle-deadline=30"
        )
    return deadline


def _option(config: pytest.Config, name: str) -> tuple[object, str]:
    value = config.getoption(name)
    if value is not None:
        return value, f"--{name.replace('_', '-')}"
    return config.getini(name), f"the {name} ini value"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)
    deadline = _parse_deadline(*_option(config, "lifecycle_deadline"))
    raw, where = _option(config, "lifecycle_properties")
    from .contract import parse_properties

    try:
        properties = parse_properties(str(raw), where=where)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_SETTINGS] = _Settings(deadline, properties)
    config.stash[_STATS] = _Stats()


def _marker_settings(item: pytest.Item, settings: _Settings) -> _Session:
    from .contract import parse_properties
    from .reference import Dispatcher
    from .trace import Trace

    marker = item.get_closest_marker("lifecycle")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    where = f"@pytest.mark.lifecycle on {item.nodeid}"
    if marker is not None and marker.args:
        pytest.fail(f"{where}: takes keyword arguments only, got {marker.args!r}", pytrace=False)
    unknown = sorted(set(kwargs) - _MARKER_KEYS)
    if unknown:
        pytest.fail(
            f"{where}: unknown argument(s) {', '.join(unknown)}; expected "
            f"{', '.join(sorted(_MARKER_KEYS))}",
            pytrace=False,
        )
    deadline = settings.deadline
    if kwargs.get("deadline") is not None:
        try:
            deadline = _parse_deadline(kwargs["deadline"], f"{where} (deadline=...)")
        except pytest.UsageError as exc:
            pytest.fail(str(exc), pytrace=False)
    properties = settings.properties
    if kwargs.get("properties") is not None:
        try:
            properties = parse_properties(kwargs["properties"], where=f"{where} (properties=...)")
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
    dispatcher = kwargs.get("dispatcher")
    if dispatcher is not None and not (
        isinstance(dispatcher, type) and issubclass(dispatcher, Dispatcher)
    ):
        pytest.fail(
            f"{where}: dispatcher={dispatcher!r} is not a subclass of "
            "sage_lifecycle.reference.Dispatcher",
            pytrace=False,
        )
    return _Session(Trace(), deadline, properties, dispatcher)


def _session(request: pytest.FixtureRequest) -> _Session:
    item: pytest.Item = request.node
    session = item.stash.get(_SESSION, None)
    if session is None:
        session = _marker_settings(item, request.config.stash[_SETTINGS])
        item.stash[_SESSION] = session
    return session


@pytest.fixture
def lifecycle_trace(request: pytest.FixtureRequest) -> Trace:
    """The lifecycle trace of this test: every event of its ``lifecycle_env`` jobs.

    An append-only, thread-safe list of ``sage_lifecycle.Event`` with one global
    sequence number. Use it for custom assertions, or pass it as ``observer=`` to your
    own ``LocalEnvironment``; ``sage_lifecycle.assert_contract(trace)`` checks it.
    """
    return _session(request).trace


def _make_env(session: _Session, name: str, **kwargs: Any) -> LocalEnvironment:
    from .reference import LocalEnvironment

    kwargs.setdefault("deadline", session.deadline)
    if session.dispatcher is not None:
        kwargs.setdefault("dispatcher_class", session.dispatcher)
    env = LocalEnvironment(name, observer=session.trace, **kwargs)
    session.envs.append(env)
    return env


@pytest.fixture
def lifecycle_env_factory(
    request: pytest.FixtureRequest,
) -> Generator[Callable[..., LocalEnvironment], None, None]:
    """Make reference ``LocalEnvironment`` jobs that are checked when the test ends.

    Call it as ``lifecycle_env_factory("name", **kwargs)``; every job shares
    ``lifecycle_trace``. After the test body, each job still running is stopped and
    the whole trace is checked against the lifecycle contract: a violation fails the
    test with the property, the witness events and the timeline.
    """
    session = _session(request)

    def make(name: str | None = None, **kwargs: Any) -> LocalEnvironment:
        return _make_env(session, name or request.node.name, **kwargs)

    yield make
    if not session.done:  # the call phase did not run: close the jobs it left running
        errors = _close_all(session)
        if errors:
            pytest.fail(_unwaited(errors), pytrace=False)


@pytest.fixture
def lifecycle_env(
    lifecycle_env_factory: Callable[..., LocalEnvironment],
) -> LocalEnvironment:
    """A fresh reference ``LocalEnvironment`` whose trace is checked at teardown.

    It has SAGE's API (``register_service``, ``from_batch(...).map(...).sink(...)``,
    ``submit(autostop=True)``) and records every lifecycle event into
    ``lifecycle_trace``. After the test body the job is stopped if still running and
    the trace is checked against the whole contract (or the properties chosen with
    ``--lifecycle-properties`` / ``@pytest.mark.lifecycle(properties=...)``); a
    violation fails the test with a readable timeline.
    """
    return lifecycle_env_factory()


def _close_all(session: _Session) -> list[BaseException]:
    from .reference import JobHangError

    session.done = True
    errors: list[BaseException] = []
    for env in session.envs:
        try:
            env.close()
        except JobHangError:
            pass  # the trace holds the deadline event: no-hang reports it with stacks
        except Exception as exc:
            errors.append(exc)
    return errors


def _finish(item: pytest.Item, session: _Session) -> tuple[list[Violation], str]:
    from .contract import check
    from .report import format_report

    errors = _close_all(session)
    for env in session.envs:  # a wait that returned early: let the trace show the rest
        if env.dispatcher is not None:
            env.dispatcher.settle(session.deadline)
    events = session.trace.events()
    violations = check(events, properties=session.properties)
    # Only now, with the verdict taken, let a misbehaving job end so no thread outlives
    # the test; what this records comes after the trace that was checked.
    stuck = [
        t.name
        for env in session.envs
        if env.dispatcher is not None
        for t in env.dispatcher.release(session.deadline)
    ]
    item.ihook.pytest_lifecycle_checked(item=item, events=events, violations=violations)
    stats = item.config.stash[_STATS]
    stats.tests += 1
    stats.jobs += len(session.envs)
    for v in violations:
        stats.by_property[v.property] = stats.by_property.get(v.property, 0) + 1
    text = format_report(violations, events) if violations else ""
    if errors:
        text += ("\n\n" if text else "") + _unwaited(errors)
    if stuck:
        text += ("\n\n" if text else "") + (
            f"threads still alive {session.deadline} s after the test: {', '.join(stuck)}"
        )
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
    except BaseException:
        session = item.stash.get(_SESSION, None)
        if session is not None and not session.done:
            _, text = _finish(item, session)
            if text:
                item.add_report_section("call", "lifecycle", text)
        raise
    session = item.stash.get(_SESSION, None)
    if session is not None and not session.done:
        _, text = _finish(item, session)
        if text:
            pytest.fail(text, pytrace=False)
    return result


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    stats = config.stash.get(_STATS, None)
    if stats is None or stats.tests == 0:
        return
    settings = config.stash[_SETTINGS]
    if stats.by_property:
        found = ", ".join(f"{p}: {n}" for p, n in stats.by_property.items())
        verdict = f"violations found ({found})"
    else:
        verdict = "contract held"
    terminalreporter.write_line(
        f"lifecycle: {stats.tests} tests, {stats.jobs} jobs checked against "
        f"{len(settings.properties)} properties: {verdict}"
    )
