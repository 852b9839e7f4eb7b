"""The one builder for runtimes that speak SAGE's API: the reference and both SAGE lines.

A target whose runtime has SAGE's user-facing API (``register_service``,
``from_batch``/``from_source``, ``map``/``filter``/``sink`` with ``parallelism=``, and
``self.call_service(name, ..., method=...)`` inside functions) needs no builder of its
own: make the probe classes once on the runtime's base classes, then build each job with
them::

    classes = ProbeClasses.on(
        service=BaseService, batch_source=BatchFunction, map=MapFunction,
        filter=FilterFunction, sink=SinkFunction,
        stream_source=SourceFunction, stop_signal=StopSignal,  # streaming only
    )

    def build(self, probes):
        self.env = LocalEnvironment("job")
        build_job(self.env, probes, classes)

The probe classes derive from the runtime's own base classes and hand every call to the
harness's probes, which record it and park it at its gate; nothing of the runtime is
patched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .probes import Probes

__all__ = ["ProbeClasses", "build_job"]


@dataclass(frozen=True)
class ProbeClasses:
    """The probe adapter classes on one runtime's base classes (make them once)."""

    service: type[Any]
    batch_source: type[Any]
    map: type[Any]
    filter: type[Any]
    sink: type[Any]
    #: ``None`` for a runtime without streaming sources.
    stream_source: type[Any] | None = None

    @classmethod
    def on(
        cls,
        *,
        service: type[Any],
        batch_source: type[Any],
        map: type[Any],
        filter: type[Any],
        sink: type[Any],
        stream_source: type[Any] | None = None,
        stop_signal: Callable[[str], Any] | None = None,
    ) -> ProbeClasses:
        """Probe classes derived from the runtime's base classes: its service base, its
        batch source (``execute()`` returns an item, ``None`` at the end), its map, filter
        and sink functions (``execute(data)``) and, for streaming, its streaming source and
        its end marker (``stop_signal(name)``, SAGE's ``StopSignal``)."""
        if (stream_source is None) != (stop_signal is None):
            raise TypeError("stream_source and stop_signal go together: give both or neither")
        return cls(
            service=_service_class(service),
            batch_source=_source_class(batch_source),
            map=_item_class(map, "process"),
            filter=_item_class(filter, "process"),
            sink=_item_class(sink, "consume"),
            stream_source=(
                None
                if stream_source is None or stop_signal is None
                else _stream_source_class(stream_source, stop_signal)
            ),
        )


def build_job(env: Any, probes: Probes, classes: ProbeClasses) -> None:
    """Register the probes' services and pipelines on ``env`` with SAGE's public API.

    Does not start the job. A streaming topology needs ``classes.stream_source``.
    """
    for name, service in probes.services.items():
        env.register_service(name, classes.service, service)
    for i, source in enumerate(probes.sources):
        if probes.topology.streaming:
            if classes.stream_source is None:
                raise TypeError("a streaming topology needs ProbeClasses with a stream_source")
            stream = env.from_source(classes.stream_source, source)
        else:
            stream = env.from_batch(classes.batch_source, source)
        for stage in probes.stages[i]:
            if stage.spec.kind == "map":
                stream = stream.map(classes.map, stage, parallelism=stage.spec.parallelism)
            else:
                stream = stream.filter(classes.filter, stage, parallelism=stage.spec.parallelism)
        for sink in probes.sinks[i]:
            stream.sink(classes.sink, sink, parallelism=sink.spec.parallelism)


def _service_class(base: type[Any]) -> type[Any]:
    class ProbeService(base):  # type: ignore[misc]
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe
            probe.constructed()

        def setup(self) -> None:
            self.probe.setup()

        def call(self, caller: str, item: str) -> str:
            return str(self.probe.call(caller, item))

        def cleanup(self) -> None:
            self.probe.cleanup()

    return ProbeService


def _source_class(base: type[Any]) -> type[Any]:
    class ProbeSource(base):  # type: ignore[misc]
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe

        def execute(self) -> Any:
            return self.probe.next()

    return ProbeSource


def _stream_source_class(base: type[Any], stop_signal: Callable[[str], Any]) -> type[Any]:
    """A streaming source on ``base``: an item, ``None`` for "nothing now", or
    ``stop_signal(...)`` once a bounded probe source has ended."""

    class ProbeStreamSource(base):  # type: ignore[misc]
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe

        def execute(self) -> Any:
            item = self.probe.next()
            if item is None and self.probe.ended:
                return stop_signal(self.probe.node)
            return item

    return ProbeStreamSource


def _item_class(base: type[Any], action: str) -> type[Any]:
    """A map, filter or sink class on ``base`` whose ``execute(data)`` calls the probe's
    ``action`` (``process`` for stages, ``consume`` for sinks), handing it a caller that
    reaches services with the runtime's own ``call_service``."""

    class ProbeFunction(base):  # type: ignore[misc]
        def __init__(self, probe: Any) -> None:
            super().__init__()
            self.probe = probe

        def execute(self, data: Any) -> Any:
            node = self.probe.node

            def call(service: str, item: str) -> Any:
                return self.call_service(service, node, item, method="call")

            return getattr(self.probe, action)(data, call)

    ProbeFunction.__name__ = ProbeFunction.__qualname__ = (
        "ProbeSink" if action == "consume" else "ProbeStage"
    )
    return ProbeFunction
