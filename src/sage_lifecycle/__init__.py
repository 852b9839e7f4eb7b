"""pytest-sage-lifecycle: prove that a dataflow runtime cleans every service exactly once
and never returns from its wait early.

Load the plugin with ``pytest -p sage_lifecycle`` (it also autoloads once installed).
The library parts load lazily, so loading the plugin imports almost nothing::

    from sage_lifecycle import Trace, assert_contract
    from sage_lifecycle.reference import LocalEnvironment

PYTEST_DONT_REWRITE: the plugin has no assertions to rewrite, and the console command
imports it before pytest starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The pytest plugin is this package: its hooks and fixtures live in _plugin.
from ._plugin import lifecycle_env as lifecycle_env
from ._plugin import lifecycle_env_factory as lifecycle_env_factory
from ._plugin import lifecycle_trace as lifecycle_trace
from ._plugin import pytest_addhooks as pytest_addhooks
from ._plugin import pytest_addoption as pytest_addoption
from ._plugin import pytest_configure as pytest_configure
from ._plugin import pytest_runtest_call as pytest_runtest_call
from ._plugin import pytest_terminal_summary as pytest_terminal_summary
from ._plugin import pytest_timeout_set_timer as pytest_timeout_set_timer

if TYPE_CHECKING:
    from .contract import PROPERTIES, Property, Violation, check
    from .report import LifecycleViolation, assert_contract, format_report, format_timeline
    from .trace import Event, EventKind, Observer, Trace

__all__ = [
    "PROPERTIES",
    "Event",
    "EventKind",
    "LifecycleViolation",
    "Observer",
    "Property",
    "Trace",
    "Violation",
    "assert_contract",
    "check",
    "format_report",
    "format_timeline",
]

_LAZY = {
    "PROPERTIES": "contract",
    "Property": "contract",
    "Violation": "contract",
    "check": "contract",
    "LifecycleViolation": "report",
    "assert_contract": "report",
    "format_report": "report",
    "format_timeline": "report",
    "Event": "trace",
    "EventKind": "trace",
    "Observer": "trace",
    "Trace": "trace",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sage_lifecycle' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
