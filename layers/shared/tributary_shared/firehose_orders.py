"""Firehose data transformation for the order lake: DynamoDB change records → Glue-typed JSON rows.

Contract (Firehose developer guide, "data transformation"): the response names every input
recordId exactly once with `Ok`, `Dropped` or `ProcessingFailed`, and `data` in base64. `Ok`
records here are one JSON object with exactly the lake table's columns, plus
`metadata.partitionKeys.transaction_date` for dynamic partitioning. Records of other tables are
`Dropped`; undecodable or invalid records are `ProcessingFailed`, which Firehose writes to the
error output prefix with their original data.

Size: a synchronous Lambda response is limited to 6 MB, like the request. Every entry of the
response is smaller than its entry in the request: an `Ok` row holds fewer bytes than the typed
change record it comes from (no type wrappers, no old image, no undeclared attributes), and
`Dropped`/`ProcessingFailed` entries echo the record's data without the Kinesis metadata. So the
response is smaller than the request Lambda accepted, and the template keeps Firehose's Lambda
buffer at 1 MB besides.
"""

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from tributary_shared.dynamodb_images import (
    CHANGE_COLUMNS,
    ORDER_IMAGE_COLUMNS,
    PARTITION_COLUMN,
    deserialize_image,
    format_timestamp,
    image_to_row,
)

OK, DROPPED, FAILED = "Ok", "Dropped", "ProcessingFailed"
CHANGE_TYPES = frozenset({"INSERT", "MODIFY", "REMOVE"})
KEY_ATTRIBUTES = ("order_id", "item_id")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SEQUENCE = re.compile(r"\d{1,129}")


class InvalidChange(ValueError):
    """The record is not a valid change record of the source table."""


@dataclass
class TransformSummary:
    """Counts by result, and the reason of each ProcessingFailed record by recordId."""

    ok: int = 0
    dropped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def transform_order_changes(event: Mapping[str, Any], source_table: str) -> tuple[dict[str, Any], TransformSummary]:
    """Firehose's response for `event`; ValueError if the event itself is not a transformation event."""
    records = event.get("records")
    if not isinstance(records, list) or not all(_has_record_id(record) for record in records):
        raise ValueError('a Firehose transformation event has "records", each with a string "recordId"')
    summary = TransformSummary()
    entries = [transform_record(record, source_table) for record in records]
    for entry in entries:
        _count(entry, summary)
    return {"records": entries}, summary


def _has_record_id(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("recordId"), str)


def transform_record(record: Mapping[str, Any], source_table: str) -> dict[str, Any]:
    """The response entry for one input record."""
    try:
        change = _decode(record.get("data"))
        if change.get("tableName") != source_table:
            return {"recordId": record["recordId"], "result": DROPPED, "data": _original_data(record)}
        row, partition = change_to_row(change, record)
    except InvalidChange as error:
        return _failed_entry(record, str(error))
    data = base64.b64encode(json.dumps(row, separators=(",", ":")).encode()).decode()
    return {
        "recordId": record["recordId"],
        "result": OK,
        "data": data,
        "metadata": {"partitionKeys": {PARTITION_COLUMN.name: partition}},
    }


def _decode(data: Any) -> dict[str, Any]:
    if not isinstance(data, str):
        raise InvalidChange('record has no base64 "data"')
    try:
        change = json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError) as error:
        raise InvalidChange(f"data is not base64-encoded JSON: {error}") from None
    if not isinstance(change, dict) or change.get("eventSource") != "aws:dynamodb":
        raise InvalidChange("data is not a DynamoDB change record (eventSource aws:dynamodb)")
    return change


