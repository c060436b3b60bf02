"""`tributary demo --report FILE`: the console's views as one self-contained HTML file.

The page is the console's own (static/index.html, its script and style inlined), with one snapshot, the
demo's summary and a timeline of invocations embedded as JSON: it opens from disk with no server and no
network. The timeline comes from the runtime's trace (tributary.runtime.trace, kept in memory): per
mapping and shard, each invocation (a first try, a retry, a bisected half; its outcome) and each
discarded batch sent on-failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tributary.console.server import static_text
from tributary.console.snapshot import ConsoleState, snapshot_json
from tributary.runtime.app import Runtime

STYLE_LINK = '<link rel="stylesheet" href="/console/static/console.css">'
SCRIPT_TAG = '<script src="/console/static/console.js"></script>'


def write_report(path: Path, runtime: Runtime, summary: Sequence[str]) -> Path:
    """Write the report of a started runtime (before it stops: the snapshot reads its emulator) to `path`."""
    snapshot = ConsoleState(runtime).collect()
    names = {mapping.uuid: key for key, mapping in list(runtime.mappings.items())}
    events = runtime.trace.events() if runtime.trace is not None else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(snapshot, summary, timeline(events, names)), encoding="utf-8")
    return path


def render_report(snapshot: Mapping[str, Any], summary: Sequence[str], timeline_data: Mapping[str, Any]) -> str:
    """The console page with its script and style inlined and the report's data embedded."""
    data = snapshot_json({"snapshot": snapshot, "summary": list(summary), "timeline": timeline_data})
    page = static_text("index.html")
    page = page.replace(STYLE_LINK, f"<style>\n{static_text('console.css')}</style>")
    safe_data = data.replace("<", "\\u003c")  # no "</script" nor "<!--" in the data can change how the page parses
    embedded = f'<script id="report-data" type="application/json">{safe_data}</script>'
    page = page.replace(SCRIPT_TAG, f"{embedded}\n<script>\n{_script_safe(static_text('console.js'))}</script>")
    return page.replace("<title>Tributary console</title>", "<title>Tributary demo report</title>")


def _script_safe(text: str) -> str:
    """The console's script, inlined: no "</" can end its <script> element early."""
    return text.replace("</", "<\\/")


def timeline(events: Iterable[Mapping[str, Any]], mapping_names: Mapping[str, str]) -> dict[str, Any]:
    """Trace lines as lanes (one per mapping and shard) of events placed in ms from the first one.

    An event's kind: ``batch`` (a first try that succeeded), ``partial`` or ``error`` (a first try that
    failed), ``retry`` (the same records again), ``bisect`` (a half of a failed batch), ``onFailure``.
    """
    traced = [event for event in events if event.get("type") in {"invocation", "delivery"}]
    if not traced:
        return {"lanes": [], "durationMs": 0, "start": None, "totals": {}}
    start = _instant(traced[0]["time"])
    lanes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    # Failed ranges per parallelization lane: lanes of one shard interleave sequence numbers (ParallelizationFactor).
    failed: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
    totals: dict[str, int] = {}
    for event in traced:
        mapping = mapping_names.get(str(event.get("mapping")), str(event.get("function")))
        key = (mapping, str(event.get("shard")))
        kind, records, detail = _classify(event, failed.setdefault((*key, str(event.get("lane", 0))), []))
        totals[kind] = totals.get(kind, 0) + 1
        lanes.setdefault(key, []).append({"t": round((_instant(event["time"]) - start) * 1000), "kind": kind,
                                          "records": records, "detail": detail})  # fmt: skip
    duration = max((item["t"] for items in lanes.values() for item in items), default=0)
    return {
        "lanes": [{"mapping": mapping, "shard": shard, "events": items}
                  for (mapping, shard), items in sorted(lanes.items())],
        "durationMs": duration,
        "start": traced[0]["time"],
        "totals": totals,
    }


def _classify(event: Mapping[str, Any], failed_ranges: list[tuple[int, int]]) -> tuple[str, int, str]:
    """(kind, records, detail) of one trace line; remembers failed ranges to tell a bisected half."""
    if event["type"] == "delivery":
        info = event.get("batchInfo") or {}
        return "onFailure", int(info.get("batchSize", 0)), f"{event.get('condition')} → {event.get('destination')}"
    numbers = [int(number) for number in event.get("sequenceNumbers") or []]
    outcome = str(event.get("outcome"))
    detail = f"{outcome}, attempt {event.get('attempt')}" + (f": {event['error']}" if event.get("error") else "")
    if not numbers:
        return ("batch" if outcome == "success" else "error"), 0, detail  # a window's final invocation
    span = (min(numbers), max(numbers))
    inside_failed = any(low <= span[0] and span[1] <= high and (low, high) != span for low, high in failed_ranges)
    if outcome != "success":
        failed_ranges.append(span)
    if int(event.get("attempt") or 1) > 1:
        return "retry", len(numbers), detail
    if inside_failed:
        return "bisect", len(numbers), detail
    first_try = "batch" if outcome == "success" else "partial" if outcome == "partial" else "error"
    return first_try, len(numbers), detail


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
