"""The SAGE targets: the real SAGE runtime lines as black boxes.

Three targets, one per way SAGE runs a job today, each registered as an entry point:

- ``sage``: the current line (PyPI ``isage`` >= 0.3, ``sage.runtime.LocalEnvironment``,
  function base classes in ``sage.foundation.core``);
- ``sage-flownet``: the same line's ``FlowNetEnvironment``, in its default in-process mode;
- ``sage-kernel``: the legacy line (PyPI ``isage-kernel`` 0.2.5.3, frozen,
  ``sage.kernel.api.local_environment.LocalEnvironment``), batch jobs only.

Each builds every topology with SAGE's public API only: ``register_service``,
``from_batch``/``map``/``filter``/``sink`` and ``submit(autostop=True)`` (the current
line's streaming jobs: ``from_source``, ``submit(autostop=False)``, then ``stop()`` or
``close()``), with services
derived from SAGE's ``BaseService`` and functions from its ``BatchFunction``,
``MapFunction``, ``FilterFunction`` and ``SinkFunction``; services are reached with
``self.call_service(name, ..., method=...)``. Nothing of SAGE is patched: the harness sees
SAGE only through the probes it hands it.

What SAGE needs inside a test session, kept here, in one place per line:

- SAGE's console output goes to a log file, not the terminal: in conformance mode what
  it printed during a search is moved out of the report, which keeps its last lines;
  SAGE 0.3's loggers, which write to the terminal themselves, are routed to that file.
  The legacy line also writes log files of its own under ``SAGE_PROJECT_ROOT``: unless
  the caller set it, it points at a temporary directory removed when the process ends;
- the legacy ``JobManager`` is a process-wide singleton that installs signal handlers and
  binds a fixed TCP port, so it is created on the main thread, when the target is built
  (the wait itself runs on a harness thread); never run two legacy SAGE processes at once;
- the legacy wait polls every second, so give ``--lifecycle-deadline`` room: the default
  30 s is generous; a slow target never produces a false alarm, only a longer run.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from typing import Any

from . import _console
from .probes import Probes
from .sage_api import ProbeClasses, build_job

__all__ = [
    "INSTALL_HINTS",
    "SageFlowNetTarget",
    "SageKernelTarget",
    "SageTarget",
    "SageUnavailable",
]

INSTALL_HINTS = {
    "sage": "pip install 'pytest-sage-lifecycle[sage]'  (installs isage, SAGE >= 0.3)",
    "sage-flownet": "pip install 'pytest-sage-lifecycle[sage]'  (installs isage, SAGE >= 0.3)",
    "sage-kernel": "pip install 'pytest-sage-lifecycle[sage-kernel]'  (installs isage-kernel)",
}


def _distribution_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"{name} (version unknown)"


class SageUnavailable(ImportError):
    """The SAGE line a target drives is not installed."""


def _unavailable(target: str, exc: ImportError) -> SageUnavailable:
    return SageUnavailable(
        f"the {target!r} lifecycle target needs SAGE, which is not installed ({exc}); "
        f"install it with: {INSTALL_HINTS[target]}"
    )


# -- SAGE's logs: the console log file, never the terminal ------------------------------
_process_lock = threading.RLock()
_handler: list[logging.Handler] = []


def _file_handler() -> logging.Handler:
    with _process_lock:
        if not _handler:
            handler = logging.FileHandler(_console.log_file(), encoding="utf-8", delay=True)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
            )
            _handler.append(handler)
        return _handler[0]


def _route_logger(name: str) -> None:
    """Send logger ``name`` to SAGE's log file instead of the terminal.

    SAGE 0.3's ``CustomLogger`` gives each named logger its own console handler unless
    the logger already has a handler, and turns propagation off. A logger routed here
    before SAGE first names it keeps the file handler only; one SAGE already set up has
    its console handlers swapped for the file.
    """
    logger = logging.getLogger(name)
    handler = _file_handler()
    for existing in list(logger.handlers):
        if type(existing) is logging.StreamHandler:
            logger.removeHandler(existing)
    if handler not in logger.handlers:
        logger.addHandler(handler)
    logger.propagate = False


def _route_current_sage_loggers() -> None:
    """Route every logger SAGE 0.3 set up with a console handler of its own."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or logger.propagate:
            continue
        if any(type(h) is logging.StreamHandler for h in logger.handlers):
            _route_logger(name)


# -- the current line: isage >= 0.3 ------------------------------------------------------
def _import_current(target: str) -> dict[str, Any]:
    try:
        from sage.foundation.core import (
            BatchFunction,
            FilterFunction,
            MapFunction,
            SinkFunction,
            SourceFunction,
        )
        from sage.runtime import BaseService, FlowNetEnvironment, LocalEnvironment, StopSignal
    except ImportError as exc:
        raise _unavailable(target, exc) from None
    return _by_name(
        LocalEnvironment,
        FlowNetEnvironment,
        BaseService,
        BatchFunction,
        MapFunction,
        FilterFunction,
        SinkFunction,
        SourceFunction,
        StopSignal,
    )