def change_to_row(change: Mapping[str, Any], record: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The lake row of one change and its transaction_date partition; InvalidChange if it has none."""
    change_type = change.get("eventName")
    if change_type not in CHANGE_TYPES:
        raise InvalidChange(f"eventName {change_type!r} is not one of {sorted(CHANGE_TYPES)}")
    stream_record = change.get("dynamodb")
    if not isinstance(stream_record, dict):
        raise InvalidChange('change record has no "dynamodb" object')
    try:
        values = _item_values(change_type, stream_record)
        row = image_to_row(values, ORDER_IMAGE_COLUMNS)
    except ValueError as error:
        raise InvalidChange(str(error)) from None
    row |= {
        CHANGE_COLUMNS[0].name: change_type,
        CHANGE_COLUMNS[1].name: _change_time(stream_record, record),
        CHANGE_COLUMNS[2].name: _sequence_number(record),
    }
    return row, _partition(values)


def _item_values(change_type: str, stream_record: Mapping[str, Any]) -> dict[str, Any]:
    keys = deserialize_image(stream_record.get("Keys") or {})
    missing = [name for name in KEY_ATTRIBUTES if not isinstance(keys.get(name), str) or not keys[name]]
    if missing:
        raise ValueError(f"Keys lack the string key attributes {missing}")
    # A removed item's last state is its old image; KEYS_ONLY-like records fall back to the keys.
    image_name = "OldImage" if change_type == "REMOVE" else "NewImage"
    image = stream_record.get(image_name)
    if image is None and change_type != "REMOVE":
        raise ValueError(f"{change_type} record has no NewImage")
    return {**deserialize_image(image or {}), **keys}


def _change_time(stream_record: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    created = stream_record.get("ApproximateCreationDateTime")
    if _is_number(created):
        per_second = 1_000_000 if stream_record.get("ApproximateCreationDateTimePrecision") == "MICROSECOND" else 1000
        return _epoch_timestamp("ApproximateCreationDateTime", created, per_second)
    arrival = record.get("approximateArrivalTimestamp")
    if _is_number(arrival):
        return _epoch_timestamp("approximateArrivalTimestamp", arrival, 1000)
    raise InvalidChange("record has neither ApproximateCreationDateTime nor approximateArrivalTimestamp")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _epoch_timestamp(name: str, value: float, per_second: int) -> str:
    """The timestamp of an epoch count of 1/per_second seconds; InvalidChange if no datetime can hold it."""
    try:
        # ValueError: NaN or a year outside 1..9999; OverflowError: too big for a float or a C time_t;
        # OSError: outside the platform's localtime range.
        moment = datetime.fromtimestamp(value / per_second, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidChange(f"{name} {value!r:.40} is not a representable epoch time") from None
    return format_timestamp(moment)


def _sequence_number(record: Mapping[str, Any]) -> str:
    metadata = record.get("kinesisRecordMetadata")
    sequence = metadata.get("sequenceNumber") if isinstance(metadata, dict) else None
    if not isinstance(sequence, str) or not _SEQUENCE.fullmatch(sequence):
        raise InvalidChange("record has no kinesisRecordMetadata.sequenceNumber")
    return sequence


def _partition(values: Mapping[str, Any]) -> str:
    value = values.get(PARTITION_COLUMN.name)
    if not isinstance(value, str) or not _is_date(value):
        raise InvalidChange(f"{PARTITION_COLUMN.name} {value!r} is not a YYYY-MM-DD date (the lake partition)")
    return value


def _is_date(text: str) -> bool:
    try:
        return bool(_DATE.fullmatch(text)) and date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def _failed_entry(record: Mapping[str, Any], reason: str) -> dict[str, Any]:
    # "reason" is not part of Firehose's contract: `_count` moves it into the summary.
    return {"recordId": record["recordId"], "result": FAILED, "data": _original_data(record), "reason": reason}


def _original_data(record: Mapping[str, Any]) -> str:
    data = record.get("data")
    return data if isinstance(data, str) else ""


def _count(entry: dict[str, Any], summary: TransformSummary) -> None:
    if entry["result"] == OK:
        summary.ok += 1
    elif entry["result"] == DROPPED:
        summary.dropped += 1
    else:
        summary.failed[entry["recordId"]] = entry.pop("reason")
