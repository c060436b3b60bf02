"""Stream sources of an event source mapping: Kinesis and DynamoDB streams read through boto3.

Each source turns the service's records into the record entries of Lambda's event ("Using Lambda with
Kinesis" / "with DynamoDB" event examples), plus what the engine needs: sequence number, arrival time,
the key that picks a virtual shard, and what FilterCriteria patterns are matched against.

A Kinesis mapping's source may be a stream consumer's ARN (enhanced fan-out), as Lambda accepts:
Lambda then reads the consumer's stream through SubscribeToShard, on a connection of its own. Here
the stream is read with GetRecords like any other, so the records, their order and the checkpoints
are the same; only the dedicated throughput and the push latency are not emulated. AWS's
documentation does not show an enhanced fan-out event: the records' `eventSourceARN` (and a window's,
and an on-failure record's `streamArn`) name the stream the records are in, as they do without a
consumer, never the consumer.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

import boto3

from tributary.runtime import destinations as dest
from tributary.runtime.esm.filtering import kinesis_filter_subject


@dataclass(frozen=True)
class StreamRecord:
    sequence_number: str
    arrival: float
    lane_key: str
    event_record: dict[str, Any]
    filter_subject: dict[str, Any]
    size: int

    @property
    def sequence(self) -> int:
        return int(self.sequence_number)


@dataclass(frozen=True)
class ShardInfo:
    shard_id: str
    parent_ids: tuple[str, ...]
    ending_sequence: str | None = None  # present once the shard is closed


@dataclass(frozen=True)
class ReadResult:
    records: list[StreamRecord]
    next_iterator: str | None
    millis_behind: int


class StreamSource(Protocol):
    batch_info_key: str

    @property
    def arn(self) -> str:
        """The stream the records are in, as the event's records and the on-failure record name it."""
        ...

    def shards(self) -> list[ShardInfo]: ...

    def iterator(self, shard_id: str, position: str, timestamp: float | None,
                 after_sequence: str | None = None) -> str: ...

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult: ...

    def format_arrival(self, epoch_seconds: float) -> str: ...


def stream_source(source_arn: str, role_arn: str) -> StreamSource:
    """The source a mapping reads: a DynamoDB stream, or a Kinesis stream or consumer; records name `role_arn`."""
    return DynamoDBStreamSource(source_arn) if is_dynamodb_stream(source_arn) else KinesisSource(source_arn, role_arn)


def is_dynamodb_stream(arn: str) -> bool:
    return arn.split(":")[2:3] == ["dynamodb"] and "/stream/" in arn


def is_kinesis_consumer(arn: str) -> bool:
    """arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/CONSUMER:TIMESTAMP: an enhanced fan-out consumer."""
    return arn.split(":")[2:3] == ["kinesis"] and "/consumer/" in arn


def _arn_region(arn: str) -> str:
    return arn.split(":")[3]


def arn_account(arn: str) -> str:
    return arn.split(":")[4]


def _epoch(moment: datetime | float) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)


def _stream_record(sequence_number: str, arrival: float, lane_key: str, event_record: dict[str, Any],
                   filter_subject: dict[str, Any]) -> StreamRecord:
    size = len(json.dumps(event_record, separators=(",", ":"))) + 1
    return StreamRecord(sequence_number, arrival, lane_key, event_record, filter_subject, size)


