"""PutRecords done right: bounded batches, only the failed entries retried, every record accounted for.

A PutRecords call can succeed for some records and fail for others (throttled shard, KMS
throttling, internal failure). The response lists, in request order, a sequence number or an
error code per record; resending the whole batch would duplicate the records that made it, so
only the failed entries are resent, through the toolkit's retry policy: a few attempts with
exponential backoff and full jitter, and, given a deadline (a function's), no request that could
not end before it. Records that can never be accepted (over the size limit, bad partition key)
are reported without being sent.

Kinesis keeps a partition key's records in the order they arrive. A request carrying two
records of one key could land the second while the first fails and is resent after it, so a
request carries at most one record per partition key; a record whose key is already in the
request waits for the next one, which is sent only once this one's retries are over.
"""

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from tributary_shared.retries import NO_DEADLINE, RetryPolicy

MAX_RECORDS_PER_REQUEST = 500
MAX_BYTES_PER_REQUEST = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256
# Five sends of an entry in all, the first resend after up to 0.2 s.
PUT_RETRY = RetryPolicy(base_s=0.2, cap_s=5.0, max_attempts=5)
# Why an entry taken from the caller was not sent: the error code in its FailedEntry.
NOT_SENT = "NotSent"

# Per-record error codes a later attempt can clear; anything else (KMS key disabled, access
# denied on the key) fails the same way every time.
RETRYABLE_RECORD_ERRORS = frozenset(
    {"ProvisionedThroughputExceededException", "InternalFailure", "KMSThrottlingException"}
)
# Whole-request errors botocore's own retries may not have outlasted.
RETRYABLE_REQUEST_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSThrottlingException",
    }
)


@dataclass(frozen=True)
class FailedEntry:
    """A record that was not written, with the last error Kinesis (or the size check) gave."""

    partition_key: str
    data: bytes
    error_code: str
    error_message: str


@dataclass
class PutReport:
    """What happened to the records: `sent` written, `retried` resends, `failed_entries` not written."""

    sent: int = 0
    retried: int = 0
    requests: int = 0
    failed_entries: list[FailedEntry] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failed_entries)

    def add(self, other: "PutReport") -> None:
        """Fold another report into this one (a producer that puts tick by tick keeps one total)."""
        self.sent += other.sent
        self.retried += other.retried
        self.requests += other.requests
        self.failed_entries.extend(other.failed_entries)


def record_size(partition_key: str, data: bytes) -> int:
    """Bytes a record counts against the per-record and per-request limits (key included)."""
    return len(data) + len(partition_key.encode("utf-8"))


def put_records(
    client: Any,
    stream_name: str,
    entries: Iterable[tuple[str, bytes]],
    *,
    retry: RetryPolicy = PUT_RETRY,
    deadline: float = NO_DEADLINE,
    max_record_bytes: int = MAX_RECORD_BYTES,
    on_progress: Callable[[PutReport], None] | None = None,
    into: PutReport | None = None,
) -> PutReport:
    """Put (partition key, data) entries on `stream_name`; return what was sent, retried and failed.

    Entries are consumed lazily in requests of at most 500 records and 5 MiB, one record per
    partition key (so a key's records land in order even when some are resent). A request whose
    records partly fail is followed by resends of just the failed entries, as `retry` allows;
    `on_progress` is called with the running report after every request. A request that could not
    end by `deadline` is not sent: its entries and every later one count as failed (NotSent).
    `into` is a report to add to (a producer keeping one running total) instead of a new one.
    Errors that are not the stream's fault to retry (missing stream, access denied) propagate, as
    does KeyboardInterrupt; the report then already counts the entries taken but not confirmed
    written as failed (NotSent), so a caller's totals stay right.
    """
    report = PutReport() if into is None else into
    valid = _valid_entries(entries, report, max_record_bytes)
    waiting: deque[tuple[str, bytes]] = deque()  # entries read ahead, in their original order
    pending: list[tuple[str, bytes]] = []
    try:
        while pending := _next_request(valid, waiting):
            if not retry.call_fits(deadline):
                reason = "not sent: the deadline left no time for another request"
                unsent = [*pending, *waiting, *valid]
                report.failed_entries += [FailedEntry(key, data, NOT_SENT, reason) for key, data in unsent]
                return report
            _put_with_retries(client, stream_name, pending, report, retry, deadline, on_progress)
    except BaseException as error:
        reason = f"not confirmed written: {type(error).__name__} stopped the put"
        report.failed_entries += [FailedEntry(key, data, NOT_SENT, reason) for key, data in [*pending, *waiting]]
        raise
    return report


