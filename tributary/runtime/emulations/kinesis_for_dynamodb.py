"""EMULATION of Kinesis Data Streams for DynamoDB (a table's KinesisStreamSpecification).

moto keeps a table's DynamoDB stream but publishes nothing to Kinesis. This reads the table's
DynamoDB stream in moto from TRIM_HORIZON and re-publishes each change on the configured Kinesis
stream in AWS's record format (streaming.md §3: millisecond ApproximateCreationDateTime, its
precision, Keys, NewImage/OldImage, SizeBytes), with the item's keys as partition key (hashed) so a
key's changes stay in order on one shard.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

import boto3

from tributary.runtime.template import REGION


class KinesisStreamingForDynamoDB:
    """EMULATION of Kinesis Data Streams for DynamoDB: table changes → Kinesis records (AWS's JSON format)."""

    def __init__(self, table_name: str, kinesis_stream_arn: str) -> None:
        self.name = f"dynamodb-to-kinesis:{table_name}"
        self.table_name = table_name
        self.stream_name = kinesis_stream_arn.rsplit("/", 1)[-1]
        self._streams = boto3.client("dynamodbstreams")
        self._kinesis = boto3.client("kinesis")
        stream_arn = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        shards = self._streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        self._iterators = {
            shard["ShardId"]: self._streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for shard in shards
        }
        self._drained = False
        self.published = 0

    def poll(self) -> bool:
        published_before = self.published
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            response = self._streams.get_records(ShardIterator=iterator)
            self._iterators[shard_id] = response.get("NextShardIterator")
            for record in response["Records"]:
                self._publish(record)
        self._drained = self.published == published_before
        return not self._drained

    def _publish(self, stream_record: dict) -> None:
        change = kinesis_record_for_table_change(stream_record, self.table_name)
        keys = json.dumps(change["dynamodb"]["Keys"], sort_keys=True)
        self._kinesis.put_record(
            StreamName=self.stream_name,
            Data=json.dumps(change).encode(),
            PartitionKey=hashlib.md5(keys.encode()).hexdigest(),
        )
        self.published += 1

    def __repr__(self) -> str:
        return self.name

    def is_drained(self) -> bool:
        return self._drained

    def counters(self) -> dict[str, int]:
        return {"published": self.published}


def kinesis_record_for_table_change(stream_record: Mapping[str, Any], table_name: str) -> dict:
    """A DynamoDB Streams record as Kinesis Data Streams for DynamoDB writes it (millisecond timestamp)."""
    change = stream_record["dynamodb"]
    created = change.get("ApproximateCreationDateTime")
    created_ms = (
        int(created.timestamp() * 1000) if isinstance(created, dt.datetime) else int(float(created or 0) * 1000)
    )
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": created_ms,
        "ApproximateCreationDateTimePrecision": "MILLISECOND",
        "Keys": change["Keys"],
    }
    for image in ("NewImage", "OldImage"):
        if image in change:
            dynamodb[image] = change[image]
    dynamodb["SizeBytes"] = change.get("SizeBytes", len(json.dumps(change["Keys"])))
    return {
        "awsRegion": stream_record.get("awsRegion", REGION),
        "eventID": str(uuid.uuid4()),
        "eventName": stream_record["eventName"],
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": table_name,
        "eventSource": "aws:dynamodb",
        "dynamodb": dynamodb,
    }


