"""pytest-sage-lifecycle: prove that a dataflow runtime cleans every service exactly once
and never returns from its wait early.

The library: load it without pytest. The pytest plugin is the leaf module
``sage_lifecycle.pytest_plugin`` (load it with ``pytest -p sage_lifecycle``; it also
autoloads once installed); nothing here imports it::

    from sage_lifecycle import Trace, assert_contract
    from sage_lifecycle.reference import LocalEnvironment

docs/api.md lists what you may import and rely on.

PYTEST_DONT_REWRITE: the library has no assertions to rewrite.
"""

from __future__ import annotations

import importlib
import typing

__version__ = "0.2.0"

# A conftest's ``pytest_plugins = ["sage_lifecycle"]`` registers this package; pytest then
# loads what this names, so that line works with plugin autoload off too. (With autoload
# on, the entry point registered the plugin under the name "sage_lifecycle" already and
# the line is a no-op.) Naming the plugin module itself there would clash with the entry
# point's registration.
pytest_plugins = ["sage_lifecycle.pytest_plugin"]

if typing.TYPE_CHECKING:
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
    "__version__",
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


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sage_lifecycle' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The API and the subpackages, not this module's own machinery.
    return sorted({*__all__, "contract", "reference"})