class KinesisSource:
    """A Kinesis stream, given by its ARN or by the ARN of one of its consumers (enhanced fan-out)."""

    batch_info_key = "KinesisBatchInfo"

    def __init__(self, source_arn: str, role_arn: str) -> None:
        self.source_arn = source_arn
        self.region = _arn_region(source_arn)
        self.role_arn = role_arn
        self.client = boto3.client("kinesis", region_name=self.region)

    @cached_property
    def arn(self) -> str:
        """The stream's ARN; a consumer's is asked of Kinesis, which refuses a consumer it does not know."""
        if not is_kinesis_consumer(self.source_arn):
            return self.source_arn
        consumer = self.client.describe_stream_consumer(ConsumerARN=self.source_arn)["ConsumerDescription"]
        return str(consumer["StreamARN"])

    @property
    def stream_name(self) -> str:
        return self.arn.split("/", 1)[1]

    def shards(self) -> list[ShardInfo]:
        found: list[ShardInfo] = []
        request: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            page = self.client.list_shards(**request)
            found += [ShardInfo(s["ShardId"], _parents(s, "ParentShardId", "AdjacentParentShardId"), _ending(s))
                      for s in page["Shards"]]
            if not page.get("NextToken"):
                return found
            request = {"NextToken": page["NextToken"]}

    def iterator(self, shard_id: str, position: str, timestamp: float | None,
                 after_sequence: str | None = None) -> str:
        request: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id,
                                   "ShardIteratorType": position}
        if after_sequence is not None:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after_sequence)
        elif position == "AT_TIMESTAMP":
            request["Timestamp"] = timestamp
        return self.client.get_shard_iterator(**request)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        page = self.client.get_records(ShardIterator=iterator, Limit=limit)
        records = [self._record(shard_id, raw) for raw in page["Records"]]
        return ReadResult(records, page.get("NextShardIterator"), int(page.get("MillisBehindLatest", 0)))

    def _record(self, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        sequence_number = raw["SequenceNumber"]
        arrival = round(_epoch(raw["ApproximateArrivalTimestamp"]), 3)
        event_record = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": raw["PartitionKey"],
                "sequenceNumber": sequence_number,
                "data": _base64(raw["Data"]),
                "approximateArrivalTimestamp": arrival,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{sequence_number}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": self.role_arn,
            "awsRegion": self.region,
            "eventSourceARN": self.arn,
        }
        return _stream_record(sequence_number, arrival, raw["PartitionKey"], event_record,
                              kinesis_filter_subject(raw["Data"], event_record["kinesis"]))

    def format_arrival(self, epoch_seconds: float) -> str:
        return dest.iso_millis(epoch_seconds)


class DynamoDBStreamSource:
    batch_info_key = "DDBStreamBatchInfo"

    def __init__(self, stream_arn: str) -> None:
        self.arn = stream_arn
        self.region = _arn_region(stream_arn)
        self.client = boto3.client("dynamodbstreams", region_name=self.region)

    def shards(self) -> list[ShardInfo]:
        found: list[ShardInfo] = []
        request: dict[str, Any] = {"StreamArn": self.arn}
        while True:
            description = self.client.describe_stream(**request)["StreamDescription"]
            found += [ShardInfo(s["ShardId"], _parents(s, "ParentShardId"), _ending(s)) for s in description["Shards"]]
            if not description.get("LastEvaluatedShardId"):
                return found
            request["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]

    def iterator(self, shard_id: str, position: str, timestamp: float | None,
                 after_sequence: str | None = None) -> str:
        request: dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard_id, "ShardIteratorType": position}
        if after_sequence is not None:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after_sequence)
        return self.client.get_shard_iterator(**request)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        page = self.client.get_records(ShardIterator=iterator, Limit=min(limit, 1000))
        records = [self._record(raw) for raw in page["Records"]]
        return ReadResult(records, page.get("NextShardIterator"), 0)

    def _record(self, raw: dict[str, Any]) -> StreamRecord:
        change = dict(raw["dynamodb"])
        arrival = _epoch(change["ApproximateCreationDateTime"])
        # Lambda's DynamoDB event carries the creation time as epoch seconds.
        change["ApproximateCreationDateTime"] = int(arrival)
        event_record = {key: value for key, value in raw.items() if key != "dynamodb"}
        event_record["dynamodb"] = change
        event_record["eventSourceARN"] = self.arn
        lane_key = json.dumps(change.get("Keys", {}), sort_keys=True)
        return _stream_record(change["SequenceNumber"], arrival, lane_key, event_record, event_record)

    def format_arrival(self, epoch_seconds: float) -> str:
        return dest.iso_seconds(epoch_seconds)


def _parents(shard: dict[str, Any], *keys: str) -> tuple[str, ...]:
    return tuple(shard[key] for key in keys if shard.get(key))


def _ending(shard: dict[str, Any]) -> str | None:
    return (shard.get("SequenceNumberRange") or {}).get("EndingSequenceNumber")


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
