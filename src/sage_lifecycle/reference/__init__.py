"""The reference runtime: an executable, correct model of SAGE's local job lifecycle.

It has SAGE's user-facing API, so SAGE code ports by changing imports::

    from sage_lifecycle.reference import BaseService, BatchFunction, LocalEnvironment
"""

from .dispatcher import Dispatcher, NodeSpec, RuntimeContext, ServiceFactory
from .environment import DataStream, LocalEnvironment
from .errors import (
    JobFailed,
    JobHangError,
    JobStateError,
    LifecycleError,
    PipelineDefinitionError,
    ServiceCallTimeout,
    ServiceNotFoundError,
    ServiceRegistrationError,
    ServiceUnavailableError,
)
from .functions import (
    BaseFunction,
    BatchFunction,
    FilterFunction,
    MapFunction,
    SinkFunction,
    SourceFunction,
    StopSignal,
)
from .service import BaseService

__all__ = [
    "BaseFunction",
    "BaseService",
    "BatchFunction",
    "DataStream",
    "Dispatcher",
    "FilterFunction",
    "JobFailed",
    "JobHangError",
    "JobStateError",
    "LifecycleError",
    "LocalEnvironment",
    "MapFunction",
    "NodeSpec",
    "PipelineDefinitionError",
    "RuntimeContext",
    "ServiceCallTimeout",
    "ServiceFactory",
    "ServiceNotFoundError",
    "ServiceRegistrationError",
    "ServiceUnavailableError",
    "SinkFunction",
    "SourceFunction",
    "StopSignal",
]
