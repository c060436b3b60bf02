"""Load order CSV objects from S3 into the OrderTransactions table, streaming, resumable, idempotent.

- The object is read as a stream (a ranged GET from the resume point), never whole.
- Good rows are written with BatchWriter (BatchWriteItem, 25 per request, retried); an item is the
  full row keyed by (order_id, item_id), so loading a file twice leaves the same table. With
  `write_threads` > 1 a batch's requests run in parallel (a request's time is mostly the round
  trip): the batch is cut into whole requests of 25 distinct keys (`group_into_requests`), each
  holding every row of its keys in file order, so the writer's own collapse keeps the last row of a
  key and 1,000 rows still cost 40 requests. A key is in one request per batch, and a batch's
  requests have all ended before the next batch's are sent, so a key's writes land in file order.
- Bad rows are reported with their line number and reason, in the result and in a rejects object
  next to the source (`<key>.rejects.json`: it does not end in `.csv`, so it cannot re-trigger the
  loader).
- When the invocation's time runs low, the load stops at a line boundary after a written batch
  and returns a continuation request: the same object (pinned by ETag) from that byte and line.
- A load that cannot finish what it was asked (the object was replaced or deleted under a
  continuation, or no progress in several segments) raises LoadFailed, so Lambda retries the
  invocation and then hands its payload (the resume point) to the on-failure destination.
  Only a missing object on a first segment is a no-op: there is nothing to load.
"""

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from tributary_shared import aws_clients
from tributary_shared.csv_orders import (
    KEY_COLUMNS,
    HeaderError,
    Line,
    RejectedRow,
    is_blank,
    iter_lines,
    parse_header,
    parse_row,
    reject,
)
from tributary_shared.dynamo_writer import (
    MAX_BATCH_ITEMS,
    WRITER_CLIENT_SETTINGS,
    BatchWriter,
    PendingItem,
    WriteReport,
)

REJECTS_SUFFIX = ".rejects.json"
READ_CHUNK_BYTES = 256 * 1024
MAX_REJECT_DETAILS = 1000
RESULT_REJECT_SAMPLE = 10
MAX_STALLED_SEGMENTS = 3
# Every segment may start at least one request per batch, so a load always makes progress.
MIN_WRITE_WINDOW_S = aws_clients.CALL_BUDGET_S + 0.5
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


def order_table_writer(table_name: str) -> BatchWriter:
    """The loader's writer to the OrderTransactions table.

    Client-side parameter validation is off: it re-checks every attribute of every 25-item request
    (about half of botocore's own time per BatchWriteItem, measured) for items this module built
    itself, and DynamoDB validates each request anyway (a refused item is reported by its line).
    """
    client = aws_clients.client("dynamodb", **WRITER_CLIENT_SETTINGS)
    return BatchWriter(table_name, KEY_COLUMNS, client=client)


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


@dataclass
class _Batch:
    """Rows and rejects read since the last committed line boundary."""

    rows: list[PendingItem] = field(default_factory=list)
    rejects: list[RejectedRow] = field(default_factory=list)
    end_byte: int = 0
    next_line: int = 1

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejects)


@dataclass
class _Progress:
    """What this segment has committed: everything before (byte, line) is written or rejected."""

    byte: int
    line: int
    columns: tuple[str, ...] | None
    loaded: int = 0
    rejects: list[RejectedRow] = field(default_factory=list)
    rejected: int = 0
    header_error: str | None = None

    def add_rejects(self, rows: list[RejectedRow]) -> None:
        self.rejected += len(rows)
        room = MAX_REJECT_DETAILS - len(self.rejects)
        self.rejects += rows[: max(room, 0)]


