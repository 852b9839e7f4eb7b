"""Target resolution: names, mutants, user adapters, entry points, and clear errors."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from sage_lifecycle.mutants import MUTANTS
from sage_lifecycle.reference_target import ReferenceTarget
from sage_lifecycle.resolve import available_targets, resolve_target
from sage_lifecycle.target import ENTRY_POINT_GROUP, Target, TargetError


def test_reference_and_mutants_resolve_to_fresh_targets() -> None:
    factory = resolve_target("reference")
    a, b = factory(), factory()
    assert isinstance(a, ReferenceTarget)
    assert a is not b
    mutant = resolve_target("mutant:pre_878")()
    assert isinstance(mutant, ReferenceTarget)
    assert mutant.dispatcher is MUTANTS["pre_878"].dispatcher
    assert mutant.name == "mutant:pre_878"


def test_unknown_names_list_what_is_available() -> None:
    with pytest.raises(
        TargetError,
        match=r"unknown lifecycle target 'refrence'; available: reference, mutant:pre_878",
    ):
        resolve_target("refrence")
    with pytest.raises(TargetError, match=r"unknown mutant 'nope' .* available mutants: pre_878"):
        resolve_target("mutant:nope")
    assert "mutant:wait_on_tasks" in available_targets()


class GoodTarget(ReferenceTarget):
    pass


class NotATarget:
    name = "broken"


class SlowGrace(ReferenceTarget):
    grace = "2s"  # type: ignore[assignment]


class OddModes(ReferenceTarget):
    modes = ("batch", "stream")


class StreamsWithoutStop:
    name = "half-streaming"
    thread_allowlist: tuple[str, ...] = ()
    grace = 0.1
    modes = ("batch", "streaming")

    def build(self, probes: Any) -> None: ...

    def wait(self) -> None: ...

    def release(self) -> None: ...

    def start(self) -> None: ...


@pytest.fixture
def adapters(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("my_adapters")
    module.GoodTarget = GoodTarget  # type: ignore[attr-defined]
    module.NotATarget = NotATarget  # type: ignore[attr-defined]
    module.SlowGrace = SlowGrace  # type: ignore[attr-defined]
    module.OddModes = OddModes  # type: ignore[attr-defined]
    module.StreamsWithoutStop = StreamsWithoutStop  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_adapters", module)
    return module


def test_module_attr_adapters_are_checked_at_configuration(adapters: types.ModuleType) -> None:
    assert isinstance(resolve_target("my_adapters:GoodTarget")(), GoodTarget)
    with pytest.raises(
        TargetError, match=r"module 'my_adapters' has no attribute 'Missing'; expected a Target"
    ):
        resolve_target("my_adapters:Missing")
    with pytest.raises(
        TargetError, match=r"gave <.*NotATarget object.*>, which is not a Target: it needs"
    ):
        resolve_target("my_adapters:NotATarget")
    with pytest.raises(TargetError, match=r"cannot import module 'no_such_module'"):
        resolve_target("no_such_module:X")
    with pytest.raises(
        TargetError,
        match=r"target 'my_adapters:SlowGrace' has grace='2s': expected the seconds its "
        r"threads may outlive the wait, a number from 0 to 3600, for example grace = 0.5",
    ):
        resolve_target("my_adapters:SlowGrace")
    with pytest.raises(
        TargetError,
        match=r"target 'my_adapters:OddModes' has modes=\('batch', 'stream'\): expected a "
        r"tuple of 'batch' and/or 'streaming'",
    ):
        resolve_target("my_adapters:OddModes")
    with pytest.raises(
        TargetError,
        match=r"lists 'streaming' in its modes but has no stop\(\), close\(\): a streaming "
        r"target needs start\(\), stop\(\) and close\(\); or leave 'streaming' out of modes",
    ):
        resolve_target("my_adapters:StreamsWithoutStop")


class _EntryPoint:
    def __init__(self, name: str, value: Any, fail: bool = False) -> None:
        self.name, self.value, self._obj, self._fail = name, "pkg:attr", value, fail

    def load(self) -> Any:
        if self._fail:
            raise ImportError("pkg is broken")
        return self._obj


def test_entry_point_targets_resolve_and_broken_ones_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata

    def entry_points(*, group: str) -> list[_EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return [_EntryPoint("myruntime", GoodTarget), _EntryPoint("broken", None, fail=True)]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert isinstance(resolve_target("myruntime")(), GoodTarget)
    assert "myruntime" in available_targets()
    with pytest.raises(
        TargetError,
        match=r"target 'broken': the entry point 'pkg:attr' failed to load: ImportError: pkg is",
    ):
        resolve_target("broken")


def test_reference_target_satisfies_the_protocol() -> None:
    assert isinstance(ReferenceTarget(), Target)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (":", r"target ':' is not 'module:attr'"),
        (".foo:X", r"target '.foo:X' is not 'module:attr'"),
        ("mutant:nope", r"unknown mutant 'nope'"),
    ],
)
def test_malformed_target_names_are_refused_without_importing_anything(
    spec: str, expected: str
) -> None:
    from sage_lifecycle.resolve import validate_target_spec

    with pytest.raises(TargetError, match=expected):
        validate_target_spec(spec)
    with pytest.raises(TargetError, match=expected):
        resolve_target(spec)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise RuntimeError('boom at import')", r"cannot import module .*boom at import"),
        ("def broken(:\n", r"cannot import module .*invalid syntax"),
    ],
)
def test_an_adapter_module_that_fails_to_import_is_named(
    pytester: pytest.Pytester, source: str, expected: str
) -> None:
    pytester.makepyfile(bad_adapter=source)
    pytester.syspathinsert()
    with pytest.raises(TargetError, match=expected):
        resolve_target("bad_adapter:Target")
