"""Where a closed window goes: one UnicornAggregation item and one summary record per unicorn.

Both writes are safe to repeat, because Lambda retries a failed final invocation with the same
state:

- items are keyed `name` + `windowStart` = "<window start>#<shardId>#<segment>", so a retry
  overwrites the same items with the same figures. Lambda keeps windows per shard, and a window it
  ends early continues with a fresh state, so the shard id and the segment (the first sequence
  number folded into the state, with its subsequence number when it is a user record of a KPL
  aggregate: "<sequence>:<subsequence>") keep the parts of one unicorn-minute apart; `combine_items`
  (and `tributary.fleet_queries`) add them up again. Each item's `recordVersion` is
  `kinesis_batch.record_version` of the state's high-water mark: the last record folded into it;
- summary records carry `SummaryId`, a hash of the same key, so a consumer drops repeats.

The summary record is the Flink job's output row (`Name`, `StatusTime` = window start as
"YYYY-MM-DD HH:MM:SS.000", `Distance`, `Min/MaxMagicPoints`, `Min/MaxHealthPoints`) plus
`SummaryId` and `Partial` (true when Lambda ended the window early and this is one segment).

Storing a window never fails because of what one row holds: a row that cannot be stored (set aside
while folding, found malformed now, or refused by DynamoDB) is kept, as it was, in a *quarantined*
item, and the other rows are stored as usual. So is a whole `state` the function cannot read. A
quarantined item's key cannot collide with a unicorn's: `name` is "#quarantine" and `windowStart`
"quarantine#<window start>#<shardId>#<what>#<part>", which no real sort key (they start with a
digit) equals, and no window prefix query matches. What was set aside is stored as ASCII JSON
text (lone surrogates escaped) in parts of 300,000 characters, so each item stays well under
DynamoDB's 400 KB; past 32 parts (9.6 MB, more than Lambda's 6 MB event can carry) the text is
truncated and the items say so (`truncated`, with the full length and SHA-256 of the text). Every
part also carries `parts` and `sha256`, so a reader can put them together and check them.
"""

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tributary_shared import aws_clients
from tributary_shared.aggregator.figures import UnicornFigures, merge_fleet
from tributary_shared.aggregator.readings import (
    FLINK_TIME_FORMAT,
    describe_value,
    format_status_time,
    parse_status_time,
)
from tributary_shared.aggregator.window_state import STATE_VERSION, SetAsideRow, UnreadableState, WindowState
from tributary_shared.dynamo_writer import BatchWriter, PendingItem
from tributary_shared.errors import TransientError
from tributary_shared.kinesis_put import put_records

KEY_ATTRIBUTES = ("name", "windowStart")
KEY_SEPARATOR = "#"
WINDOW_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Kinesis' ShardId: 1..128 characters of [a-zA-Z0-9_.-], so never the key separator.
SHARD_ID_PATTERN = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
QUARANTINE_NAME = "#quarantine"
QUARANTINE_PREFIX = "quarantine"
QUARANTINE_PART_CHARS = 300_000
MAX_QUARANTINE_PARTS = 32
MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class WindowKey:
    """Which window of which shard a state belongs to; times are Lambda's "…Z" instants."""

    start: str
    end: str
    shard_id: str

    @classmethod
    def parse(cls, start: Any, end: Any, shard_id: Any) -> "WindowKey":
        if not isinstance(shard_id, str) or not SHARD_ID_PATTERN.fullmatch(shard_id):
            raise ValueError(f"tumbling-window event has no usable shardId: {describe_value(shard_id)}")
        return cls(normalize_window_time(start), normalize_window_time(end), shard_id)

    def sort_key(self, segment: int | str) -> str:
        return KEY_SEPARATOR.join((self.start, self.shard_id, str(segment)))

    def quarantine_sort_key(self, what: str, part: int) -> str:
        return KEY_SEPARATOR.join((QUARANTINE_PREFIX, self.start, self.shard_id, what, f"{part:02d}"))

    @property
    def flink_status_time(self) -> str:
        return f"{datetime.strptime(self.start, WINDOW_TIME_FORMAT).strftime(FLINK_TIME_FORMAT)}.000"


