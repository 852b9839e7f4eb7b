"""The ``sage`` target: the real SAGE runtime (PyPI ``isage-kernel``) as a black box.

It builds every topology with SAGE's public API only: ``LocalEnvironment``,
``register_service``, ``from_batch``/``map``/``filter``/``sink`` and
``submit(autostop=True)``, with services derived from SAGE's ``BaseService`` and
functions from SAGE's ``BatchFunction``, ``MapFunction``, ``FilterFunction`` and
``SinkFunction``; services are reached with ``self.call_service(name, ..., method=...)``.
Nothing of SAGE is patched: the harness sees SAGE only through the probes it hands it.

What SAGE needs inside a test session:

- its ``JobManager`` is a process-wide singleton that installs signal handlers, so it
  is created here, on the main thread, when the target is built (the wait itself runs
  on a harness thread);
- it writes logs under ``SAGE_PROJECT_ROOT`` (default: the home directory): unless the
  caller set it, the target points it at a temporary directory, and turns SAGE's console
  logging down to warnings (``SAGE_LOG_LEVEL``);
- its wait polls every second, so give ``--lifecycle-deadline`` room: the default 30 s
  is generous; a slow target never produces a false alarm, only a longer run.

Select it with ``--lifecycle-target=sage`` (registered as an entry point).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from typing import Any

from .probes import Probes
from .target import _service_class, _sink_class, _source_class, _stage_class

__all__ = ["SageTarget", "SageUnavailable"]

INSTALL_HINT = "pip install 'pytest-sage-lifecycle[sage]'  (installs isage-kernel)"


class SageUnavailable(ImportError):
    """SAGE (``isage-kernel``) is not installed."""


def _import_sage() -> dict[str, Any]:
    try:
        from sage.common.core.functions.batch_function import BatchFunction
        from sage.common.core.functions.filter_function import FilterFunction
        from sage.common.core.functions.map_function import MapFunction
        from sage.common.core.functions.sink_function import SinkFunction
        from sage.kernel.api.local_environment import LocalEnvironment
        from sage.kernel.api.service.base_service import BaseService
    except ImportError as exc:
        raise SageUnavailable(
            f"the 'sage' lifecycle target needs SAGE, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return {
        "LocalEnvironment": LocalEnvironment,
        "BaseService": BaseService,
        "BatchFunction": BatchFunction,
        "MapFunction": MapFunction,
        "FilterFunction": FilterFunction,
        "SinkFunction": SinkFunction,
    }


_classes: dict[str, type[Any]] = {}
_env_lock = threading.Lock()


def _prepare_process() -> None:
    """Redirect SAGE's logs and quiet its console, once, unless the caller chose."""
    with _env_lock:
        if "SAGE_PROJECT_ROOT" not in os.environ:
            root = tempfile.mkdtemp(prefix="sage-lifecycle-logs-")
            os.environ["SAGE_PROJECT_ROOT"] = root
            # SAGE writes tens of megabytes of logs per run: gone when the process ends.
            atexit.register(shutil.rmtree, root, ignore_errors=True)
        os.environ.setdefault("SAGE_LOG_LEVEL", "WARNING")


class SageTarget:
    """SAGE's ``LocalEnvironment`` as a lifecycle target."""

    name = "sage"
    #: SAGE keeps its JobManager's server thread for the whole process, on purpose.
    thread_allowlist: tuple[str, ...] = ("JobManagerServerThread",)
    #: SAGE polls its tasks; threads it started may take a moment to notice the end.
    grace = 2.0
    #: SAGE's threads poll with pauses of up to a second: quiet means quiet for longer.
    hold = 0.3

    def __init__(self) -> None:
        sage = _import_sage()
        _prepare_process()
        if not _classes:
            _classes.update(
                service=_service_class(sage["BaseService"]),
                source=_source_class(sage["BatchFunction"]),
                map=_stage_class(sage["MapFunction"]),
                filter=_stage_class(sage["FilterFunction"]),
                sink=_sink_class(sage["SinkFunction"]),
            )
        self._LocalEnvironment = sage["LocalEnvironment"]
        self.env: Any = None

    def build(self, probes: Probes) -> None:
        env = self._LocalEnvironment(f"lifecycle_{probes.job.replace('#', '_')}")
        # The JobManager singleton installs signal handlers: create it here, on the
        # thread that builds the job (the main thread), before wait() runs elsewhere.
        if threading.current_thread() is threading.main_thread():
            _ = env.jobmanager
        for name, service in probes.services.items():
            env.register_service(name, _classes["service"], service)
        for i, source in enumerate(probes.sources):
            stream = env.from_batch(_classes["source"], source)
            for stage in probes.stages[i]:
                kind = stage.spec.kind
                add = stream.map if kind == "map" else stream.filter
                stream = add(_classes[kind], stage, parallelism=stage.spec.parallelism)
            for sink in probes.sinks[i]:
                stream.sink(_classes["sink"], sink, parallelism=sink.spec.parallelism)
        self.env = env

    def wait(self) -> None:
        self.env.submit(autostop=True)

    def release(self) -> None:
        if self.env is not None and getattr(self.env, "env_uuid", None):
            try:
                self.env.close()
            except Exception as exc:
                import warnings

                warnings.warn(
                    f"SAGE's env.close() failed while releasing the job: "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
