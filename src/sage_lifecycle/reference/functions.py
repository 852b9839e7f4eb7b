"""Function base classes for pipeline stages, as in SAGE: sources, maps, filters, sinks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dispatcher import RuntimeContext

__all__ = [
    "BaseFunction",
    "BatchFunction",
    "FilterFunction",
    "MapFunction",
    "ServiceCaller",
    "SinkFunction",
    "SourceFunction",
    "StopSignal",
]


def _require_ctx(owner: Any) -> RuntimeContext:
    ctx = getattr(owner, "ctx", None)
    if ctx is None:
        raise RuntimeError(
            f"{type(owner).__name__}.call_service() was called outside a running job; "
            "services can be called only from functions and services the runtime runs"
        )
    return ctx  # type: ignore[no-any-return]


class ServiceCaller:
    """What functions and services share: ``self.call_service(name, ..., method=...)``."""

    ctx: RuntimeContext | None = None

    def call_service(
        self,
        name: str,
        *args: Any,
        method: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``method`` of service ``name`` and return its result.

        Example::

            class Lookup(MapFunction):
                def execute(self, data):
                    return self.call_service("db", data, method="get")
        """
        ctx = _require_ctx(self)
        return ctx.call_service(name, *args, method=method, timeout=timeout, **kwargs)


class BaseFunction(ServiceCaller):
    """Base of every stage function. ``self.call_service`` reaches the job's services."""


class BatchFunction(BaseFunction):
    """A source: ``execute()`` returns the next item, or ``None`` at the end of the batch."""

    def execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")


class SourceFunction(BaseFunction):
    """A streaming source, for ``env.from_source(...)``, as in SAGE 0.3: ``execute()``
    returns the next item, ``None`` when it has nothing right now (the runtime asks again
    soon, or stops it), or a :class:`StopSignal` to end the stream. It runs until it
    ends itself or the job is stopped (``env.stop()`` / ``env.close()``)."""

    def execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")


class StopSignal:
    """What a :class:`SourceFunction` returns to end its stream (SAGE's ``StopSignal``)."""

    def __init__(self, name: str = "stop", source: str | None = None) -> None:
        self.name = name
        self.source = source

    def __repr__(self) -> str:
        return f"StopSignal({self.name!r})"


def _is_stop_signal(value: Any) -> bool:
    """Whether a source's value ends its stream: ours, or SAGE's own ``StopSignal``."""
    return isinstance(value, StopSignal) or type(value).__name__ == "StopSignal"


class MapFunction(BaseFunction):
    """``execute(data)`` returns the transformed item."""

    def execute(self, data: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(data)")


class FilterFunction(BaseFunction):
    """``execute(data)`` returns whether the item goes on downstream."""

    def execute(self, data: Any) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(data)")


class SinkFunction(BaseFunction):
    """``execute(data)`` consumes an item at the end of a pipeline."""

    def execute(self, data: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(data)")


class _IterableBatch(BatchFunction):
    """A source over a plain iterable, for ``env.from_batch([1, 2, 3])``."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._it: Iterator[Any] = iter(items)
        self._count = 0

    def execute(self) -> Any:
        item = next(self._it, _END)
        if item is _END:
            return None
        if item is None:  # a list is checked by from_batch; a generator only here
            raise ValueError(_none_item_message(self._count))
        self._count += 1
        return item


_END = object()


def _none_item_message(index: int) -> str:
    """Why ``from_batch`` refuses a ``None`` item: SAGE reads it as the end of the batch."""
    return (
        f"from_batch(...): item {index} is None, and a batch ends at its first None (as in "
        "SAGE), so the items after it would never be delivered; remove the None or wrap "
        "the items"
    )


class _CallableStage(BaseFunction):
    """A map, filter or sink stage over a plain callable, for ``.map(lambda x: ...)``."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn

    def execute(self, data: Any) -> Any:
        return self._fn(data)
