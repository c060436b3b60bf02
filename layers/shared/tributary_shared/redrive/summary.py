"""The execution's summary, added up one page of messages at a time (the state machine's Tally states).

Figures, over the messages settled in this execution (a message kept in the queue counts in none of
them: the next run redrives it whole):

- reApplied: records the pipeline's function wrote again;
- superseded: records whose item already held that record or a newer one (the function's version
  guard said so): skipped, the newer item untouched;
- appliedUnreported: done by a function whose response does not say which of the two it was;
- quarantined: records that still fail, kept in the quarantine bucket with the reason and attempts;
- lostToRetention: records the stream had expired before the redrive read them (ranges in `lost`).

And per message: settled (deleted, or moved to redriven/), kept (left, with the reason), notSelected
(another pipeline's, when one is asked for), planned (a dry run's).
"""

from collections.abc import Mapping, Sequence
from typing import Any

RECORD_FIGURES = ("reApplied", "superseded", "appliedUnreported", "quarantined", "lostToRetention")
MESSAGE_FIGURES = ("settled", "kept", "notSelected", "planned")
LIST_LIMIT = 100  # entries of each list the summary shows; the rest are counted in `omitted`
MAX_REASON_CHARS = 500  # the summary travels in the execution's state, 256 KB at most
SETTLED, KEPT, NOT_SELECTED, PLANNED = "settled", "kept", "not-selected", "planned"
_MESSAGE_FIGURE = {SETTLED: "settled", KEPT: "kept", NOT_SELECTED: "notSelected", PLANNED: "planned"}


def empty_summary(options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dryRun": bool(options.get("dryRun")),
        "pipeline": options.get("pipeline"),
        **dict.fromkeys(RECORD_FIGURES, 0),
        "wouldReApply": 0,
        "wouldQuarantine": 0,
        "messages": dict.fromkeys(MESSAGE_FIGURES, 0),
        "byPipeline": {},
        "lost": [],
        "kept": [],
        "quarantineObjects": [],
        "planned": [],
        "omitted": {},
        "notes": [],
    }


def tally(state: Mapping[str, Any], results: Sequence[Mapping[str, Any]], source: str,
          truncated: bool = False) -> dict[str, Any]:  # fmt: skip
    """The state after one page: summary added up, receipts of unsettled messages kept, whether to list more."""
    options = state["options"]
    summary = _copy(state["summary"])
    release = list(state.get("release") or [])
    for result in results:
        outcome, settle_error = result["outcome"], result.get("settleError")
        disposition = outcome.get("disposition", KEPT)
        if settle_error is not None and disposition == SETTLED:
            _add_records(summary, outcome)  # applied: only the message could not be removed
            outcome = {**outcome, "disposition": KEPT, "reason": _settle_failure(source, settle_error)}
            disposition = KEPT
        elif disposition == SETTLED:
            _add_records(summary, outcome)
        _add_message(summary, outcome, disposition)
        if source == "sqs" and disposition != SETTLED and result.get("receiptHandle"):
            release.append(result["receiptHandle"])
    total = sum(summary["messages"].values())
    # The queue is read until empty (unsettled messages stay hidden meanwhile); the bucket page by page.
    room = len(release) < options["maxKept"] if source == "sqs" else truncated
    more = bool(results) and total < options["maxMessages"] and room
    if bool(results) and not more and (total >= options["maxMessages"] or len(release) >= options["maxKept"]):
        summary["notes"] = [*summary["notes"], f"stopped listing the {_source_name(source)} after {total} messages "
                            "(maxMessages or maxKept): start another execution for the rest"]  # fmt: skip
    cursor = str(results[-1].get("key", "")) if results and source == "s3" else state.get("cursor", "")
    return {**state, "summary": summary, "release": release, "more": more, "cursor": cursor}


def _add_records(summary: dict[str, Any], outcome: Mapping[str, Any]) -> None:
    counts = outcome.get("counts") or {}
    pipeline = _pipeline_summary(summary, outcome)
    for figure in RECORD_FIGURES:
        summary[figure] += int(counts.get(figure, 0))
        pipeline[figure] += int(counts.get(figure, 0))
    for lost in outcome.get("lost") or []:
        _append(summary, "lost", lost)
    if outcome.get("quarantine"):
        _append(summary, "quarantineObjects", outcome["quarantine"])


def _add_message(summary: dict[str, Any], outcome: Mapping[str, Any], disposition: str) -> None:
    figure = _MESSAGE_FIGURE.get(disposition, "kept")
    summary["messages"][figure] += 1
    if outcome.get("pipeline"):
        _pipeline_summary(summary, outcome)["messages"] += 1
    if figure == "kept":
        reason = str(outcome.get("reason") or "no reason given")[:MAX_REASON_CHARS]
        _append(summary, "kept", {"message": outcome.get("message"), "pipeline": outcome.get("pipeline"),
                                  "reason": reason})  # fmt: skip
    elif figure == "planned":
        plan = outcome.get("plan") or {}
        summary["wouldReApply"] += int(plan.get("wouldReApply", 0))
        summary["wouldQuarantine"] += int(plan.get("wouldQuarantine", 0))
        summary["lostToRetention"] += int(plan.get("lostToRetention", 0))
        _append(summary, "planned", {"message": outcome.get("message"), "pipeline": outcome.get("pipeline"), **plan})


def _pipeline_summary(summary: dict[str, Any], outcome: Mapping[str, Any]) -> dict[str, int]:
    name = str(outcome.get("pipeline") or "unknown")
    return summary["byPipeline"].setdefault(name, {**dict.fromkeys(RECORD_FIGURES, 0), "messages": 0})


def _append(summary: dict[str, Any], name: str, entry: Any) -> None:
    if len(summary[name]) < LIST_LIMIT:
        summary[name].append(entry)
    else:
        summary["omitted"][name] = summary["omitted"].get(name, 0) + 1


def _settle_failure(source: str, error: Mapping[str, Any]) -> str:
    what = "deleting the message" if source == "sqs" else "moving the object to redriven/"
    return (f"every record is settled, but {what} failed ({error.get('Error')}: {error.get('Cause', '')[:200]}); "
            "the next run redrives it again, which changes nothing")  # fmt: skip


def _source_name(source: str) -> str:
    return "on-failure queue" if source == "sqs" else "failed-records bucket"


def _copy(summary: Mapping[str, Any]) -> dict[str, Any]:
    copied = dict(summary)
    for name in ("messages", "omitted"):
        copied[name] = dict(summary.get(name) or {})
    copied["byPipeline"] = {key: dict(value) for key, value in (summary.get("byPipeline") or {}).items()}
    for name in ("lost", "kept", "quarantineObjects", "planned", "notes"):
        copied[name] = list(summary.get(name) or [])
    return copied
