"""Target resolution: a target name (``--lifecycle-target``, the marker's ``target=``,
``sage-lifecycle --target``) to a factory of fresh targets.

- ``reference`` (default): the embedded reference dispatcher;
- ``mutant:<name>``: the reference with one bug from :mod:`sage_lifecycle.mutants`;
- ``module:attr``: a user's adapter (a ``Target`` class, or a factory returning one);
- a name registered under the ``sage_lifecycle.targets`` entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .reference_target import ReferenceTarget
from .target import ENTRY_POINT_GROUP, Target, TargetError

__all__ = ["available_targets", "check_target", "resolve_target", "validate_target_spec"]


def available_targets() -> list[str]:
    """Every target name this installation knows, for error messages and docs."""
    from importlib.metadata import entry_points

    from .mutants import MUTANTS

    names = ["reference", *(f"mutant:{m}" for m in MUTANTS)]
    names += sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return names


def check_target(obj: Any, spec: str) -> Target:
    """``obj`` (a Target, a Target class, or a factory of one) as a checked Target.

    Raises :class:`TargetError` naming ``spec`` and the fix: a factory that failed, an
    object that is not a Target, bad ``modes`` or ``grace``, streaming without its methods.
    """
    # A class is a factory even when its attributes satisfy the protocol's check.
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Target)):
        try:
            candidate = obj()
        except ImportError as exc:  # a runtime not installed: its own message says what to do
            raise TargetError(f"target {spec!r}: {exc}") from None
        except Exception as exc:
            raise TargetError(
                f"target {spec!r}: calling {obj!r} to make a Target failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    else:
        candidate = obj
    if not isinstance(candidate, Target):
        raise TargetError(
            f"target {spec!r} gave {candidate!r}, which is not a Target: it needs a name, "
            "thread_allowlist, grace, and build(probes), wait() and release() methods"
        )
    modes = getattr(candidate, "modes", ("batch",))
    if (
        not isinstance(modes, tuple)
        or not modes
        or any(m not in ("batch", "streaming") for m in modes)
    ):
        raise TargetError(
            f"target {spec!r} has modes={modes!r}: expected a tuple of 'batch' and/or "
            "'streaming', for example modes = ('batch', 'streaming')"
        )
    missing = [m for m in ("start", "stop", "close") if not callable(getattr(candidate, m, None))]
    if "streaming" in modes and missing:
        raise TargetError(
            f"target {spec!r} lists 'streaming' in its modes but has no "
            f"{', '.join(f'{m}()' for m in missing)}: a streaming target needs start(), "
            "stop() and close(); or leave 'streaming' out of modes"
        )
    grace = candidate.grace
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace <= 3600:
        raise TargetError(
            f"target {spec!r} has grace={grace!r}: expected the seconds its threads may "
            "outlive the wait, a number from 0 to 3600, for example grace = 0.5"
        )
    return candidate


def validate_target_spec(spec: str) -> None:
    """Check a target name without importing or running anything (outside conformance
    mode the target is not used, so it is not resolved: resolving imports user code).

    Raises :class:`TargetError` for an unknown mutant or a malformed ``module:attr``.
    """
    spec = spec.strip()
    if spec == "reference":
        return
    if spec.startswith("mutant:"):
        from .mutants import MUTANTS

        name = spec.split(":", 1)[1]
        if name not in MUTANTS:
            raise TargetError(
                f"unknown mutant {name!r} in target {spec!r}; available mutants: "
                f"{', '.join(MUTANTS)}"
            )
        return
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        parts = module_name.split(".")
        if not all(p.isidentifier() for p in parts) or not attr.isidentifier():
            raise TargetError(
                f"target {spec!r} is not 'module:attr' (a dotted module path, a colon, and "
                "an attribute name), for example 'mypkg.adapter:MyTarget'"
            )
        return
    from importlib.metadata import entry_points

    if spec not in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}:
        raise TargetError(
            f"unknown lifecycle target {spec!r}; available: {', '.join(available_targets())}, "
            "or 'module:attr' naming your adapter"
        )


def resolve_target(spec: str) -> Callable[[], Target]:
    """Turn a target name into a factory of fresh targets (one per example).

    Raises :class:`TargetError` naming the value and listing what is available.
    """
    from .mutants import MUTANTS

    validate_target_spec(spec)
    spec = spec.strip()
    if spec == "reference":
        return ReferenceTarget
    if spec.startswith("mutant:"):
        mutant = MUTANTS[spec.split(":", 1)[1]]
        return lambda: ReferenceTarget(mutant.dispatcher, name=spec)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # ImportError, but also a module that raises on import
            raise TargetError(
                f"target {spec!r}: cannot import module {module_name!r} ({exc}); expected "
                "'module:attr' naming a Target"
            ) from None
        if not hasattr(module, attr):
            raise TargetError(
                f"target {spec!r}: module {module_name!r} has no attribute {attr!r}; "
                "expected a Target"
            )
        obj = getattr(module, attr)
    else:
        from importlib.metadata import entry_points

        # validate_target_spec found the entry point: load it.
        ep = next(ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec)
        try:
            obj = ep.load()
        except Exception as exc:
            raise TargetError(
                f"target {spec!r}: the entry point {ep.value!r} failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    check_target(obj, spec)  # fail now, at configuration, not deep inside a run
    return lambda: check_target(obj, spec)
