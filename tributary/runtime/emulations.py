"""EMULATIONS of AWS-managed features that moto stores but does not perform.

Each class here stands in for one named AWS feature, locally and approximately; none of them is
AWS. They run on the runtime's single polling thread (`poll()` does one step of work and says
whether it did any; `is_drained()` says nothing is pending):

- `KinesisStreamingForDynamoDB` emulates *Kinesis Data Streams for DynamoDB* (a table's
  KinesisStreamSpecification): it reads the table's DynamoDB stream in moto and re-publishes each
  change on the configured Kinesis stream in AWS's record format (streaming.md §3).
- `S3EventNotifications` emulates *Amazon S3 event notifications to AWS Lambda* (SAM `S3` events
  and a bucket's LambdaConfigurations): it lists the bucket each poll and invokes the function with
  the S3 event shape for each created/removed object matching the event names and key filters.
  S3 invokes Lambda asynchronously: the events go to the Lambda emulation's asynchronous queue
  (lambda_emulation.py), which retries them and sends failures to the function's OnFailure
  destination as Lambda does.
- `FirehoseFromKinesis` emulates *Amazon Data Firehose delivery from a Kinesis data stream to S3*
  (see firehose.py): buffering, the transformation Lambda, record format conversion to Parquet
  with the Glue table's schema, dynamic partitioning and the error output prefix.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote_plus

import boto3
from botocore.exceptions import ClientError

from tributary.runtime.firehose import FirehoseFromKinesis
from tributary.runtime.functions import LocalFunction
from tributary.runtime.resources import Deployment
from tributary.runtime.template import ACCOUNT_ID, REGION, Template

FunctionLookup = Callable[[str], LocalFunction | None]
AsyncInvoker = Callable[[LocalFunction, dict], str]  # InvocationType Event: queues, returns the request id


class Emulation(Protocol):
    name: str

    def poll(self) -> bool: ...

    def is_drained(self) -> bool: ...

    def counters(self) -> dict[str, int]: ...


# ---------------------------------------------------------------- Kinesis Data Streams for DynamoDB


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


# ---------------------------------------------------------------- S3 event notifications to Lambda


class S3Subscription:
    """One function subscribed to a bucket's events, with its key filter."""

    def __init__(self, function: LocalFunction, events: list[str], rules: list[dict], configuration_id: str) -> None:
        self.function = function
        self.events = events
        self.prefix = next((rule["Value"] for rule in rules if rule["Name"].lower() == "prefix"), "")
        self.suffix = next((rule["Value"] for rule in rules if rule["Name"].lower() == "suffix"), "")
        self.configuration_id = configuration_id

    def matches(self, event_name: str, key: str) -> bool:
        named = any(fnmatch.fnmatchcase(f"s3:{event_name}", pattern) for pattern in self.events)
        return named and key.startswith(self.prefix) and key.endswith(self.suffix)


class S3EventNotifications:
    """EMULATION of Amazon S3 event notifications invoking Lambda (asynchronously) for one bucket."""

    def __init__(self, bucket: str, subscriptions: list[S3Subscription], invoke_async: AsyncInvoker) -> None:
        self.name = f"s3-notifications:{bucket}"
        self.bucket = bucket
        self.subscriptions = subscriptions
        self.invoke_async = invoke_async
        self._s3 = boto3.client("s3")
        self._objects = self._list()
        self._drained = True
        self.invocations = 0  # asynchronous invocations requested (what the Lambda emulation then runs)

    def _list(self) -> dict[str, tuple[str, int]]:
        objects: dict[str, tuple[str, int]] = {}
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                objects[item["Key"]] = (item["ETag"].strip('"'), item["Size"])
        return objects

    def poll(self) -> bool:
        current = self._list()
        changes = [
            ("ObjectCreated:Put", key, current[key]) for key in current if current[key] != self._objects.get(key)
        ]
        changes += [("ObjectRemoved:Delete", key, self._objects[key]) for key in self._objects if key not in current]
        self._objects = current
        for event_name, key, (etag, size) in sorted(changes, key=lambda change: change[1]):
            self._notify(event_name, key, etag, size)
        self._drained = not changes
        return bool(changes)

    def _notify(self, event_name: str, key: str, etag: str, size: int) -> None:
        for subscription in self.subscriptions:
            if not subscription.matches(event_name, key):
                continue
            event = s3_event(self.bucket, event_name, key, etag, size, subscription.configuration_id)
            self.invoke_async(subscription.function, event)
            self.invocations += 1

    def __repr__(self) -> str:
        return self.name

    def is_drained(self) -> bool:
        return self._drained

    def counters(self) -> dict[str, int]:
        return {"objects": len(self._objects), "invocations": self.invocations}


