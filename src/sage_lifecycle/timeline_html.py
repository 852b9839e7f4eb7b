"""The HTML timeline of one failing example: one self-contained page (inline SVG and CSS,
no script, nothing fetched), drawn from the JSON record :mod:`sage_lifecycle.artifacts`
writes.

One lane per thread (the ending call's, the tasks', the services', the pools'), ordered
by first appearance; the x axis is the order of events (the trace's sequence numbers),
so every event gets room, however close in time. On the lanes: a bar for each service's
life (construct to the end of its cleanup; open-ended, dashed, if it never ended) and
each task's (create or start to stop), the ending call as a box from its begin to its
return, a line across all lanes where it returned, gates a thread was parked at shaded,
every event a dot with its details on hover, and the violation's witnesses ringed in red
and lettered as in the explanation beside the picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["render"]

_LANE = 30  # lane height
_TOP = 46  # room above the first lane for the "returned" label
_ROLE = 84  # room for a lane's role
_LEFT = 380  # room for lane labels (role, then thread name)
_RIGHT = 30

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1d1d1f; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #555; margin: 0 0 12px; }
.page { display: grid; grid-template-columns: minmax(0, 1fr) 440px; gap: 18px; }
.picture { overflow-x: auto; border: 1px solid #ddd; border-radius: 6px; }
.why { border-left: 4px solid #c62828; padding: 0 12px; }
.why h2 { font-size: 16px; margin: 8px 0; }
.why ol, .why ul { padding-left: 20px; margin: 4px 0; }
.why .so { font-weight: 600; margin-top: 6px; }
.legend span { display: inline-block; margin-right: 14px; }
.sw { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: middle; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
table.events { border-collapse: collapse; font: 12px monospace; }
table.events td, table.events th { padding: 1px 8px; text-align: left; }
table.events tr.witness { background: #ffe0e0; }
svg text { font: 11px monospace; fill: #333; }
svg .lane-label { font: 12px monospace; }
svg .role { fill: #777; font: 10px sans-serif; }
svg .lane-line { stroke: #e3e3e3; }
svg .activity { fill: #eef1f5; }
svg .life.service { fill: #7aa6d8; }
svg .life.task { fill: #8cc48c; }
svg .life.open { fill: none; stroke-dasharray: 4 3; stroke-width: 2; }
svg .life.service.open { stroke: #2f6db5; }
svg .life.task.open { stroke: #3c8d3c; }
svg .ending { fill: #ffd28a; stroke: #c77d00; }
svg .gate { fill: #b0b0b0; fill-opacity: 0.55; }
svg .event { fill: #333; }
svg .event.error { fill: #e65100; }
svg .witness { fill: none; stroke: #d50000; stroke-width: 3; }
svg .witness-label { fill: #d50000; font: bold 12px sans-serif; }
svg .returned { stroke: #d50000; stroke-width: 2; stroke-dasharray: 6 3; }
svg .returned-label { fill: #d50000; font: bold 12px sans-serif; }
"""


def _role(events: Sequence[Mapping[str, Any]]) -> str:
    kinds = {e["kind"] for e in events}
    if kinds & {"wait.begin", "wait.end"}:
        return "ending call"
    if kinds & {"service.construct", "service.setup.begin"}:
        return "service"
    if any(k.startswith(("task.", "item.")) for k in kinds):
        return "task"
    if kinds & {"service.call.begin", "service.cleanup.begin"}:
        return "pool"
    return "runtime"