class OrderCsvLoader:
    """Loads one order CSV object per `load` call; see the module docstring."""

    def __init__(
        self,
        s3: Any,
        writer: BatchWriter,
        *,
        rows_per_write: int = 500,
        write_threads: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s3 = s3
        self.writer = writer
        self.rows_per_write = rows_per_write
        self.write_threads = write_threads
        self.clock = clock
        self._pool = ThreadPoolExecutor(write_threads, "order-writer") if write_threads > 1 else None

    def load(self, request: LoadRequest, time_left_s: Callable[[], float], margin_s: float) -> LoadResult:
        """Load from `request`'s resume point until the end or until less than `margin_s` is left."""
        result = LoadResult(request.bucket, request.key, request.rows_loaded, request.rows_rejected, request.segment)
        try:
            body, request = self._open(request)
        except _ObjectMissing as missing:
            result.error = str(missing)
            return result
        if body is None:
            return result
        progress = _Progress(request.start_byte, request.start_line, request.columns)
        try:
            stopped = self._stream(body, request, progress, time_left_s, margin_s)
        finally:
            body.close()
        result.rows_loaded += progress.loaded
        result.rows_rejected += progress.rejected
        result.rejects = progress.rejects
        if progress.header_error is not None:
            result.error = f"s3://{request.bucket}/{request.key} cannot be loaded: {progress.header_error}"
        result.rejects_key = self._store_rejects(request, progress, result.rows_rejected)
        if stopped and (request.size is None or progress.byte < request.size):
            self._continue(request, progress, result)
        return result

    def _open(self, request: LoadRequest) -> tuple[Any, LoadRequest]:
        arguments: dict[str, Any] = {"Bucket": request.bucket, "Key": request.key}
        if request.etag:
            arguments["IfMatch"] = request.etag  # every segment reads the same version of the object
        if request.start_byte:
            arguments["Range"] = f"bytes={request.start_byte}-"
        try:
            response = self.s3.get_object(**arguments)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "InvalidRange":
                return None, request
            if code == "NoSuchKey" and _is_first_segment(request):
                raise _ObjectMissing(f"s3://{request.bucket}/{request.key} does not exist") from error
            if code in {"NoSuchKey", "PreconditionFailed", "412"}:
                raise LoadFailed(_gone_reason(code, request), request) from error
            raise
        size = _object_size(response, ranged="Range" in arguments)
        return response["Body"], replace(request, etag=response.get("ETag"), size=size)

    def _stream(
        self,
        body: Any,
        request: LoadRequest,
        progress: _Progress,
        time_left_s: Callable[[], float],
        margin_s: float,
    ) -> bool:
        """Process lines batch by batch; True if stopped early (time, throttling) before the end."""
        lines = iter_lines(body.iter_chunks(READ_CHUNK_BYTES), request.start_byte, request.start_line)
        if progress.columns is None and not self._read_header(lines, progress):
            return False
        columns = progress.columns
        assert columns is not None
        batch = _Batch(end_byte=progress.byte, next_line=progress.line)
        for line in lines:
            self._add_line(batch, line, columns)
            if len(batch) < self.rows_per_write:
                continue
            if not self._commit(batch, progress, time_left_s, margin_s) or time_left_s() < margin_s:
                return True
            batch = _Batch(end_byte=progress.byte, next_line=progress.line)
        return not self._commit(batch, progress, time_left_s, margin_s)

    @staticmethod
    def _read_header(lines: Iterator[Line], progress: _Progress) -> bool:
        """Read the column order from the first line; False if the file is empty or has no valid header."""
        header = next(lines, None)
        if header is None:
            return False
        try:
            progress.columns = parse_header(header)
        except HeaderError as error:
            # Without a valid header no row can be read: the whole file is rejected at line 1.
            progress.header_error = str(error)
            progress.add_rejects([reject(header, progress.header_error)])
            return False
        progress.byte, progress.line = header.end_byte, header.number + 1
        return True

    @staticmethod
    def _add_line(batch: _Batch, line: Line, columns: tuple[str, ...]) -> None:
        batch.end_byte, batch.next_line = line.end_byte, line.number + 1
        if is_blank(line):
            return
        parsed = parse_row(line, columns)
        if isinstance(parsed, RejectedRow):
            batch.rejects.append(parsed)
        else:
            batch.rows.append(PendingItem(ref=str(line.number), item=parsed))

    def _commit(self, batch: _Batch, progress: _Progress, time_left_s: Callable[[], float], margin_s: float) -> bool:
        """Write the batch; False (nothing committed) if some rows could not be written in time."""
        failed_rows: list[RejectedRow] = []
        if batch.rows:
            deadline = self.clock() + max(MIN_WRITE_WINDOW_S, time_left_s() - margin_s)
            report = self._write(batch.rows, deadline)
            if report.transient:
                return False  # the next segment rewrites this batch; rewriting an item is harmless
            failed_rows = [
                RejectedRow(int(ref), f"DynamoDB refused the item: {reason}", "")
                for ref, reason in report.permanent.items()
            ]
            progress.loaded += len(batch.rows) - len(failed_rows)
        progress.add_rejects(sorted(batch.rejects + failed_rows, key=lambda row: row.line))
        progress.byte, progress.line = batch.end_byte, batch.next_line
        return True

    def _write(self, rows: list[PendingItem], deadline: float) -> WriteReport:
        groups = group_into_requests(rows) if self._pool is not None else []
        if self._pool is None or len(groups) <= 1:
            return self.writer.write(rows, deadline)
        futures = [self._pool.submit(self.writer.write, group, deadline) for group in groups]
        # Every request of this batch ends, even when one raises, before the caller moves on: a
        # later batch's row of the same key can never be sent while this one's is still in flight.
        wait(futures)
        return merge_reports(future.result() for future in futures)

    def _store_rejects(self, request: LoadRequest, progress: _Progress, total_rejected: int) -> str | None:
        """Write `<key>.rejects.json` covering every segment so far; remove a stale one on a clean run."""
        key = rejects_key_for(request.key)
        if total_rejected == 0:
            # The bucket is versioned: deleting a key that is not there would still add a delete marker.
            if request.segment == 1 and self._exists(request.bucket, key):
                self.s3.delete_object(Bucket=request.bucket, Key=key)
            return None
        earlier = self._earlier_rejects(request, key)
        document = {
            "source": f"s3://{request.bucket}/{request.key}",
            "etag": request.etag,
            "rows_rejected": total_rejected,
            "rows": (earlier + [row.as_dict() for row in progress.rejects])[:MAX_REJECT_DETAILS],
        }
        document["details_truncated"] = len(document["rows"]) < total_rejected
        self.s3.put_object(
            Bucket=request.bucket,
            Key=key,
            Body=json.dumps(document, indent=1).encode(),
            ContentType="application/json",
        )
        return key

    def _exists(self, bucket: str, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def _earlier_rejects(self, request: LoadRequest, key: str) -> list[dict[str, Any]]:
        if request.segment == 1 or request.rows_rejected == 0:
            return []
        try:
            body = self.s3.get_object(Bucket=request.bucket, Key=key)["Body"].read()
        except ClientError:
            return []
        rows = json.loads(body).get("rows", [])
        return rows if isinstance(rows, list) else []

    @staticmethod
    def _continue(request: LoadRequest, progress: _Progress, result: LoadResult) -> None:
        stalled = request.stalled + 1 if progress.byte == request.start_byte else 0
        if stalled > MAX_STALLED_SEGMENTS:
            raise LoadFailed(
                f"s3://{request.bucket}/{request.key}: no progress in {stalled} consecutive segments"
                " (DynamoDB throttling or too little time per invocation)",
                request,
            )
        result.continuation = replace(
            request,
            start_byte=progress.byte,
            start_line=progress.line,
            columns=progress.columns,
            segment=request.segment + 1,
            stalled=stalled,
            rows_loaded=result.rows_loaded,
            rows_rejected=result.rows_rejected,
        )


def group_into_requests(rows: list[PendingItem]) -> list[list[PendingItem]]:
    """The rows cut into whole BatchWriteItem requests, to be written independently of each other.

    Each group names at most MAX_BATCH_ITEMS distinct keys and holds every row of those keys, in
    file order: BatchWriter collapses them to the last row (and gives the earlier rows its fate), so
    no key is in two groups and each group is one request unless DynamoDB asks for a retry. Keys are
    grouped in the order of their last rows, the order BatchWriter.write chunks a whole batch in.
    The key columns are strings (`csv_orders.to_item`), so equal tuples are exactly equal keys.
    """
    rows_by_key: dict[tuple[str, ...], list[PendingItem]] = {}
    for row in rows:
        key = tuple(row.item[name] for name in KEY_COLUMNS)
        rows_of_key = rows_by_key.pop(key, [])  # re-inserted: the dict keeps keys by their last row
        rows_of_key.append(row)
        rows_by_key[key] = rows_of_key
    grouped = list(rows_by_key.values())
    return [
        [row for rows_of_key in grouped[start : start + MAX_BATCH_ITEMS] for row in rows_of_key]
        for start in range(0, len(grouped), MAX_BATCH_ITEMS)
    ]


def merge_reports(reports: Iterable[WriteReport]) -> WriteReport:
    merged = WriteReport()
    for report in reports:
        merged.written += report.written
        merged.superseded += report.superseded
        merged.transient |= report.transient
        merged.permanent |= report.permanent
        merged.requests += report.requests
    return merged


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


class _ObjectMissing(Exception):
    """A first segment found no object: nothing was asked that could be done."""


def _is_first_segment(request: LoadRequest) -> bool:
    return request.segment == 1 and request.start_byte == 0 and request.etag is None


def _gone_reason(code: str, request: LoadRequest) -> str:
    if code == "NoSuchKey":
        return f"s3://{request.bucket}/{request.key} was deleted after line {request.start_line - 1} was loaded"
    return (
        f"s3://{request.bucket}/{request.key} was replaced after line {request.start_line - 1} was loaded;"
        " the new version's own upload event loads it"
    )


def _object_size(response: Mapping[str, Any], ranged: bool) -> int | None:
    """The whole object's size, None if unknown (a ranged GET's ContentLength is only the range's)."""
    content_range = response.get("ContentRange")
    if isinstance(content_range, str) and content_range.rsplit("/", 1)[-1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.get("ContentLength")
    return length if isinstance(length, int) and not ranged else None