def _put_with_retries(
    client: Any,
    stream_name: str,
    batch: list[tuple[str, bytes]],
    report: PutReport,
    retry: RetryPolicy,
    deadline: float,
    on_progress: Callable[[PutReport], None] | None,
) -> None:
    """Send one request, then resend its retryable failures while `retry` and the deadline allow.

    `batch` is emptied as its entries are settled, so an interrupted put knows what is left.
    """
    calls = 0
    while batch:
        retryable = _send(client, stream_name, batch, report)
        calls += 1
        if on_progress:
            on_progress(report)
        batch[:] = [(failure.partition_key, failure.data) for failure in retryable]
        if not batch:
            return
        if not retry.wait_before_retry(calls, deadline):
            report.failed_entries += retryable
            batch.clear()
            if on_progress:
                on_progress(report)
            return
        report.retried += len(batch)


def _next_request(valid: Iterator[tuple[str, bytes]], waiting: deque[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Take the next request's entries from `waiting`, then `valid`; leave the rest in `waiting`.

    An entry whose key is already in the request is set aside (at most one request's worth, so
    a stream of one key does not buffer without bound) and goes back, in order, for the next one.
    """
    batch: list[tuple[str, bytes]] = []
    keys: set[str] = set()
    batch_bytes = 0
    set_aside: list[tuple[str, bytes]] = []
    while len(batch) < MAX_RECORDS_PER_REQUEST and len(set_aside) < MAX_RECORDS_PER_REQUEST:
        entry = waiting.popleft() if waiting else next(valid, None)
        if entry is None:
            break
        partition_key, data = entry
        if partition_key in keys:
            set_aside.append(entry)
            continue
        size = record_size(partition_key, data)
        if batch and batch_bytes + size > MAX_BYTES_PER_REQUEST:
            waiting.appendleft(entry)
            break
        batch.append(entry)
        keys.add(partition_key)
        batch_bytes += size
    waiting.extendleft(reversed(set_aside))
    return batch


def _valid_entries(
    entries: Iterable[tuple[str, bytes]], report: PutReport, max_record_bytes: int
) -> Iterator[tuple[str, bytes]]:
    """The entries Kinesis can accept; the others go straight to the report's failures."""
    for partition_key, data in entries:
        problem = _invalid(partition_key, data, max_record_bytes)
        if problem:
            report.failed_entries.append(FailedEntry(partition_key, data, *problem))
        else:
            yield partition_key, data


def _invalid(partition_key: str, data: bytes, max_record_bytes: int) -> tuple[str, str] | None:
    if not 1 <= len(partition_key) <= MAX_PARTITION_KEY_CHARS:
        return (
            "InvalidPartitionKey",
            f"partition key must be 1..{MAX_PARTITION_KEY_CHARS} characters, got {len(partition_key)}",
        )
    size = record_size(partition_key, data)
    if size > max_record_bytes:
        return (
            "RecordTooLarge",
            f"record is {size} bytes (data + partition key); Kinesis accepts at most {max_record_bytes}",
        )
    return None


def _send(client: Any, stream_name: str, batch: list[tuple[str, bytes]], report: PutReport) -> list[FailedEntry]:
    """One PutRecords call; the entries that failed in a way worth resending, with their errors."""
    report.requests += 1
    try:
        response = client.put_records(
            StreamName=stream_name,
            Records=[{"PartitionKey": key, "Data": data} for key, data in batch],
        )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        if code not in RETRYABLE_REQUEST_ERRORS:
            raise
        results = [{"ErrorCode": code, "ErrorMessage": str(error)}] * len(batch)
    except (EndpointUnreachable, ReadTimeoutError) as error:
        results = [{"ErrorCode": type(error).__name__, "ErrorMessage": str(error)}] * len(batch)
    else:
        results = response["Records"]
    retryable: list[FailedEntry] = []
    for (partition_key, data), result in zip(batch, results, strict=True):
        code = result.get("ErrorCode")
        if not code:
            report.sent += 1
            continue
        failure = FailedEntry(partition_key, data, code, result.get("ErrorMessage", ""))
        if code in RETRYABLE_RECORD_ERRORS | RETRYABLE_REQUEST_ERRORS:
            retryable.append(failure)
        else:
            report.failed_entries.append(failure)
    return retryable