def s3_event(bucket: str, event_name: str, key: str, etag: str, size: int, configuration_id: str) -> dict:
    """The event Amazon S3 sends to Lambda (event structure version 2.1); keys are URL-encoded."""
    now = dt.datetime.now(dt.UTC)
    s3_object: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": f"{int(now.timestamp() * 1e6):X}"}
    if event_name.startswith("ObjectCreated"):
        s3_object.update({"size": size, "eTag": etag})
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                "eventName": event_name,
                "userIdentity": {"principalId": f"AWS:{ACCOUNT_ID}"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": configuration_id,
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": ACCOUNT_ID},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": s3_object,
                },
            }
        ]
    }


def _s3_subscriptions(
    template: Template, deployment: Deployment, functions: Mapping[str, LocalFunction], lookup: FunctionLookup
) -> dict[str, list[S3Subscription]]:
    by_bucket: dict[str, list[S3Subscription]] = {}
    for spec in template.functions():
        for event_name, event in template.resolve(spec.properties.get("Events") or {}).items():
            if event.get("Type") != "S3":
                continue
            properties = event["Properties"]
            events = properties["Events"] if isinstance(properties["Events"], list) else [properties["Events"]]
            rules = ((properties.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
            subscription = S3Subscription(functions[spec.logical_id], events, rules, f"{spec.logical_id}{event_name}")
            by_bucket.setdefault(properties["Bucket"], []).append(subscription)
    for bucket, configurations in deployment.s3_lambda_notifications.items():
        for position, configuration in enumerate(configurations):
            function = lookup(configuration["Function"])
            if function is None:
                deployment.notes.append(f"{bucket}: notification to {configuration['Function']} (not in template)")
                continue
            rules = ((configuration.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
            configuration_id = configuration.get("Id", f"notification-{position}")
            by_bucket.setdefault(bucket, []).append(
                S3Subscription(function, [configuration["Event"]], rules, configuration_id)
            )
    return by_bucket


# ---------------------------------------------------------------- wiring


def build(
    template: Template,
    deployment: Deployment,
    functions: Mapping[str, LocalFunction],
    lookup: FunctionLookup,
    invoke_async: AsyncInvoker,
) -> list[Emulation]:
    """Every emulation the deployed template needs (the Lambda emulation itself is the runtime's)."""
    emulated: list[Emulation] = [
        KinesisStreamingForDynamoDB(table, stream_arn)
        for table, stream_arn in deployment.kinesis_streaming_destinations.items()
    ]
    emulated += [
        S3EventNotifications(bucket, subscriptions, invoke_async)
        for bucket, subscriptions in _s3_subscriptions(template, deployment, functions, lookup).items()
    ]
    for name, properties in deployment.firehose_streams.items():
        if properties.get("DeliveryStreamType") != "KinesisStreamAsSource":
            deployment.notes.append(f"Firehose {name}: only Kinesis-sourced delivery streams are emulated")
            continue
        try:
            emulated.append(FirehoseFromKinesis(name, properties, lookup))
        except (ClientError, KeyError, ValueError) as error:  # named, and the rest of the template still runs
            deployment.notes.append(f"Firehose {name}: not emulated: {error!r}")
    return emulated