def _by_name(*classes: type[Any]) -> dict[str, Any]:
    """SAGE's classes by their names: the same keys for both lines."""
    return {cls.__name__: cls for cls in classes}


def _import_kernel(target: str) -> dict[str, Any]:
    # Its first import warns (an ImportWarning about optional LLM components it does not
    # need here), which a suite running with -W error would turn into a failure.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        return _import_kernel_classes(target)


def _import_kernel_classes(target: str) -> dict[str, Any]:
    try:
        from sage.common.core.functions.batch_function import BatchFunction
        from sage.common.core.functions.filter_function import FilterFunction
        from sage.common.core.functions.map_function import MapFunction
        from sage.common.core.functions.sink_function import SinkFunction
        from sage.kernel.api.local_environment import LocalEnvironment
        from sage.kernel.api.service.base_service import BaseService
    except ImportError as exc:
        raise _unavailable(target, exc) from None
    return _by_name(
        LocalEnvironment, BaseService, BatchFunction, MapFunction, FilterFunction, SinkFunction
    )


_adapter_classes: dict[str, ProbeClasses] = {}


def _adapters(line: str, sage: dict[str, Any]) -> ProbeClasses:
    """The probe adapter classes on one SAGE line's base classes, made once per process."""
    with _process_lock:
        if line not in _adapter_classes:
            streaming = "SourceFunction" in sage
            _adapter_classes[line] = ProbeClasses.on(
                service=sage["BaseService"],
                batch_source=sage["BatchFunction"],
                map=sage["MapFunction"],
                filter=sage["FilterFunction"],
                sink=sage["SinkFunction"],
                stream_source=sage["SourceFunction"] if streaming else None,
                stop_signal=(lambda name: sage["StopSignal"](name)) if streaming else None,
            )
        return _adapter_classes[line]


def _env_name(probes: Probes) -> str:
    return f"lifecycle_{probes.job.replace('#', '_').replace(':', '_')}"


