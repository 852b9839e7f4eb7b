"""The report directory: for each failing example, a JSON record and an HTML timeline
(``--lifecycle-report=DIR``), and the replay of such a record (``--replay FILE``).

The JSON format is documented in docs/reports.md; its JSON Schema is
``docs/report.schema.json``. Example::

    record = failure_record(outcome.failure, reproduced=outcome.reproduced)
    json_path, html_path = write_failure("lifecycle-reports", record)
    run, target = read_replay(json_path)
"""

from __future__ import annotations

import dataclasses
import json
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contract import PROPERTIES
from .contract.explain import explain, witness_names
from .schedule import Replay, ScheduleError, decode, encode

if TYPE_CHECKING:
    from .machines._common import Failure
    from .trace import Event

__all__ = ["FORMAT", "ReportError", "failure_record", "read_replay", "write_failure"]

#: The ``format`` field of every record this version writes.
FORMAT = "sage-lifecycle-report/1"


class ReportError(ValueError):
    """A report file that cannot be read or replayed: the message names the file and why."""


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return repr(value)


def _event(e: Event, t0: int) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "kind": e.kind.value,
        "subject": e.subject,
        "job": e.job,
        "thread": e.thread,
        "t_ms": round((e.t_ns - t0) / 1e6, 3),
        "error": e.error,
        "data": _jsonable(dict(e.data)),
    }


def _ending(failure: Failure) -> dict[str, Any]:
    """Where the job was ended: the ending calls made, and after which step."""
    from .trace import EventKind

    calls = [e.subject for e in failure.events if e.kind is EventKind.WAIT_BEGIN]
    step = next((i for i, (a, _) in enumerate(failure.schedule) if a == "end"), None)
    if failure.topology.streaming:
        when = (
            f"after step {step} ({failure.schedule[step][1]})"
            if step is not None
            else "after the last step (the driver's ending at teardown)"
        )
    else:
        when = "at the start: submit(autostop=True) waits while the steps run"
    return {"calls": calls, "after_step": step, "when": when}


def failure_record(
    failure: Failure,
    *,
    reproduced: tuple[int, int] | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON record of one failing example (see docs/reports.md): the target and its
    version, the versions around it, the topology, the schedule, every event, the
    violations with witnesses and explanations, the reproduction rate if known, and how
    to replay it. ``context`` adds ``profile``, ``seed`` and the like."""
    events = failure.events
    t0 = events[0].t_ns if events else 0
    prop = failure.property or (failure.violations[0].property if failure.violations else "")
    token = encode(
        Replay(prop, failure.topology, failure.schedule, failure.plan, failure.decisions)
    )
    violations = []
    names = witness_names(failure.violations)
    for v in failure.violations:
        why = explain(v, events, names=names)
        violations.append(
            {
                "property": v.property,
                "statement": PROPERTIES[v.property].summary if v.property in PROPERTIES else "",
                "message": v.message,
                "job": v.job,
                "witnesses": [{"seq": s, "name": names[s]} for s in v.seqs],
                "detail": v.detail,
                "explanation": {"let": list(why.let), "then": list(why.then), "so": why.so},
            }
        )
    return {
        "format": FORMAT,
        "property": prop,
        "verdict": "FAIL",
        "target": {"name": failure.target, "version": failure.target_version},
        "versions": {
            "python": platform.python_version(),
            "hypothesis": _version("hypothesis"),
            "pytest": _version("pytest"),
            "pytest-sage-lifecycle": _version("pytest-sage-lifecycle"),
        },
        "context": _jsonable(dict(context or {})),
        "topology": {
            "text": failure.topology.describe(),
            "spec": _jsonable(dataclasses.asdict(failure.topology)),
        },
        "schedule": {
            "steps": [{"action": a, "what": w} for a, w in failure.schedule],
            "ending": _ending(failure),
            "plan": _jsonable(dataclasses.asdict(failure.plan)) if failure.plan else None,
            "plan_text": failure.plan.describe() if failure.plan else None,
            "decisions": list(failure.decisions),
        },
        "events": [_event(e, t0) for e in events],
        "violations": violations,
        "reproduced": (
            {"hits": reproduced[0], "runs": reproduced[1]} if reproduced is not None else None
        ),
        "replay": {"schedule": token},
        "story": failure.story,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "target"


def write_failure(directory: str | Path, record: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``record`` as ``<target>-<property>.json`` and its HTML timeline beside it
    (a number is added if the name is taken); return both paths. The record's
    ``replay.command`` names the JSON file written."""
    from .timeline_html import render

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{_slug(record['target']['name'])}-{_slug(record['property'])}"
    n = 1
    while True:
        name = stem if n == 1 else f"{stem}-{n}"
        json_path, html_path = out / f"{name}.json", out / f"{name}.html"
        try:
            with json_path.open("x", encoding="utf-8"):
                pass  # claimed: xdist workers share the directory
            break
        except FileExistsError:
            n += 1
    record = dict(record)
    record["replay"] = {
        **record["replay"],
        "command": f"sage-lifecycle --target {record['target']['name']} --replay {json_path}",
    }
    json_path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    html_path.write_text(render(record), encoding="utf-8")
    return json_path, html_path


def read_replay(path: str | Path) -> tuple[Replay, str]:
    """The recorded run in a report's JSON file, and the target it ran on."""
    p = Path(path)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot read report {str(p)!r}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ReportError(f"report {str(p)!r} is not JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ReportError(
            f"report {str(p)!r} has format {got!r}, not {FORMAT!r}: pass a .json file that "
            "--lifecycle-report wrote"
        )
    try:
        run = decode(str(record["replay"]["schedule"]))
    except (KeyError, TypeError):
        raise ReportError(f"report {str(p)!r} has no replay.schedule") from None
    except ScheduleError as exc:
        raise ReportError(f"report {str(p)!r}: {exc}") from None
    target = record.get("target", {}).get("name") or "reference"
    return run, str(target)
