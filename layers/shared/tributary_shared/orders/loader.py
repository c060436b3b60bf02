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

from botocore.exceptions import ClientError

from tributary_shared.dynamo_writer import (
    MAX_BATCH_ITEMS,
    BatchWriter,
    PendingItem,
    WriteReport,
)
from tributary_shared.orders.csv_rows import (
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
from tributary_shared.orders.load_request import (
    LoadFailed,
    LoadRequest,
    LoadResult,
    gone_reason,
    is_first_segment,
    rejects_key_for,
)
from tributary_shared.retries import CALL_BUDGET_S

READ_CHUNK_BYTES = 256 * 1024
MAX_REJECT_DETAILS = 1000
MAX_STALLED_SEGMENTS = 3
# Every segment may start at least one request per batch, so a load always makes progress.
MIN_WRITE_WINDOW_S = CALL_BUDGET_S + 0.5


def order_table_writer(table_name: str) -> BatchWriter:
    """The loader's writer to the OrderTransactions table (its client: `BatchWriter`'s, created on first use)."""
    return BatchWriter(table_name, KEY_COLUMNS)


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
            if code == "NoSuchKey" and is_first_segment(request):
                raise _ObjectMissing(f"s3://{request.bucket}/{request.key} does not exist") from error
            if code in {"NoSuchKey", "PreconditionFailed", "412"}:
                raise LoadFailed(gone_reason(code, request), request) from error
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
    The key columns are strings (`csv_rows.to_item`), so equal tuples are exactly equal keys.
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


class _ObjectMissing(Exception):
    """A first segment found no object: nothing was asked that could be done."""


def _object_size(response: Mapping[str, Any], ranged: bool) -> int | None:
    """The whole object's size, None if unknown (a ranged GET's ContentLength is only the range's)."""
    content_range = response.get("ContentRange")
    if isinstance(content_range, str) and content_range.rsplit("/", 1)[-1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.get("ContentLength")
    return length if isinstance(length, int) and not ranged else None
