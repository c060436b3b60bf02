"""What the CSV loader is asked to load, and what came of it.

A request names an object and, for a continuation, where to resume in it (byte and line, pinned
to one version of the object by ETag) with the totals so far. Requests come from an S3
notification, a payload written by hand (`{"bucket", "key"}`), or the loader's own continuation,
which it hands to a new invocation when time runs low.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from tributary_shared.orders.csv_rows import RejectedRow

REJECTS_SUFFIX = ".rejects.json"
RESULT_REJECT_SAMPLE = 10
MAX_KEY_LENGTH = 1024


@dataclass(frozen=True)
class LoadRequest:
    """Which object to load and, for a continuation, where to resume and what was done before."""

    bucket: str
    key: str
    start_byte: int = 0
    start_line: int = 1
    columns: tuple[str, ...] | None = None
    etag: str | None = None
    size: int | None = None
    segment: int = 1
    stalled: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "LoadRequest":
        """A request from `{"bucket", "key"}` (by hand) or a continuation payload; ValueError if invalid."""
        if not isinstance(payload, Mapping):
            raise ValueError(f"a load request is a JSON object, not a {type(payload).__name__}")
        bucket, key = payload.get("bucket"), payload.get("key")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise ValueError('a load request needs non-empty strings "bucket" and "key"')
        if len(key) > MAX_KEY_LENGTH:
            raise ValueError(f"key is longer than {MAX_KEY_LENGTH} characters")
        numbers = {name: payload.get(name, default) for name, default in _COUNTERS.items()}
        if any(not isinstance(value, int) or isinstance(value, bool) or value < 0 for value in numbers.values()):
            raise ValueError(f"{', '.join(_COUNTERS)} must be non-negative integers")
        columns = payload.get("columns")
        if columns is not None and not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            raise ValueError('"columns" must be a list of column names')
        if numbers["start_byte"] > 0 and columns is None:
            raise ValueError('a request resuming past byte 0 needs the file\'s "columns"')
        return cls(
            bucket=bucket,
            key=key,
            columns=tuple(columns) if columns is not None else None,
            etag=_optional_str(payload, "etag"),
            size=payload.get("size") if isinstance(payload.get("size"), int) else None,
            **numbers,
        )

    def to_payload(self) -> dict[str, Any]:
        payload = {"bucket": self.bucket, "key": self.key, "etag": self.etag, "size": self.size}
        payload |= {name: getattr(self, name) for name in _COUNTERS}
        payload["columns"] = list(self.columns) if self.columns is not None else None
        return payload


_COUNTERS = {
    "start_byte": 0,
    "start_line": 1,
    "segment": 1,
    "stalled": 0,
    "rows_loaded": 0,
    "rows_rejected": 0,
}


def _optional_str(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) else None


@dataclass
class LoadResult:
    """Totals for the whole object so far (all segments), and what this segment saw."""

    bucket: str
    key: str
    rows_loaded: int = 0
    rows_rejected: int = 0
    segment: int = 1
    continuation: LoadRequest | None = None
    rejects_key: str | None = None
    rejects: list[RejectedRow] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "segment": self.segment,
            "continued": self.continuation is not None,
            "next_start_line": self.continuation.start_line if self.continuation else None,
            "rejects_key": self.rejects_key,
            "rejects": [row.as_dict() for row in self.rejects[:RESULT_REJECT_SAMPLE]],
            "error": self.error,
        }


def requests_from_event(event: Mapping[str, Any]) -> tuple[list[LoadRequest], list[str]]:
    """Load requests from an S3 notification or a direct payload, and the keys skipped (not *.csv)."""
    if "Records" not in event:
        return [LoadRequest.from_payload(event)], []
    records = event["Records"]
    if not isinstance(records, list):
        raise ValueError('"Records" must be a list of S3 event records')
    requests: list[LoadRequest] = []
    skipped: list[str] = []
    for record in records:
        bucket = _nested(record, "s3", "bucket", "name")
        raw_key = _nested(record, "s3", "object", "key")
        if not isinstance(bucket, str) or not isinstance(raw_key, str):
            raise ValueError("an S3 event record lacks s3.bucket.name or s3.object.key")
        key = unquote_plus(raw_key)  # S3 notifications URL-encode object keys
        if key.endswith(".csv"):
            requests.append(LoadRequest(bucket=bucket, key=key))
        else:
            skipped.append(f"s3://{bucket}/{key}")
    return requests, skipped


def _nested(value: Any, *path: str) -> Any:
    """The value at `path` in nested objects, None where any step is missing or not an object."""
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def rejects_key_for(key: str) -> str:
    return key + REJECTS_SUFFIX


class LoadFailed(Exception):
    """The load stopped short of the end of the object; the message names the object and resume point.

    Raised out of the handler so that Lambda retries the invocation and, when retries are used up,
    sends its payload (the request to resume from) to the on-failure destination.
    """

    def __init__(self, reason: str, request: LoadRequest) -> None:
        super().__init__(
            f"{reason}; the rest of the file is not loaded: resume at byte {request.start_byte},"
            f" line {request.start_line} (segment {request.segment})"
        )
        self.request = request


def is_first_segment(request: LoadRequest) -> bool:
    return request.segment == 1 and request.start_byte == 0 and request.etag is None


def gone_reason(code: str, request: LoadRequest) -> str:
    if code == "NoSuchKey":
        return f"s3://{request.bucket}/{request.key} was deleted after line {request.start_line - 1} was loaded"
    return (
        f"s3://{request.bucket}/{request.key} was replaced after line {request.start_line - 1} was loaded;"
        " the new version's own upload event loads it"
    )
