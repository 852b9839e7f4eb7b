"""Errors of the reference runtime. Each message names the bad value and the fix."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):  # pragma: no cover - depends on the interpreter
    from builtins import ExceptionGroup
else:  # pragma: no cover
    from exceptiongroup import ExceptionGroup

__all__ = [
    "JobFailed",
    "JobHangError",
    "JobStateError",
    "LifecycleError",
    "PipelineDefinitionError",
    "ServiceCallTimeout",
    "ServiceNotFoundError",
    "ServiceRegistrationError",
    "ServiceUnavailableError",
]


class LifecycleError(Exception):
    """Base class of the reference runtime's own errors."""


class ServiceRegistrationError(LifecycleError, ValueError):
    """A service was registered twice, with a bad name, or with something not a class."""


class PipelineDefinitionError(LifecycleError, TypeError):
    """A pipeline stage or source is not something the runtime can run."""


class JobStateError(LifecycleError, RuntimeError):
    """An operation does not fit the job's state (submitting twice, registering late)."""


class ServiceNotFoundError(LifecycleError, LookupError):
    """``call_service`` named a service that is not registered in the job."""


class ServiceUnavailableError(LifecycleError, RuntimeError):
    """A call reached a service whose setup failed or whose cleanup has begun."""


class ServiceCallTimeout(LifecycleError, TimeoutError):
    """A service call did not complete within its timeout."""


class JobHangError(LifecycleError, TimeoutError):
    """The job did not finish within its deadline; the message holds its threads' stacks."""


class JobFailed(ExceptionGroup[Exception]):
    """Raised by ``submit``/``stop`` after the job ended, carrying every failure together.

    Setup, cleanup and task failures do not stop the rest of the job; they are collected
    and raised here once every service is cleaned and every thread joined.
    """
