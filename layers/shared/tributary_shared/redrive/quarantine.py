"""Records the redrive could not bring back, kept as JSON lines with why, for a person to look at.

One object per dead-lettered message, `quarantine/<pipeline>/<yyyy>/<mm>/<dd>/<batch or request>.jsonl`,
dated by when the record was given up and named after the batch's shard and range (or the request's
id): a second run over the same message writes the same key, so redriving twice leaves one object,
holding what the last run could not apply (and none when that is nothing). A line is one of:

- `{"kind": "record", ...}`: a stream record with its data (base64), where it was (stream, shard,
  sequence number, partition key, arrival), the reason it still fails, the attempts made and
  whether the function called the failure permanent;
- `{"kind": "lost", ...}`: records the stream had expired before the redrive read them: the range
  and how many, so the loss is on record beside the rest;
- `{"kind": "request", ...}`: an asynchronous invocation's request (the CSV loader's resume point)
  that still fails, with the function's error.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tributary_shared.redrive.failure_records import AsyncRequest, FailureRecord, StreamBatch, day_of
from tributary_shared.redrive.replay import RecordResult
from tributary_shared.redrive.stream_range import LostRange

PREFIX = "quarantine"
CONTENT_TYPE = "application/x-ndjson"


def quarantine_key(pipeline: str, failure: FailureRecord) -> str:
    return f"{PREFIX}/{pipeline}/{day_of(failure.timestamp)}/{failure.name}.jsonl"


def record_line(pipeline: str, batch: StreamBatch, event_record: Mapping[str, Any], result: RecordResult,
                reason: str | None = None) -> dict[str, Any]:  # fmt: skip
    kinesis = event_record["kinesis"]
    return {
        "kind": "record",
        "pipeline": pipeline,
        "function": batch.function_name,
        "streamArn": batch.stream_arn,
        "shardId": batch.shard_id,
        "sequenceNumber": kinesis["sequenceNumber"],
        "partitionKey": kinesis.get("partitionKey"),
        "approximateArrivalTimestamp": kinesis.get("approximateArrivalTimestamp"),
        "data": kinesis.get("data"),
        "reason": reason or result.reason,
        "permanent": result.permanent,
        "attempts": result.attempts,
        "deadLetteredAt": batch.timestamp,
        "condition": batch.condition,
    }


def lost_line(pipeline: str, batch: StreamBatch, lost: LostRange) -> dict[str, Any]:
    return {
        "kind": "lost",
        "pipeline": pipeline,
        "function": batch.function_name,
        **lost.as_dict(),
        "reason": "expired from the stream (its retention period passed) before the redrive read it",
        "deadLetteredAt": batch.timestamp,
    }


def request_line(pipeline: str, request: AsyncRequest, result: RecordResult) -> dict[str, Any]:
    return {
        "kind": "request",
        "pipeline": pipeline,
        "function": request.function_name,
        "requestId": request.request_id,
        "request": request.payload,
        "reason": result.reason,
        "attempts": result.attempts,
        "earlierAttempts": request.invoke_count,
        "firstError": request.error,
        "deadLetteredAt": request.timestamp,
    }


class Quarantine:
    """The quarantine bucket: one object per message, replaced as a whole by each run."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def keep(self, key: str, lines: Sequence[Mapping[str, Any]]) -> str | None:
        """Store `lines` under `key` (or remove an earlier run's object when nothing is left); its URI or None."""
        if not lines:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
            return None
        body = "".join(json.dumps(line, sort_keys=True, default=str) + "\n" for line in lines)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType=CONTENT_TYPE)
        return f"s3://{self.bucket}/{key}"