def render(record: Mapping[str, Any]) -> str:
    """The page for one record (the dict :func:`~sage_lifecycle.artifacts.failure_record`
    returns, or its JSON read back)."""
    events: list[Mapping[str, Any]] = list(record.get("events", ()))
    violations: list[Mapping[str, Any]] = list(record.get("violations", ()))
    # Each witness ringed and lettered as the explanations name it.
    witnesses = {
        int(w["seq"]): str(w.get("name", "")) for v in violations for w in v.get("witnesses", ())
    }
    lanes: list[str] = []
    by_lane: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        thread = str(e.get("thread") or "?")
        if thread not in by_lane:
            lanes.append(thread)
            by_lane[thread] = []
        by_lane[thread].append(e)
    index = {int(e["seq"]): i for i, e in enumerate(events)}
    n = max(len(events), 1)
    step = max(8.0, min(26.0, 1100.0 / n))
    width = _LEFT + step * (n + 1) + _RIGHT
    height = _TOP + _LANE * max(len(lanes), 1) + 20
    lane_y = {t: _TOP + i * _LANE + _LANE / 2 for i, t in enumerate(lanes)}

    def x(seq: int) -> float:
        return _LEFT + step * (index.get(seq, n - 1) + 1)

    svg: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'role="img" aria-label="timeline of {len(events)} events on {len(lanes)} threads">'
    ]
    for t in lanes:
        y = lane_y[t]
        own = by_lane[t]
        shown = t if len(t) <= 38 else f"...{t[-35:]}"
        svg.append(f'<g class="lane" data-thread="{escape(t)}">')
        svg.append(f"<title>{escape(t)}</title>")
        svg.append(f'<line class="lane-line" x1="0" x2="{width:.0f}" y1="{y}" y2="{y}"/>')
        svg.append(
            f'<text class="role" x="6" y="{y + 4}">{escape(_role(own))}</text>'
            f'<text class="lane-label" x="{_ROLE}" y="{y + 4}">{escape(shown)}</text>'
        )
        first, last = x(int(own[0]["seq"])), x(int(own[-1]["seq"]))
        svg.append(
            f'<rect class="activity" x="{first - 4:.1f}" y="{y - 11}" '
            f'width="{last - first + 8:.1f}" height="22"/>'
        )
        svg.append("</g>")
    svg += _gates(events, lane_y, x)
    svg += _lives(events, lane_y, x, width)
    svg += _endings(events, lane_y, x, height)
    for e in events:
        seq = int(e["seq"])
        y = lane_y[str(e.get("thread") or "?")]
        cls = "event error" if e.get("error") else "event"
        tip = _tip(e)
        svg.append(f'<circle class="{cls}" cx="{x(seq):.1f}" cy="{y}" r="3"><title>{tip}</title>')
        svg.append("</circle>")
        if seq in witnesses:
            svg.append(
                f'<circle class="witness" data-seq="{seq}" cx="{x(seq):.1f}" cy="{y}" r="8">'
                f"<title>witness {witnesses[seq]}: {tip}</title></circle>"
                f'<text class="witness-label" x="{x(seq) + 9:.1f}" y="{y - 8}">'
                f"{witnesses[seq]}</text>"
            )
    svg.append("</svg>")

    target = record.get("target", {})
    head = escape(
        f"{record.get('property', '?')}: FAIL on {target.get('name', '?')}"
        + (f" ({target['version']})" if target.get("version") else "")
    )
    why: list[str] = []
    for v in violations:
        ex = v.get("explanation", {})
        why.append(f"<h2>{escape(str(v.get('property')))}: {escape(str(v.get('message')))}</h2>")
        why.append("<p>Let</p><ul>")
        why += [f"<li>{escape(str(s))}</li>" for s in ex.get("let", ())]
        why.append("</ul><p>Then</p><ol>")
        why += [f"<li>{escape(str(s))}</li>" for s in ex.get("then", ())]
        why.append(f'</ol><p class="so">{escape(str(ex.get("so", "")))}</p>')
    rate = record.get("reproduced")
    reproduced = (
        f"; reproduced {rate['hits']}/{rate['runs']} on replay" if isinstance(rate, dict) else ""
    )
    rows = "".join(
        f'<tr class="{"witness" if int(e["seq"]) in witnesses else ""}"><td>{e["seq"]}</td>'
        f"<td>{float(e.get('t_ms', 0)):.3f}</td><td>{escape(str(e.get('thread')))}</td>"
        f"<td>{escape(str(e['kind']))}</td><td>{_tip(e, kind=False)}</td></tr>"
        for e in events
    )
    schedule = record.get("schedule", {})
    steps = ", ".join(f"{s['action']} {s['what']}" for s in schedule.get("steps", ())) or "none"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{head}</title>
<style>{_CSS}</style></head>
<body>
<h1>{head}</h1>
<p class="meta">{len(events)} events on {len(lanes)} threads{escape(reproduced)}.
Schedule: {escape(steps)}; ending {escape(str(schedule.get("ending", {}).get("when", "")))}.
Replay: <code>{escape(str(record.get("replay", {}).get("command", "")))}</code></p>
<p class="legend"><span><i class="sw" style="background:#7aa6d8"></i>service life</span>
<span><i class="sw" style="background:#8cc48c"></i>task life</span>
<span><i class="sw" style="background:#ffd28a"></i>ending call</span>
<span><i class="sw" style="background:#b0b0b0"></i>parked at a gate</span>
<span><i class="sw" style="border:2px solid #d50000"></i>witness</span>
<span>x: order of events</span></p>
<div class="page">
<div class="picture">{"".join(svg)}</div>
<aside class="why">{"".join(why)}</aside>
</div>
<h2>Topology</h2><pre>{escape(str(record.get("topology", {}).get("text", "")))}</pre>
<details><summary>All {len(events)} events</summary>
<table class="events"><tr><th>seq</th><th>t(ms)</th><th>thread</th><th>event</th>
<th>details</th></tr>{rows}</table></details>
<details><summary>The text report</summary><pre>{escape(str(record.get("story", "")))}</pre>
</details>
</body></html>
"""


def _tip(e: Mapping[str, Any], *, kind: bool = True) -> str:
    bits = [f"#{e['seq']} {e['kind']}"] if kind else []
    bits.append(str(e.get("subject", "")))
    data = e.get("data") or {}
    for key in ("method", "caller", "node", "item", "outcome", "reported"):
        if data.get(key) not in (None, "", []):
            bits.append(f"{key}={data[key]}")
    if e.get("error"):
        bits.append(f"error={e['error']}")
    return escape(" ".join(bits))


def _gates(events: Sequence[Mapping[str, Any]], lane_y: Mapping[str, float], x: Any) -> list[str]:
    """Shade each stay at a gate, in the parked thread's lane."""
    out: list[str] = []
    parked: dict[str, list[Mapping[str, Any]]] = {}
    last = int(events[-1]["seq"]) if events else 0
    stays: list[tuple[Mapping[str, Any], int]] = []
    for e in events:
        if e["kind"] == "gate.park":
            parked.setdefault(str(e["subject"]), []).append(e)
        elif e["kind"] in ("gate.open", "gate.fail"):
            for p in parked.pop(str(e["subject"]), []):
                stays.append((p, int(e["seq"])))
    for rest in parked.values():
        stays += [(p, last) for p in rest]
    for p, until in stays:
        y = lane_y[str(p.get("thread") or "?")]
        x0, x1 = x(int(p["seq"])), x(until)
        out.append(
            f'<rect class="gate" data-gate="{escape(str(p["subject"]))}" x="{x0:.1f}" '
            f'y="{y - 9}" width="{max(x1 - x0, 3):.1f}" height="18">'
            f"<title>parked at {escape(str(p['subject']))} from #{p['seq']} to #{until}</title>"
            "</rect>"
        )
    return out


