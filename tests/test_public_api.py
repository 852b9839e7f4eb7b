"""The package's shape: the plugin is a leaf, the library never needs pytest, and every
public module says what it exports (``__all__``), which is what docs/api.md lists."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import sage_lifecycle

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(sage_lifecycle.__file__).parent

#: The modules that are the pytest plugin: the entry point, the conformance mode it
#: registers, the test module that mode collects, and the hook specifications.
PLUGIN_SIDE = {
    "sage_lifecycle.pytest_plugin",
    "sage_lifecycle._conformance",
    "sage_lifecycle.conformance",
    "sage_lifecycle.hookspecs",
}


def all_modules() -> list[str]:
    found = ["sage_lifecycle"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="sage_lifecycle."):
        found.append(info.name)
    return sorted(found)


LIBRARY = [m for m in all_modules() if m not in PLUGIN_SIDE]
PUBLIC = [m for m in all_modules() if not any(p.startswith("_") for p in m.split("."))]

BLOCK_PYTEST = """
import sys

class _NoPytest:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytest", "_pytest", "pluggy"):
            raise ImportError(f"the library imported {name}")
        return None

sys.meta_path.insert(0, _NoPytest())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_plugin_modules_are_the_ones_named() -> None:
    # A renamed plugin module would silently leave the leaf test below checking nothing.
    assert set(all_modules()) >= PLUGIN_SIDE
    assert len(LIBRARY) >= 30


def test_no_library_module_imports_pytest() -> None:
    """Each library module imported in a fresh interpreter where pytest cannot load."""
    code = BLOCK_PYTEST + textwrap.dedent(
        """
        import importlib, sys
        failed = []
        for name in sys.argv[1:]:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                failed.append(f"{name}: {exc}")
        print("\\n".join(failed))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *LIBRARY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout


@pytest.mark.parametrize("module", ["sage_lifecycle.trace", "sage_lifecycle.reference"])
def test_importing_a_library_part_leaves_pytest_unloaded(module: str) -> None:
    result = _run(f"import sys, {module}; print(sorted(m for m in sys.modules if 'pytest' in m))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_reference_runs_a_job_without_pytest_installed() -> None:
    code = BLOCK_PYTEST + textwrap.dedent(
        """
        from sage_lifecycle import Trace, check
        from sage_lifecycle.reference import BaseService, LocalEnvironment, SinkFunction

        class Db(BaseService):
            def get(self, key):
                return key

        class Lookup(SinkFunction):
            def execute(self, data):
                self.call_service("db", data, method="get")

        trace = Trace()
        env = LocalEnvironment("no_pytest", observer=trace)
        env.register_service("db", Db)
        env.from_batch([1, 2, 3]).map(lambda x: x * 10).sink(Lookup)
        env.submit(autostop=True)
        print(len(trace.events()), check(trace.events()))
        """
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    events, violations = result.stdout.split(maxsplit=1)
    assert int(events) > 10
    assert violations.strip() == "[]"


def test_the_entry_point_names_the_plugin_module() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="pytest11") if e.name == "sage_lifecycle"]
    assert ep.value == "sage_lifecycle.pytest_plugin"
    # ... and nothing in the library imports it.
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if name.endswith("__init__"):
            name = name.rsplit(".", 1)[0]
        if name in PLUGIN_SIDE:
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+\S*pytest_plugin\b", text, re.M), path


# -- the public surface -----------------------------------------------------------------


def _defined_public_names(module: ModuleType) -> set[str]:
    """Public names a module's own source binds at top level (not under TYPE_CHECKING)."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # Not a module's __getattr__/__dir__, nor a test function pytest collects.
            if not node.name.startswith(("__", "test_")):
                names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    dunder = {n for n in names if n.startswith("__") and n.endswith("__")} - {"__all__"}
    return {n for n in names if not n.startswith("_") and n != "pytest_plugins"} | dunder


def _imported_names(module: ModuleType) -> set[str]:
    """Names a module binds by ``from x import y`` at top level (re-exports)."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names |= {a.asname or a.name for a in node.names}
    return names


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_module_says_what_it_exports(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for attr in exported:
        value = getattr(module, attr)  # every exported name resolves (lazy ones too)
        assert not isinstance(value, ModuleType), f"{name}.__all__ exports a module: {attr}"
    defined = _defined_public_names(module)
    assert defined - set(exported) == set(), f"{name} defines public names not in __all__"
    # What it exports it defines, or re-exports on purpose from its own package.
    foreign = set(exported) - defined - _imported_names(module) - set(_lazy(module))
    assert foreign == set(), f"{name}.__all__ names what it neither defines nor imports"


def _lazy(module: ModuleType) -> dict[str, str]:
    lazy = getattr(module, "_LAZY", {})
    return lazy if isinstance(lazy, dict) else {}


def test_the_package_namespace_is_the_api() -> None:
    shown = set(dir(sage_lifecycle))
    assert shown == {*sage_lifecycle.__all__, "contract", "reference"}
    for machinery in ("Any", "importlib", "typing", "lifecycle_env", "pytest_configure"):
        assert machinery not in shown


def _bullet_names(body: str) -> set[str]:
    """The names a section's bullets list: the backticked names before each " — "."""
    names: set[str] = set()
    for bullet in re.findall(r"^- (.*?)(?= — )", body, re.M | re.S):
        names |= set(re.findall(r"`(\w+)`", bullet))
    return names


def test_docs_api_lists_exactly_the_public_surface() -> None:
    """docs/api.md has a section per public module naming each exported name."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `([\w.<>]+)`\n(.*?)(?=^## |\Z)", text, re.M | re.S))
    properties = [m for m in PUBLIC if m.startswith("sage_lifecycle.contract.")]
    expanded: dict[str, str] = {}
    for heading, body in sections.items():
        for name in properties if heading.endswith(".<property>") else [heading]:
            expanded[name] = body
    api_modules = {m for m in PUBLIC if getattr(importlib.import_module(m), "__all__", None)}
    assert set(expanded) == api_modules
    for name, body in expanded.items():
        assert _bullet_names(body) == set(importlib.import_module(name).__all__), name


def test_the_version_is_the_distributions() -> None:
    from importlib.metadata import version

    assert sage_lifecycle.__version__ == version("pytest-sage-lifecycle")
