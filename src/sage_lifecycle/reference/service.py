"""``BaseService``: a long-lived service with ``setup`` and ``cleanup``, as in SAGE."""

from __future__ import annotations

from .functions import ServiceCaller

__all__ = ["BaseService"]


class BaseService(ServiceCaller):
    """Base class for services registered with ``env.register_service(name, cls, ...)``.

    The runtime constructs the service on its own thread, calls ``setup()`` once before
    any call reaches it, serialises calls to its methods, and calls ``cleanup()`` exactly
    once after every task of the job stopped.

    Example::

        class Greeter(BaseService):
            def hello(self, who: str) -> str:
                return f"hello, {who}"
    """

    def setup(self) -> None:
        """Acquire resources; runs once on the service's thread before the first call."""

    def cleanup(self) -> None:
        """Release resources; runs exactly once, after every task of the job stopped."""