def normalize_window_time(value: Any) -> str:
    """Lambda's window bound ("2026-11-21T12:00:00Z") in one fixed-width form, so keys sort by time."""
    if not isinstance(value, str):
        raise ValueError(f"window bound must be a timestamp string, got {describe_value(value)}")
    try:
        moment = datetime.fromisoformat(value)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"window bound {describe_value(value)} is not a timestamp of years 1..9999") from error
    return moment.strftime(WINDOW_TIME_FORMAT)


def summary_id(name: str, key: WindowKey, segment: int | str) -> str:
    """The same for every retry of one unicorn's part of one window; distinct for every other part."""
    identity = "\x1f".join((name, key.start, key.shard_id, str(segment)))
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def _state_version(state: WindowState) -> str:
    if state.version is None:
        raise ValueError("a window state holding rows has a high-water mark")
    return state.version


def aggregation_items(
    key: WindowKey, state: WindowState, figures: Mapping[str, UnicornFigures], *, partial: bool
) -> list[PendingItem]:
    """One item per unicorn of `figures` (storable rows of `state`), keyed by the state's segment."""
    if state.segment is None or not figures:
        return []
    segment, version = state.segment, _state_version(state)
    return [
        PendingItem(
            ref=name,
            item={
                "name": name,
                "windowStart": key.sort_key(segment),
                "windowEnd": key.end,
                "shardId": key.shard_id,
                "segment": segment,
                "partial": partial,
                "statusTime": key.flink_status_time,
                "count": unicorn.count,
                "distance": unicorn.distance,
                "minMagicPoints": unicorn.min_magic_points,
                "maxMagicPoints": unicorn.max_magic_points,
                "minHealthPoints": unicorn.min_health_points,
                "maxHealthPoints": unicorn.max_health_points,
                "firstStatusTime": format_status_time(unicorn.first_status_ms),
                "lastStatusTime": format_status_time(unicorn.last_status_ms),
                "recordVersion": version,
            },
        )
        for name, unicorn in sorted(figures.items())
    ]


def summary_record(name: str, figures: UnicornFigures, key: WindowKey, segment: str, *, partial: bool) -> dict:
    return {
        "Name": name,
        "StatusTime": key.flink_status_time,
        "Distance": _json_number(figures.distance),
        "MinMagicPoints": _json_number(figures.min_magic_points),
        "MaxMagicPoints": _json_number(figures.max_magic_points),
        "MinHealthPoints": _json_number(figures.min_health_points),
        "MaxHealthPoints": _json_number(figures.max_health_points),
        "SummaryId": summary_id(name, key, segment),
        "Partial": partial,
    }


def _json_number(number: Decimal) -> int | float:
    return int(number) if number == number.to_integral_value() else float(number)


def summary_entries(
    key: WindowKey, state: WindowState, figures: Mapping[str, UnicornFigures], *, partial: bool
) -> list[tuple[str, bytes]]:
    """(partition key, data) per unicorn: keyed by Name, like the input stream, so order holds per unicorn."""
    segment = state.segment
    if segment is None:
        return []
    return [
        (name, json.dumps(summary_record(name, unicorn, key, segment, partial=partial)).encode("utf-8"))
        for name, unicorn in sorted(figures.items())
    ]


def quarantine_text(value: Any) -> str:
    """What was set aside as JSON text DynamoDB can store: ASCII, lone surrogates escaped."""
    try:
        return json.dumps(value, ensure_ascii=True, default=str)
    except (RecursionError, ValueError, TypeError) as error:
        # Only a Python object that JSON never produces gets here (Lambda hands the function JSON).
        return json.dumps({"unserializable": describe_value(value), "error": f"{type(error).__name__}: {error}"})