def _lives(
    events: Sequence[Mapping[str, Any]], lane_y: Mapping[str, float], x: Any, width: float
) -> list[str]:
    """A bar per service (construct to cleanup end) and per task (create/start to stop)."""
    out: list[str] = []
    spans: dict[tuple[str, str], list[Any]] = {}
    for e in events:
        kind, subject, seq = str(e["kind"]), str(e["subject"]), int(e["seq"])
        if kind in ("service.construct", "service.setup.begin"):
            key = ("service", subject)
        elif kind in ("task.create", "task.start"):
            key = ("task", subject)
        elif kind in ("service.cleanup.end",):
            if ("service", subject) in spans:
                spans[("service", subject)][2] = seq
            continue
        elif kind == "task.stop":
            if ("task", subject) in spans:
                spans[("task", subject)][2] = seq
            continue
        else:
            continue
        if key not in spans:
            spans[key] = [str(e.get("thread") or "?"), seq, None]
        elif kind == "task.start":
            spans[key][0] = str(e.get("thread") or "?")  # the task's own thread
    for (what, subject), (thread, begin, end) in spans.items():
        y = lane_y[thread] + (5 if what == "task" else -5)
        x0 = x(begin)
        x1 = x(end) if end is not None else width - _RIGHT / 2
        cls = f"life {what}" + (" open" if end is None else "")
        note = "" if end is not None else " (never ended)"
        out.append(
            f'<rect class="{cls}" data-{what}="{escape(subject)}" x="{x0:.1f}" y="{y - 3}" '
            f'width="{max(x1 - x0, 2):.1f}" height="6"><title>{what} {escape(subject)}: '
            f"#{begin} to {('#' + str(end)) if end is not None else 'the end'}{note}</title></rect>"
        )
    return out


def _endings(
    events: Sequence[Mapping[str, Any]], lane_y: Mapping[str, float], x: Any, height: float
) -> list[str]:
    """The ending calls as boxes, and a line across every lane where the first returned."""
    out: list[str] = []
    ends = {
        int(e["data"]["begin"]): e
        for e in events
        if e["kind"] in ("wait.end", "wait.deadline") and (e.get("data") or {}).get("begin")
    }
    returned = None
    for e in events:
        if e["kind"] != "wait.begin":
            continue
        end = ends.get(int(e["seq"]))
        y = lane_y[str(e.get("thread") or "?")]
        x0 = x(int(e["seq"]))
        x1 = x(int(end["seq"])) if end is not None else x(int(events[-1]["seq"]))
        label = f"{e['subject']}()"
        out.append(
            f'<rect class="ending" x="{x0:.1f}" y="{y - 12}" width="{max(x1 - x0, 3):.1f}" '
            f'height="24" rx="3"><title>{escape(label)}: #{e["seq"]} to '
            f"{('#' + str(end['seq'])) if end is not None else 'no end'}</title></rect>"
        )
        if end is not None and end["kind"] == "wait.end" and returned is None:
            returned = end
    if returned is not None:
        xr = x(int(returned["seq"]))
        outcome = (returned.get("data") or {}).get("outcome", "returned")
        out.append(
            f'<line class="returned" x1="{xr:.1f}" x2="{xr:.1f}" y1="{_TOP - 14}" '
            f'y2="{height - 6:.0f}"/><text class="returned-label" x="{xr - 4:.1f}" '
            f'y="{_TOP - 18}" text-anchor="end">{escape(str(returned["subject"]))}() '
            f"{escape(str(outcome))} (#{returned['seq']})</text>"
        )
    return out
