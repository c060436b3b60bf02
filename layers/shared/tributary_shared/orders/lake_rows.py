"""Firehose data transformation for the order lake: DynamoDB change records → Glue-typed JSON rows.

Contract (Firehose developer guide, "data transformation"): the response names every input
recordId exactly once with `Ok`, `Dropped` or `ProcessingFailed`, and `data` in base64. `Ok`
records here are one JSON object with exactly the lake table's columns, plus
`metadata.partitionKeys.transaction_date` for dynamic partitioning. Records of other tables are
`Dropped`; undecodable or invalid records are `ProcessingFailed`, which Firehose writes to the
error output prefix with their original data.

Records are untrusted. Whatever a record holds (bytes that are not base64 or JSON, nesting too
deep to parse, integers past 4,300 digits, a list where a string belongs, typed values DynamoDB
could not hold, lone surrogates), it gets its own `ProcessingFailed` with a reason naming the
problem; no record's content can fail the invocation.

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
from decimal import Decimal
from typing import Any

from tributary_shared.errors import PoisonRecordError
from tributary_shared.orders.images import (
    CHANGE_COLUMNS,
    ORDER_IMAGE_COLUMNS,
    PARTITION_COLUMN,
    QUOTE_CHARS,
    deserialize_image,
    format_timestamp,
    image_to_row,
)
from tributary_shared.payloads import decode_json_object

OK, DROPPED, FAILED = "Ok", "Dropped", "ProcessingFailed"
CHANGE_TYPES = frozenset({"INSERT", "MODIFY", "REMOVE"})
KEY_ATTRIBUTES = ("order_id", "item_id")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SEQUENCE = re.compile(r"[0-9]{1,129}")
# A failure reason names the problem; it never carries the record (which goes to the error prefix whole).
MAX_REASON_CHARS = 300


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
        data = _row_data(row)
    except InvalidChange as error:
        return _failed_entry(record, str(error))
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
        change = decode_json_object(base64.b64decode(data, validate=True), "change record")
    except (binascii.Error, ValueError) as error:  # ValueError: characters outside base64's alphabet
        raise InvalidChange(f"data is not base64: {error}") from None
    except PoisonRecordError as error:
        raise InvalidChange(error.reason[:MAX_REASON_CHARS]) from None
    if change.get("eventSource") != "aws:dynamodb":
        raise InvalidChange("data is not a DynamoDB change record (eventSource aws:dynamodb)")
    return change


def _row_data(row: Mapping[str, Any]) -> str:
    """The row as base64 UTF-8 JSON. Not ASCII-escaped, so a row never outgrows the record it came from."""
    try:
        return base64.b64encode(json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()).decode()
    except UnicodeEncodeError as error:  # parse_json refuses lone surrogates; any other source fails its record only
        raise InvalidChange(f"row holds text that is not valid Unicode: {error.reason}") from None


def change_to_row(change: Mapping[str, Any], record: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The lake row of one change and its transaction_date partition; InvalidChange if it has none."""
    change_type = change.get("eventName")
    # Checked as a string first: a list or object is unhashable, so no set lookup can hold it.
    if not isinstance(change_type, str) or change_type not in CHANGE_TYPES:
        raise InvalidChange(f"eventName {change_type!r:.{QUOTE_CHARS}} is not one of {sorted(CHANGE_TYPES)}")
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
    keys = deserialize_image(stream_record.get("Keys", {}), "Keys")
    missing = [name for name in KEY_ATTRIBUTES if not isinstance(keys.get(name), str) or not keys[name]]
    if missing:
        raise ValueError(f"Keys lack the string key attributes {missing}")
    # A removed item's last state is its old image; KEYS_ONLY-like records fall back to the keys.
    image_name = "OldImage" if change_type == "REMOVE" else "NewImage"
    image = stream_record.get(image_name)
    if image is None and change_type != "REMOVE":
        raise ValueError(f"{change_type} record has no NewImage")
    return {**deserialize_image(image if image is not None else {}, image_name), **keys}


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
    # Decimal: the change record's JSON is parsed with exact decimals.
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _epoch_timestamp(name: str, value: float | Decimal, per_second: int) -> str:
    """The timestamp of an epoch count of 1/per_second seconds; InvalidChange if no datetime can hold it."""
    try:
        # ValueError: NaN or a year outside 1..9999; OverflowError: too big for a float or a C time_t;
        # OSError: outside the platform's localtime range.
        moment = datetime.fromtimestamp(float(value) / per_second, tz=UTC)
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
        raise InvalidChange(
            f"{PARTITION_COLUMN.name} {value!r:.{QUOTE_CHARS}} is not a YYYY-MM-DD date (the lake partition)"
        )
    return value


def _is_date(text: str) -> bool:
    try:
        return bool(_DATE.fullmatch(text)) and date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def _failed_entry(record: Mapping[str, Any], reason: str) -> dict[str, Any]:
    # "reason" is not part of Firehose's contract: `_count` moves it into the summary.
    reason = reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."
    return {"recordId": record["recordId"], "result": FAILED, "data": _original_data(record), "reason": reason}


def _original_data(record: Mapping[str, Any]) -> str:
    # Only text that can be base64 is echoed: anything else (a lone surrogate, say) would break the response.
    data = record.get("data")
    return data if isinstance(data, str) and data.isascii() else ""


def _count(entry: dict[str, Any], summary: TransformSummary) -> None:
    if entry["result"] == OK:
        summary.ok += 1
    elif entry["result"] == DROPPED:
        summary.dropped += 1
    else:
        summary.failed[entry["recordId"]] = entry.pop("reason")
