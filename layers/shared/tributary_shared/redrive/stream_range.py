"""A dead-lettered batch read back from its shard, as the event records Lambda would send for it.

`GetShardIterator AT_SEQUENCE_NUMBER` at the batch's first record, then `GetRecords` until a record
past its last one (or the end of a closed shard, or the shard's tip). Kinesis keeps a record for
the stream's retention period only, trimming from the oldest: records of the batch it no longer
holds are *lost to retention*. They are counted (the batch's size less the records found) and
their range reported, never passed over. A sequence number already trimmed may be refused as an
iterator position; the read then starts at the shard's oldest record. A shard the stream no
longer has lost all of its records; a stream that no longer exists is `StreamGone`, and the
message that names it is kept.

With ParallelizationFactor above 1 a batch holds only some partition keys of its range: the
records of the others read back with it were processed then, and replaying them is harmless (the
pipelines' version guard makes them superseded).
"""

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from tributary_shared.aws_clients import error_code
from tributary_shared.redrive.failure_records import StreamBatch
from tributary_shared.retries import RetryPolicy

GET_RECORDS_LIMIT = 1000
# Kinesis allows 5 GetRecords a second per shard, shared with the event source mappings reading it.
READ_RETRY = RetryPolicy(base_s=0.2, cap_s=2.0)
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"})
# Empty pages in a row before a read that is not at the shard's tip gives up (Kinesis may answer
# empty pages while it skips over trimmed or sparse parts of a shard).
MAX_EMPTY_PAGES = 100


class StreamGone(Exception):
    """The batch's stream no longer exists (deleted): its records cannot be read back."""


class ReadOutOfTime(Exception):
    """The invocation's time ran out before the batch was read back."""


@dataclass(frozen=True)
class LostRange:
    """Records of a batch the stream has expired: where they were and how many."""

    stream_arn: str
    shard_id: str
    first: str
    last: str
    records: int

    def as_dict(self) -> dict[str, Any]:
        return {"streamArn": self.stream_arn, "shardId": self.shard_id, "from": self.first, "to": self.last,
                "records": self.records}  # fmt: skip


@dataclass
class BatchRead:
    """The batch's records still on the stream (Lambda's event records, in order), and what was lost."""

    records: list[dict[str, Any]] = field(default_factory=list)
    lost: LostRange | None = None


def read_batch(
    kinesis: Any,
    batch: StreamBatch,
    *,
    invoke_identity_arn: str,
    region: str,
    deadline: float,
    retry: RetryPolicy = READ_RETRY,
) -> BatchRead:
    """Read `batch` back from its shard; StreamGone, ReadOutOfTime or a ClientError the caller reports."""
    found = ShardReader(kinesis, batch, retry, deadline).records()
    event_records = [event_record(item, batch, invoke_identity_arn, region) for item in found]
    return BatchRead(event_records, lost_range(batch, [item["SequenceNumber"] for item in found]))


def lost_range(batch: StreamBatch, found: list[str]) -> LostRange | None:
    """What the batch lacks: Kinesis trims a shard from its oldest record, so a gap starts at the batch's start."""
    missing = batch.size - len(found)
    if missing <= 0:
        return None
    first_found = min((int(sequence) for sequence in found), default=None)
    last = str(first_found - 1) if first_found is not None and first_found > int(batch.start_sequence) else (
        batch.end_sequence
    )  # fmt: skip
    return LostRange(batch.stream_arn, batch.shard_id, batch.start_sequence, last, missing)


class ShardReader:
    """One shard read from the batch's first sequence number to its last, within the deadline."""

    def __init__(self, kinesis: Any, batch: StreamBatch, retry: RetryPolicy, deadline: float) -> None:
        self.kinesis = kinesis
        self.batch = batch
        self.retry = retry
        self.deadline = deadline
        self.start, self.end = int(batch.start_sequence), int(batch.end_sequence)

    def records(self) -> list[dict[str, Any]]:
        iterator = self._first_iterator()
        found: list[dict[str, Any]] = []
        empty_pages = 0
        while iterator is not None:
            page = self._call(self.kinesis.get_records, StreamARN=self.batch.stream_arn, ShardIterator=iterator,
                              Limit=GET_RECORDS_LIMIT)  # fmt: skip
            items = page.get("Records") or []
            found += [item for item in items if self.start <= int(item["SequenceNumber"]) <= self.end]
            if items and int(items[-1]["SequenceNumber"]) >= self.end:
                break  # past the batch
            at_tip = page.get("MillisBehindLatest", 0) == 0
            empty_pages = 0 if items else empty_pages + 1
            if (not items and at_tip) or empty_pages >= MAX_EMPTY_PAGES:
                break  # nothing more will come for this range
            iterator = page.get("NextShardIterator")  # None: a closed shard read to its end
        return found

    def _first_iterator(self) -> str | None:
        position = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": self.batch.start_sequence}
        try:
            return self._iterator(position)
        except ClientError as error:
            code = error_code(error)
            if code == "InvalidArgumentException":
                # A position the stream has trimmed: its oldest record is where the batch's remains start.
                return self._iterator({"ShardIteratorType": "TRIM_HORIZON"})
            if code == "ResourceNotFoundException":
                self._check_stream_exists()
                return None  # the stream is there, the shard is not: it expired with its records
            raise

    def _iterator(self, position: Mapping[str, str]) -> str:
        response = self._call(
            self.kinesis.get_shard_iterator, StreamARN=self.batch.stream_arn, ShardId=self.batch.shard_id, **position
        )
        return str(response["ShardIterator"])

    def _check_stream_exists(self) -> None:
        try:
            self._call(self.kinesis.describe_stream_summary, StreamARN=self.batch.stream_arn)
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                raise StreamGone(f"stream {self.batch.stream_arn} no longer exists") from error
            raise

    def _call(self, operation: Callable[..., dict[str, Any]], **params: Any) -> dict[str, Any]:
        calls = 0
        while True:
            if not self.retry.call_fits(self.deadline):
                raise ReadOutOfTime(f"out of time reading {self.batch.describe()}")
            calls += 1
            try:
                return operation(**params)
            except ClientError as error:
                if error_code(error) not in THROTTLED or not self.retry.wait_before_retry(calls, self.deadline):
                    raise


def event_record(item: Mapping[str, Any], batch: StreamBatch, invoke_identity_arn: str, region: str) -> dict[str, Any]:
    """A GetRecords record as the event record Lambda's Kinesis event source mapping sends for it."""
    arrival = item.get("ApproximateArrivalTimestamp")
    sequence = str(item["SequenceNumber"])
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": item["PartitionKey"],
            "sequenceNumber": sequence,
            "data": base64.b64encode(item["Data"]).decode(),
            "approximateArrivalTimestamp": arrival.timestamp() if isinstance(arrival, datetime) else arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{batch.shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": region,
        "eventSourceARN": batch.stream_arn,
    }
