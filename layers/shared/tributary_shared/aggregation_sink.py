"""Where a closed window goes: one UnicornAggregation item and one summary record per unicorn.

Both writes are safe to repeat, because Lambda retries a failed final invocation with the same
state:

- items are keyed `name` + `windowStart` = "<window start>#<shardId>#<segment>", so a retry
  overwrites the same items with the same figures. Lambda keeps windows per shard, and a window it
  ends early continues with a fresh state, so the shard id and the segment (the first sequence
  number folded into the state) keep the parts of one unicorn-minute apart; `combine_items`
  (and `tributary.fleet_queries`) add them up again;
- summary records carry `SummaryId`, a hash of the same key, so a consumer drops repeats.

The summary record is the Flink job's output row (`Name`, `StatusTime` = window start as
"YYYY-MM-DD HH:MM:SS.000", `Distance`, `Min/MaxMagicPoints`, `Min/MaxHealthPoints`) plus
`SummaryId` and `Partial` (true when Lambda ended the window early and this is one segment).
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tributary_shared import aws_clients
from tributary_shared.dynamo_writer import BatchWriter, PendingItem
from tributary_shared.errors import TransientError
from tributary_shared.kinesis_put import put_records
from tributary_shared.window_aggregates import (
    FLINK_TIME_FORMAT,
    UnicornFigures,
    WindowState,
    format_status_time,
    merge_fleet,
    parse_status_time,
)

KEY_ATTRIBUTES = ("name", "windowStart")
KEY_SEPARATOR = "#"
WINDOW_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class WindowKey:
    """Which window of which shard a state belongs to; times are Lambda's "…Z" instants."""

    start: str
    end: str
    shard_id: str

    @classmethod
    def parse(cls, start: Any, end: Any, shard_id: Any) -> "WindowKey":
        if not isinstance(shard_id, str) or not shard_id or KEY_SEPARATOR in shard_id:
            raise ValueError(f"tumbling-window event has no usable shardId: {shard_id!r:.80}")
        return cls(normalize_window_time(start), normalize_window_time(end), shard_id)

    def sort_key(self, segment: int) -> str:
        return KEY_SEPARATOR.join((self.start, self.shard_id, str(segment)))

    @property
    def flink_status_time(self) -> str:
        return f"{datetime.strptime(self.start, WINDOW_TIME_FORMAT).strftime(FLINK_TIME_FORMAT)}.000"


def normalize_window_time(value: Any) -> str:
    """Lambda's window bound ("2026-11-21T12:00:00Z") in one fixed-width form, so keys sort by time."""
    if not isinstance(value, str):
        raise ValueError(f"window bound must be a timestamp string, got {value!r:.80}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError(f"window bound {value!r:.80} is not a timestamp") from error
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime(WINDOW_TIME_FORMAT)


def summary_id(name: str, key: WindowKey, segment: int) -> str:
    """The same for every retry of one unicorn's part of one window; distinct for every other part."""
    identity = "\x1f".join((name, key.start, key.shard_id, str(segment)))
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def aggregation_items(key: WindowKey, state: WindowState, *, partial: bool) -> list[PendingItem]:
    if state.first_sequence is None:
        return []
    segment = state.first_sequence
    return [
        PendingItem(
            ref=name,
            item={
                "name": name,
                "windowStart": key.sort_key(segment),
                "windowEnd": key.end,
                "shardId": key.shard_id,
                "segment": str(segment),
                "partial": partial,
                "statusTime": key.flink_status_time,
                "count": figures.count,
                "distance": figures.distance,
                "minMagicPoints": figures.min_magic_points,
                "maxMagicPoints": figures.max_magic_points,
                "minHealthPoints": figures.min_health_points,
                "maxHealthPoints": figures.max_health_points,
                "firstStatusTime": format_status_time(figures.first_status_ms),
                "lastStatusTime": format_status_time(figures.last_status_ms),
            },
        )
        for name, figures in sorted(state.unicorns.items())
    ]


def summary_record(name: str, figures: UnicornFigures, key: WindowKey, segment: int, *, partial: bool) -> dict:
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


def summary_entries(key: WindowKey, state: WindowState, *, partial: bool) -> list[tuple[str, bytes]]:
    """(partition key, data) per unicorn: keyed by Name, like the input stream, so order holds per unicorn."""
    if state.first_sequence is None:
        return []
    segment = state.first_sequence
    return [
        (name, json.dumps(summary_record(name, figures, key, segment, partial=partial)).encode("utf-8"))
        for name, figures in sorted(state.unicorns.items())
    ]


@dataclass(frozen=True)
class PublishReport:
    items_written: int
    summaries_sent: int
    requests: int


class AggregationSink:
    """Stores a closed window: items first, then summaries; raises unless both are complete."""

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
        items = aggregation_items(key, state, partial=partial)
        written = self.writer.write(items, deadline)
        if written.permanent:
            # Items are built from validated figures, so this is a bug or a changed table: make it loud.
            raise RuntimeError(f"UnicornAggregation rejected items: {_first(written.permanent)}")
        if written.transient:
            raise TransientError(
                f"{len(written.transient)} of {len(items)} aggregation items not written: "
                f"{_first(written.transient)}; the final invocation will be retried"
            )
        sent = put_records(self.kinesis, self.stream_name, summary_entries(key, state, partial=partial))
        if sent.failed:
            failure = sent.failed_entries[0]
            raise TransientError(
                f"{sent.failed} summary records not put on {self.stream_name}: "
                f"{failure.error_code} {failure.error_message}; the final invocation will be retried"
            )
        return PublishReport(len(written.written), sent.sent, written.requests + sent.requests)


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