class SageTarget:
    """SAGE's current ``LocalEnvironment`` (``isage`` >= 0.3) as a lifecycle target.

    A batch job runs to its end inside ``submit(autostop=True)``, on the caller's thread.
    SAGE compiles a plain chain (one source, then maps, filters and sinks) to its actor
    path and anything else (several pipelines) to its general graph path; the topologies
    reach both.
    """

    name = "sage"
    #: The distribution whose version reports name (``Target.version``).
    _distribution = "isage"
    #: Batch jobs end in ``submit(autostop=True)``; streaming jobs start with
    #: ``submit(autostop=False)`` and end in ``stop()`` or ``close()``.
    modes: tuple[str, ...] = ("batch", "streaming")
    #: SAGE 0.3's in-process backend keeps one thread pool for the whole process, on
    #: purpose (``get_local_runtime_backend()``: created once, never stopped). A job's
    #: own service pool (``sage_local_service``) is not listed: SAGE shuts it down when
    #: the job ends.
    thread_allowlist: tuple[str, ...] = ("sage_local_runtime",)

    @property
    def version(self) -> str:
        """The SAGE line and version under test, for reports: ``isage 0.3.2.4``."""
        return _distribution_version(self._distribution)

    #: SAGE 0.3 constructs a service when a task first calls it, not when the job starts.
    services_on_demand = True
    #: Threads SAGE started may take a moment to notice the end.
    grace = 1.0
    #: SAGE 0.3 waits with 10 ms sleep loops: quiet means quiet for a little longer.
    hold = 0.1
    _environment = "LocalEnvironment"

    def __init__(self) -> None:
        sage = _import_current(self.name)
        self._classes = _adapters("current", sage)
        self._Environment: Callable[..., Any] = sage[self._environment]
        #: The runtime's service base class: its methods are SAGE's, not the user's.
        self.service_bases: tuple[type[Any], ...] = (sage["BaseService"],)
        self.env: Any = None

    def environment(self, name: str, **kwargs: Any) -> Any:
        """A fresh SAGE environment named ``name`` (``kwargs`` go to its constructor),
        its logger routed to the log file before it first logs: the conformance jobs'
        and the fixtures' one way to make one."""
        _route_logger("sage")
        return self._Environment(name, **kwargs)

    def build(self, probes: Probes) -> None:
        env = self.environment(_env_name(probes))
        build_job(env, probes, self._classes)
        self.route_logs(env)
        self.env = env

    def route_logs(self, env: Any) -> None:
        """Route to the log file the loggers SAGE made while building ``env``, and the
        ones it names for the job's stages and services when it runs them, before they
        print (call it before the job runs, and again after each call into SAGE)."""
        for name in self._logger_names(env):
            _route_logger(name)
        _route_current_sage_loggers()

    @staticmethod
    def _logger_names(env: Any) -> list[str]:
        services = list(getattr(env, "service_factories", {}) or {})
        names = ["sage", "JobManager", env.name, *services]
        for transformation in env.pipeline:
            basename = getattr(transformation, "basename", None)
            if basename:
                names.append(basename)
                parallelism = int(getattr(transformation, "parallelism", 1) or 1)
                names += [f"{basename}_r{k}" for k in range(parallelism)]
        names += [
            f"{wrapper}{suffix}"
            for wrapper in (
                "SourceActorWrapper",
                "MapActorWrapper",
                "FilterActorWrapper",
                "SinkActorWrapper",
            )
            for suffix in ("", *(f"_r{k}" for k in range(4)))
        ]
        return names

    def wait(self) -> None:
        try:
            self.env.submit(autostop=True)
        finally:
            _route_current_sage_loggers()

    def start(self) -> None:
        try:
            self.env.submit(autostop=False)
        finally:
            _route_current_sage_loggers()

    def stop(self) -> None:
        self.env.stop()

    def close(self) -> None:
        self.env.close()

    def release(self) -> None:
        if self.env is not None:
            self.release_environment(self.env)

    def release_environment(self, env: Any) -> None:
        """Free what SAGE holds for ``env``, best effort, even after a hang."""
        try:
            if self._environment == "FlowNetEnvironment" or getattr(env, "env_uuid", None):
                env.close()
        except Exception as exc:
            warnings.warn(
                f"SAGE's env.close() failed while releasing the job: {type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
        finally:
            _route_current_sage_loggers()


class SageFlowNetTarget(SageTarget):
    """SAGE's current ``FlowNetEnvironment`` (``isage`` >= 0.3), in-process, as a target."""

    name = "sage-flownet"
    _environment = "FlowNetEnvironment"
    #: FlowNet's runtime is one per process (``get_flownet_adapter()``), and so are its
    #: pools, on purpose: its event-loop threads and executor lanes (``flownet-v1-*``)
    #: and its async-call executor (``sage_flownet_async``). A job's own service pool
    #: (``sage_local_service``) is not listed.
    thread_allowlist: tuple[str, ...] = ("flownet-v1-", "sage_flownet_async")


# -- the legacy line: isage-kernel 0.2.5.3 -----------------------------------------------
def _prepare_kernel_process() -> None:
    """Point the legacy line's log files at a temporary directory and quiet its console,
    once, unless the caller chose."""
    with _process_lock:
        if "SAGE_PROJECT_ROOT" not in os.environ:
            root = tempfile.mkdtemp(prefix="sage-lifecycle-logs-")
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            os.environ["SAGE_PROJECT_ROOT"] = root
        os.environ.setdefault("SAGE_LOG_LEVEL", "WARNING")


class SageKernelTarget:
    """The legacy SAGE line's ``LocalEnvironment`` (``isage-kernel`` 0.2.5.3) as a target."""

    name = "sage-kernel"

    @property
    def version(self) -> str:
        """The SAGE line and version under test, for reports: ``isage-kernel 0.2.5.3``."""
        return _distribution_version("isage-kernel")

    #: SAGE keeps its JobManager's server thread for the whole process, on purpose.
    thread_allowlist: tuple[str, ...] = ("JobManagerServerThread",)
    #: SAGE polls its tasks; threads it started may take a moment to notice the end.
    grace = 2.0
    #: SAGE's threads poll with pauses of up to a second: quiet means quiet for longer.
    hold = 0.3
    #: Its JobManager binds a fixed TCP port: never two processes at once (no xdist).
    one_process_at_a_time = True

    def __init__(self) -> None:
        sage = _import_kernel(self.name)
        _prepare_kernel_process()
        self._classes = _adapters("kernel", sage)
        self._LocalEnvironment = sage["LocalEnvironment"]
        #: The runtime's service base class: its methods are SAGE's, not the user's.
        self.service_bases: tuple[type[Any], ...] = (sage["BaseService"],)
        self.env: Any = None

    def environment(self, name: str, **kwargs: Any) -> Any:
        """A fresh legacy ``LocalEnvironment`` named ``name``: the conformance jobs' and
        the fixtures' one way to make one. The JobManager singleton installs signal
        handlers: it is created here, on the thread that builds the job (the main
        thread), before any wait runs elsewhere."""
        env = self._LocalEnvironment(name, **kwargs)
        if threading.current_thread() is threading.main_thread():
            _ = env.jobmanager
        return env

    def build(self, probes: Probes) -> None:
        env = self.environment(_env_name(probes))
        build_job(env, probes, self._classes)
        self.env = env

    def wait(self) -> None:
        self.env.submit(autostop=True)

    def release(self) -> None:
        if self.env is not None:
            self.release_environment(self.env)

    def release_environment(self, env: Any) -> None:
        """Free what SAGE holds for ``env``, best effort, even after a hang."""
        if getattr(env, "env_uuid", None):
            try:
                env.close()
            except Exception as exc:
                warnings.warn(
                    f"SAGE's env.close() failed while releasing the job: "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
