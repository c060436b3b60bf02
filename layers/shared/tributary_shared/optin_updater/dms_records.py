"""AWS DMS change records on a Kinesis target, read as opt-in changes of one source table.

DMS writes one JSON object per record: `data` (the row after the change; the deleted row for a
delete), `metadata` (`record-type` `data` or `control`, `operation`, `schema-name`, `table-name`,
...) and, when the task's BeforeImageSettings enable it, the row before an update under the
task's `FieldName` (commonly `before-image`). Control records (DDL, table creation) and rows of
other tables are skipped and counted; a row of the watched table becomes an `OptInChange`.
A record that claims to be a row but cannot be read is a poison record.

Records are untrusted: whatever the bytes (deep nesting, huge numbers, a list where a string
belongs, lone surrogates), `parse_dms_record` returns a change or a skip, or raises
PoisonRecordError with a reason of bounded length naming the problem; nothing else escapes.
"""

from dataclasses import dataclass
from typing import Any

from tributary_shared.errors import PoisonRecordError
from tributary_shared.payloads import decode_json_object

ROW_OPERATIONS = frozenset({"load", "insert", "update", "delete"})
DEFAULT_BEFORE_IMAGE_FIELD = "before-image"
# A row is far smaller; anything bigger is not a change of the opt-in table.
MAX_RECORD_BYTES = 64 * 1024
# Values quoted in a reason are cut to this: a reason names the problem, it does not echo the record.
MAX_REASON_VALUE_CHARS = 80


@dataclass(frozen=True)
class DmsSource:
    """Which rows to apply: the source table, optionally its schema, and the before-image field."""

    table: str
    schema: str | None = None
    before_image_field: str = DEFAULT_BEFORE_IMAGE_FIELD


@dataclass(frozen=True)
class OptInChange:
    """One row change: after it, `phone` may be messaged only if `opted_in`.

    `previous_phone` is the number the row held before an update that changed it (known only
    from a before image); that number must be opted out as well. `already_opted_in` is true when
    the before image shows this same number opted in already: the update changed something else
    (`lastupdate`, say), so there is no opt-in to apply. Without a before image it is false.
    """

    user_id: str
    operation: str
    phone: str | None
    opted_in: bool
    previous_phone: str | None = None
    already_opted_in: bool = False

    @property
    def numbers(self) -> tuple[str, ...]:
        """Every number this change acts on (as written in the row, valid or not)."""
        return tuple(number for number in (self.previous_phone, self.phone) if number)


@dataclass(frozen=True)
class SkippedRecord:
    """A record that is not a change of the watched table: `reason` says which kind."""

    reason: str


def parse_dms_record(data: bytes, source: DmsSource) -> OptInChange | SkippedRecord:
    """Read one DMS record; raise PoisonRecordError when it is not valid DMS output."""
    document = _json_object(data)
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise PoisonRecordError("DMS record has no metadata object")
    record_type = metadata.get("record-type")
    if record_type is not None and not isinstance(record_type, str):
        raise PoisonRecordError(f"DMS metadata record-type is a {type(record_type).__name__}, not a string")
    if record_type != "data":
        return SkippedRecord(f"{record_type or 'untyped'} record"[:MAX_REASON_VALUE_CHARS])
    if not _is_watched_table(metadata, source):
        return SkippedRecord("other table")
    operation = metadata.get("operation")
    # Checked as a string first: a list or object here is unhashable, so no set lookup can hold it.
    if not isinstance(operation, str) or operation not in ROW_OPERATIONS:
        raise PoisonRecordError(f"DMS data record has unknown operation {operation!r:.{MAX_REASON_VALUE_CHARS}}")
    row = document.get("data")
    if not isinstance(row, dict):
        raise PoisonRecordError(f"DMS {operation} record has no data object")
    return _change(operation, row, document.get(source.before_image_field))


def _json_object(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_RECORD_BYTES:
        raise PoisonRecordError(f"DMS record is {len(data)} bytes, more than {MAX_RECORD_BYTES}")
    return decode_json_object(data, "DMS record")


def _is_watched_table(metadata: dict[str, Any], source: DmsSource) -> bool:
    if metadata.get("table-name") != source.table:
        return False
    return source.schema is None or metadata.get("schema-name") == source.schema


def _change(operation: str, row: dict[str, Any], before_image: Any) -> OptInChange:
    user_id = _user_id(row)
    phone = _phone(row.get("phone"), "phone")
    # A deleted user is someone we no longer know: never message them again.
    opted_in = False if operation == "delete" else _opt_in_flag(row)
    if operation != "update":
        return OptInChange(user_id, operation, phone, opted_in)
    previous = _previous_phone(before_image, phone)
    already = opted_in and _same_number_opted_in(before_image, phone)
    return OptInChange(user_id, operation, phone, opted_in, previous, already_opted_in=already)


def _user_id(row: dict[str, Any]) -> str:
    value = row.get("userid")
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise PoisonRecordError(f"DMS row has no usable userid: {value!r:.{MAX_REASON_VALUE_CHARS}}")
    return str(value)


def _phone(value: Any, column: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise PoisonRecordError(f"DMS row {column} is a {type(value).__name__}, not a phone number")
    return str(value).strip()


def _opt_in_flag(row: dict[str, Any]) -> bool:
    value = row.get("optin")
    # MySQL's TINYINT/BOOLEAN arrive as numbers; some sources send them as strings.
    if value in (1, "1", True):
        return True
    if value in (0, "0", False):
        return False
    raise PoisonRecordError(f"DMS row optin must be 0 or 1, got {value!r:.{MAX_REASON_VALUE_CHARS}}")


def _previous_phone(before_image: Any, phone: str | None) -> str | None:
    # ColumnFilter pk-only images hold the key alone: no phone, nothing to compare.
    if not isinstance(before_image, dict):
        return None
    previous = _phone(before_image.get("phone"), "before-image phone")
    return previous if previous and previous != phone else None


def _same_number_opted_in(before_image: Any, phone: str | None) -> bool:
    # Only a before image holding both columns can show that nothing about the opt-in changed; a
    # malformed one proves nothing, so the opt-in is applied (and checked against the list).
    if not isinstance(before_image, dict) or phone is None:
        return False
    before_phone = before_image.get("phone")
    same_number = isinstance(before_phone, str | int) and str(before_phone).strip() == phone
    return same_number and before_image.get("optin") in (1, "1", True)