@dataclass(frozen=True)
class QuarantineReport:
    """Where something set aside was stored, for the log."""

    sort_key_prefix: str
    parts: int
    chars: int
    truncated: bool
    reason: str


def quarantine_items(
    key: WindowKey, what: str, text: str, reason: str, version: str | None
) -> tuple[list[PendingItem], QuarantineReport]:
    """`text` split into quarantined items of `key`'s window (see the module docstring)."""
    kept = text[: QUARANTINE_PART_CHARS * MAX_QUARANTINE_PARTS]
    parts = [kept[start : start + QUARANTINE_PART_CHARS] for start in range(0, len(kept), QUARANTINE_PART_CHARS)]
    parts = parts or [""]
    reason = reason[:MAX_REASON_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
    common: dict[str, Any] = {
        "name": QUARANTINE_NAME,
        "quarantined": True,
        "what": what,
        "windowEnd": key.end,
        "shardId": key.shard_id,
        "reason": reason,
        "parts": len(parts),
        "chars": len(text),
        "sha256": hashlib.sha256(text.encode("ascii")).hexdigest(),
        "truncated": len(kept) < len(text),
    }
    if version is not None:
        common["recordVersion"] = version
    items = [
        PendingItem(
            ref=f"{QUARANTINE_PREFIX}:{what}:{index}",
            item={**common, "windowStart": key.quarantine_sort_key(what, index), "part": index, "text": part},
        )
        for index, part in enumerate(parts)
    ]
    prefix = key.quarantine_sort_key(what, 0)[:-2]
    return items, QuarantineReport(prefix, len(parts), len(text), common["truncated"], reason)


@dataclass(frozen=True)
class PublishReport:
    items_written: int
    summaries_sent: int
    requests: int
    rows_quarantined: int = 0
    quarantine: QuarantineReport | None = None


class AggregationSink:
    """Stores a closed window: items first, then rows set aside, then summaries; raises unless all are complete."""

    def __init__(self, table_name: str, stream_name: str, *, dynamodb: Any = None, kinesis: Any = None) -> None:
        self.stream_name = stream_name
        self.writer = BatchWriter(table_name, KEY_ATTRIBUTES, client=dynamodb)
        self._kinesis = kinesis

    @property
    def kinesis(self) -> Any:
        # Created on first use, without botocore's own retries: put_records retries the failed entries.
        if self._kinesis is None:
            self._kinesis = aws_clients.client("kinesis")
        return self._kinesis

    def publish(self, key: WindowKey, state: WindowState, *, partial: bool, deadline: float) -> PublishReport:
        closing = state.closing_figures()
        items = aggregation_items(key, state, closing.figures, partial=partial)
        written = self.writer.write(items, deadline)
        _raise_unless_written(written.transient, len(items), "aggregation items")
        # Rows are validated before they become items, so DynamoDB should refuse none; if it does,
        # the row is quarantined like any other it cannot take, instead of failing every retry.
        refused = [
            SetAsideRow(name, state.rows[name], f"UnicornAggregation refused the item: {reason}")
            for name, reason in written.permanent.items()
        ]
        set_aside = [*closing.set_aside, *refused]
        requests = written.requests
        quarantine = None
        if set_aside:
            quarantine, quarantine_requests = self._store_set_aside_rows(key, state, set_aside, deadline)
            requests += quarantine_requests
        stored = {name: figures for name, figures in closing.figures.items() if name not in written.permanent}
        entries = summary_entries(key, state, stored, partial=partial)
        sent = put_records(self.kinesis, self.stream_name, entries, deadline=deadline)
        if sent.failed:
            failure = sent.failed_entries[0]
            raise TransientError(
                f"{sent.failed} summary records not put on {self.stream_name}: "
                f"{failure.error_code} {failure.error_message}; the final invocation will be retried"
            )
        return PublishReport(len(written.written), sent.sent, requests + sent.requests, len(set_aside), quarantine)

    def _store_set_aside_rows(
        self, key: WindowKey, state: WindowState, rows: Sequence[SetAsideRow], deadline: float
    ) -> tuple[QuarantineReport, int]:
        segment = state.segment or "none"
        payload = {
            "v": STATE_VERSION,
            "segment": segment,
            "highWaterMark": state.high_water_mark,
            "rows": [row.to_json() for row in rows],
        }
        reason = f"{len(rows)} unicorn rows could not be stored; the first: {rows[0].reason}"
        return self._store_quarantined(key, f"rows-{segment}", payload, reason, state.version, deadline)

    def quarantine_state(self, key: WindowKey, unreadable: UnreadableState, deadline: float) -> QuarantineReport:
        """Store a state the function cannot read, raw; TransientError if it could not be stored yet."""
        text = quarantine_text(unreadable.raw)
        what = f"state-{hashlib.sha256(text.encode('ascii')).hexdigest()[:16]}"
        report, _ = self._store_quarantined(
            key, what, unreadable.raw, unreadable.reason, unreadable.fresh.version, deadline
        )
        return report

    def _store_quarantined(
        self, key: WindowKey, what: str, value: Any, reason: str, version: str | None, deadline: float
    ) -> tuple[QuarantineReport, int]:
        items, report = quarantine_items(key, what, quarantine_text(value), reason, version)
        written = self.writer.write(items, deadline)
        if written.permanent:
            # ASCII text in parts well under the item limit: a refusal is the table's or the deployment's.
            raise RuntimeError(f"UnicornAggregation refused a quarantined item: {_first(written.permanent)}")
        _raise_unless_written(written.transient, len(items), "quarantined items")
        return report, written.requests


def _raise_unless_written(transient: Mapping[str, str], total: int, what: str) -> None:
    if transient:
        raise TransientError(
            f"{len(transient)} of {total} {what} not written: {_first(transient)}; the invocation will be retried"
        )


def _first(failures: Mapping[str, str]) -> str:
    ref, reason = next(iter(failures.items()))
    return f"{ref}: {reason}"


@dataclass(frozen=True)
class UnicornMinute:
    """One unicorn's figures for one window, all shards and segments combined."""

    name: str
    window_start: str
    figures: UnicornFigures
    parts: int
    partial: bool


def figures_from_item(item: Mapping[str, Any]) -> UnicornFigures:
    """An UnicornAggregation item (plain Python values, as TypeDeserializer gives) → its figures."""
    return UnicornFigures(
        int(item["count"]),
        Decimal(item["distance"]),
        Decimal(item["minMagicPoints"]),
        Decimal(item["maxMagicPoints"]),
        Decimal(item["minHealthPoints"]),
        Decimal(item["maxHealthPoints"]),
        parse_status_time(item["firstStatusTime"]),
        parse_status_time(item["lastStatusTime"]),
    )


def window_start_of(item: Mapping[str, Any]) -> str:
    return str(item["windowStart"]).split(KEY_SEPARATOR, 1)[0]


def combine_items(items: Sequence[Mapping[str, Any]]) -> list[UnicornMinute]:
    """Per-shard / per-segment items → one row per unicorn and window, sorted by window then name."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for item in items:
        if item.get("quarantined"):
            continue  # rows set aside are kept for people to look at, never added to the figures
        groups.setdefault((window_start_of(item), str(item["name"])), []).append(item)
    rows = []
    for (window_start, name), parts in sorted(groups.items()):
        fleet: dict[str, UnicornFigures] = {}
        for part in parts:
            fleet = merge_fleet(fleet, {name: figures_from_item(part)})
        rows.append(
            UnicornMinute(name, window_start, fleet[name], len(parts), any(bool(p.get("partial")) for p in parts))
        )
    return rows
