"""What an on-failure message or object holds, read strictly: anything else is kept, with the reason.

Two kinds of invocation record reach the stack's on-failure destinations (Lambda developer guide,
"Retain discarded batch records" and "Capturing records of Lambda asynchronous invocations"):

- a stream event source mapping's: `requestContext` (functionArn, condition, approximateInvokeCount),
  `KinesisBatchInfo` (streamArn, shardId, start/endSequenceNumber, batchSize); in S3 the object also
  carries `payload`, the whole event as a JSON string, so the batch needs no stream to come back;
- an asynchronous invocation's: `requestContext` and `requestPayload` (for the CSV loader, the
  request to resume a load from), `responsePayload` (the error).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tributary_shared.kinesis_batch import InvalidEventError, ordered_records, validated_sequence_number

FUNCTION_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:(?P<name>[A-Za-z0-9_-]{1,64})(:[^:]+)?$")
STREAM_ARN = re.compile(r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[A-Za-z0-9_.-]{1,128}$")
SHARD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_REASON_CHARS = 500


class NotRedrivable(ValueError):
    """The message is not an invocation record the redrive can act on; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StreamBatch:
    """A batch a Kinesis event source mapping gave up, as its invocation record describes it."""

    function_name: str
    condition: str
    timestamp: str
    stream_arn: str
    shard_id: str
    start_sequence: str
    end_sequence: str
    size: int
    records: tuple[Mapping[str, Any], ...] | None = None  # the event's records, from an S3 object

    @property
    def name(self) -> str:
        """Unique per batch and the same on every run: the quarantine object of this batch is named after it."""
        return f"{self.shard_id}-{self.start_sequence}-{self.end_sequence}"

    def describe(self) -> str:
        stream = self.stream_arn.rsplit("/", 1)[-1]
        return f"{stream} {self.shard_id} {self.start_sequence}..{self.end_sequence} ({self.size} records)"


@dataclass(frozen=True)
class AsyncRequest:
    """An asynchronous invocation Lambda gave up after its retries (the CSV loader's resume request)."""

    function_name: str
    request_id: str
    timestamp: str
    payload: Any
    error: str
    invoke_count: int

    @property
    def name(self) -> str:
        return self.request_id

    def describe(self) -> str:
        return f"{self.function_name} request {self.request_id} after {self.invoke_count} attempts: {self.error}"


FailureRecord = StreamBatch | AsyncRequest


def parse_failure(text: str | bytes) -> FailureRecord:
    """The invocation record in a message body or an S3 object; NotRedrivable naming what is wrong."""
    try:
        record = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise NotRedrivable(f"not JSON, so not an invocation record: {error}") from error
    if not isinstance(record, Mapping):
        raise NotRedrivable(f"not an invocation record: a JSON {type(record).__name__}, not an object")
    context = record.get("requestContext")
    if not isinstance(context, Mapping):
        raise NotRedrivable("not an invocation record: no requestContext")
    function_name = _function_name(context.get("functionArn"))
    timestamp = record.get("timestamp") if isinstance(record.get("timestamp"), str) else ""
    if "KinesisBatchInfo" in record:
        return _stream_batch(record, function_name, str(context.get("condition", "")), timestamp)
    if "DDBStreamBatchInfo" in record:
        raise NotRedrivable("a DynamoDB stream batch: this stack's redrive replays Kinesis batches only")
    if "requestPayload" in record:
        return AsyncRequest(
            function_name=function_name,
            request_id=str(context.get("requestId", "")) or "unknown-request",
            timestamp=timestamp,
            payload=record["requestPayload"],
            error=_error_of(record.get("responsePayload")),
            invoke_count=_count(context.get("approximateInvokeCount")),
        )
    raise NotRedrivable("an invocation record with neither KinesisBatchInfo nor requestPayload")


def _function_name(arn: Any) -> str:
    match = FUNCTION_ARN.match(arn) if isinstance(arn, str) else None
    if match is None:
        raise NotRedrivable(f"requestContext.functionArn is not a Lambda function ARN: {arn!r:.200}")
    return match["name"]


def _stream_batch(record: Mapping[str, Any], function_name: str, condition: str, timestamp: str) -> StreamBatch:
    info = record["KinesisBatchInfo"]
    if not isinstance(info, Mapping):
        raise NotRedrivable("KinesisBatchInfo is not an object")
    stream_arn, shard_id = info.get("streamArn"), info.get("shardId")
    if not isinstance(stream_arn, str) or not STREAM_ARN.match(stream_arn):
        raise NotRedrivable(f"KinesisBatchInfo.streamArn is not a Kinesis stream ARN: {stream_arn!r:.200}")
    if not isinstance(shard_id, str) or not SHARD_ID.match(shard_id):
        raise NotRedrivable(f"KinesisBatchInfo.shardId is not a shard id: {shard_id!r:.200}")
    start, end = _sequence(info, "startSequenceNumber"), _sequence(info, "endSequenceNumber")
    if int(start) > int(end):
        raise NotRedrivable(f"KinesisBatchInfo ends ({end}) before it starts ({start})")
    size = info.get("batchSize")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise NotRedrivable(f"KinesisBatchInfo.batchSize is not a positive integer: {size!r:.50}")
    return StreamBatch(
        function_name=function_name,
        condition=condition,
        timestamp=timestamp,
        stream_arn=stream_arn,
        shard_id=shard_id,
        start_sequence=start,
        end_sequence=end,
        size=size,
        records=_payload_records(record, start, end) if "payload" in record else None,
    )


def _sequence(info: Mapping[str, Any], field: str) -> str:
    try:
        return validated_sequence_number({"kinesis": {"sequenceNumber": info.get(field)}}, 0)
    except InvalidEventError:
        raise NotRedrivable(f"KinesisBatchInfo.{field} is not a sequence number: {info.get(field)!r:.80}") from None


def _payload_records(record: Mapping[str, Any], start: str, end: str) -> tuple[Mapping[str, Any], ...]:
    """The event an S3 object carries, checked: its records are the batch's, in sequence order."""
    payload = record["payload"]
    try:
        event = json.loads(payload) if isinstance(payload, str) else payload
        records = ordered_records(event)
    except (ValueError, InvalidEventError) as error:
        raise NotRedrivable(f"the object's payload is not the Kinesis event of the batch: {error}") from error
    if not records:
        raise NotRedrivable("the object's payload holds no records")
    outside = [r for r in records if not int(start) <= int(r["kinesis"]["sequenceNumber"]) <= int(end)]
    if outside:
        raise NotRedrivable(f"the object's payload holds {len(outside)} records outside its KinesisBatchInfo range")
    return tuple(records)


def _error_of(response: Any) -> str:
    if isinstance(response, Mapping):
        kind, message = response.get("errorType"), response.get("errorMessage")
        text = f"{kind}: {message}" if kind and message else str(message or kind or "")
    else:
        text = "" if response is None else str(response)
    return text[:MAX_REASON_CHARS] or "no error reported"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def day_of(timestamp: str) -> str:
    """`YYYY/MM/DD` of an invocation record's timestamp (when it was given up), for quarantine keys."""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "undated"
    return moment.strftime("%Y/%m/%d")
