"""The conformance suite that ``--lifecycle-conformance`` collects.

One test per selected contract property, each an independent Hypothesis search with its
own shrunk counterexample, and one for the white-box machine (reference-based targets).
The conformance plugin object (registered only in this mode) parametrizes and runs them.
"""

from __future__ import annotations

import pytest

from ._conformance import PLUGIN_NAME, ConformancePlugin

# Collected by pytest in conformance mode: nothing here to import.
__all__: list[str] = []


def _plugin(request: pytest.FixtureRequest) -> ConformancePlugin:
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert isinstance(plugin, ConformancePlugin), "run with --lifecycle-conformance"
    return plugin


def test_contract(request: pytest.FixtureRequest, lifecycle_property: str) -> None:
    """One property's search against the target."""
    __tracebackhide__ = True
    _plugin(request).run_property(request.node, lifecycle_property)


def test_white_box(request: pytest.FixtureRequest) -> None:
    """The white-box machine: the target's dispatcher under stop signals in any order."""
    __tracebackhide__ = True
    plugin = _plugin(request)
    if plugin.settings.dispatcher is None:
        pytest.skip("the white-box machine drives reference-based targets only")
    plugin.run_white_box(request.node)
