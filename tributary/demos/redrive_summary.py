"""The redrive state machine's summary, as `tributary redrive` and the demo print it.

The summary is the execution's output (tributary_shared.redrive.summary): record figures over the
messages settled, message figures, and per pipeline; the lists name what was lost, kept and planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STATE_MACHINE_NAME = "tributary-redrive"
SHOWN_OBJECTS = 3
FIGURES = (
    ("reApplied", "re-applied"),
    ("superseded", "skipped, superseded by a newer item"),
    ("appliedUnreported", "applied, the function does not say whether superseded"),
    ("quarantined", "quarantined"),
    ("lostToRetention", "lost to retention"),
)


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The summary in a few lines: figures, per pipeline, then what was kept, lost and (dry run) planned."""
    messages = summary.get("messages") or {}
    lines = [
        "dry run: nothing re-applied, nothing deleted" if summary.get("dryRun") else "records of the settled messages:",
    ]
    if summary.get("dryRun"):
        lines.append(f"  would re-apply {summary.get('wouldReApply', 0)} records, would quarantine "
                     f"{summary.get('wouldQuarantine', 0)}, {summary.get('lostToRetention', 0)} lost to retention")
    else:  # the figure for functions that do not report superseded records only when there are some
        shown = [(key, label) for key, label in FIGURES if summary.get(key) or key != "appliedUnreported"]
        lines += [f"  {summary.get(key, 0):>5} {label}" for key, label in shown]
    lines.append(
        f"messages: {messages.get('settled', 0)} settled, {messages.get('kept', 0)} kept, "
        f"{messages.get('notSelected', 0)} of other pipelines left, {messages.get('planned', 0)} planned"
    )
    for name, figures in sorted((summary.get("byPipeline") or {}).items()):
        shown = ", ".join(f"{figures[key]} {label.split(',')[0]}" for key, label in FIGURES if figures.get(key))
        lines.append(f"  {name}: {figures.get('messages', 0)} messages{': ' + shown if shown else ''}")
    lines += [f"kept {item.get('message')} ({item.get('pipeline') or 'no pipeline'}): {item.get('reason')}"
              for item in summary.get("kept") or []]  # fmt: skip
    lines += [f"lost to retention: {item['records']} records of {item['streamArn'].rsplit('/', 1)[-1]} "
              f"{item['shardId']} {item['from']}..{item['to']}" for item in summary.get("lost") or []]  # fmt: skip
    for plan in summary.get("planned") or []:
        counts = ", ".join(f"{plan[key]} {word}" for key, word in
                           (("wouldReApply", "to re-apply"), ("wouldQuarantine", "to quarantine"),
                            ("lostToRetention", "lost")) if plan.get(key))  # fmt: skip
        lines.append(f"would redrive {plan.get('describe')} ({plan.get('pipeline')}): {counts or 'nothing'}")
    objects = summary.get("quarantineObjects") or []
    lines += [f"quarantine: {uri}" for uri in objects[:SHOWN_OBJECTS]]
    if len(objects) > SHOWN_OBJECTS:
        lines.append(f"quarantine: {len(objects) - SHOWN_OBJECTS} more objects under the same prefix")
    lines += [f"note: {note}" for note in summary.get("notes") or []]
    lines += [f"({count} more {name} not listed)" for name, count in (summary.get("omitted") or {}).items()]
    return lines
