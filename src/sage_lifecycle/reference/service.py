"""``BaseService``: a long-lived service with ``setup`` and ``cleanup``, as in SAGE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dispatcher import RuntimeContext

__all__ = ["BaseService"]


class BaseService:
    """Base class for services registered with ``env.register_service(name, cls, ...)``.

    The runtime constructs the service on its own thread, calls ``setup()`` once before
    any call reaches it, serialises calls to its methods, and calls ``cleanup()`` exactly
    once after every task of the job stopped.

    Example::

        class Greeter(BaseService):
            def hello(self, who: str) -> str:
                return f"hello, {who}"
    """

    ctx: RuntimeContext | None = None

    def setup(self) -> None:
        """Acquire resources; runs once on the service's thread before the first call."""

    def cleanup(self) -> None:
        """Release resources; runs exactly once, after every task of the job stopped."""

    def call_service(
        self,
        name: str,
        *args: Any,
        method: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``method`` of service ``name`` (another service of the same job)."""
        from .functions import _require_ctx

        return _require_ctx(self).call_service(name, args, kwargs, method=method, timeout=timeout)
