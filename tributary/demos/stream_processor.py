"""Demo: unicorn telemetry and payments through the stream processors into their read models.

Produces a small fleet of unicorns on the wildrydes stream and payment state changes on the
payments stream (the producer's generators, `tributary produce` uses the same), each with a few
labelled poison pills (not JSON, missing key, key of
the wrong type). The report reads both streams back and accounts for every record: its item is in
the table, or its sequence number lies in a batch delivered to the on-failure destination.
(Payments repeat a paymentId through its lifecycle: a record counts as written when its key is in
the table, where the last state wins.)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from tributary.demos import DemoContext, DemoSection
from tributary.producer import json_bytes, payment_events, unicorn_statuses
from tributary_shared.kinesis_put import put_records

UNICORNS = ("Shadowfax", "Rocinante", "Bucephalus", "Pegasus", "Epona", "Artax")
UNICORN_READINGS = 60
PAYMENT_EVENTS = 40
FLEET_START = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
# (record bytes, why it is poison): the stream processor must isolate each and send it on-failure.
UNICORN_POISON = (
    (b"{not json", "not JSON"),
    (json.dumps({"StatusTime": "2026-11-21 12:00:00.000", "Distance": 1}).encode(), "no Name key"),
    (json.dumps({"Name": 42, "StatusTime": "2026-11-21 12:00:00.000"}).encode(), "Name is not a string"),
)
PAYMENT_POISON = (
    (b"\xff\xfe binary", "undecodable bytes"),
    (json.dumps({"amount": 12.5, "currency": "EUR"}).encode(), "no paymentId key"),
)


def unicorn_records() -> list[tuple[str, bytes, str]]:
    """(partition key, data, poison reason or "") for the fleet, poison pills spread through it."""
    readings = islice(unicorn_statuses(UNICORNS, start=FLEET_START, seed=7), UNICORN_READINGS)
    return _with_poison([(status["Name"], json_bytes(status), "") for status in readings], UNICORN_POISON)


def payment_records() -> list[tuple[str, bytes, str]]:
    events = islice(payment_events(start=FLEET_START, seed=11), PAYMENT_EVENTS)
    return _with_poison([(event["paymentId"], json_bytes(event), "") for event in events], PAYMENT_POISON)


def _with_poison(records: list[tuple[str, bytes, str]], poison: Sequence[tuple[bytes, str]]) -> list:
    spaced = list(records)
    step = max(1, len(records) // (len(poison) + 1))
    for position, (data, reason) in enumerate(poison, 1):
        spaced.insert(position * step + position - 1, (f"poison-{position}", data, reason))
    return spaced


@dataclass
class StreamPlan:
    stream: str  # logical ids
    table: str
    function: str
    key_attributes: tuple[str, ...]
    records: list[tuple[str, bytes, str]] = field(default_factory=list)


@dataclass
class RecordOnStream:
    shard_id: str
    sequence_number: str
    data: bytes


class StreamProcessorDemo:
    name = "stream processor: unicorns and payments"
    required_resources = ("WildrydesStream", "UnicornSensorDataTable", "PaymentsStream", "PaymentsTable")
    parameter_overrides: Mapping[str, str] = {"BatchingWindowSeconds": "0"}

    def __init__(self) -> None:
        self.plans = [
            StreamPlan("WildrydesStream", "UnicornSensorDataTable", "StreamProcessorFunction", ("Name", "StatusTime")),
            StreamPlan("PaymentsStream", "PaymentsTable", "PaymentProcessorFunction", ("paymentId",)),
        ]

    def produce(self, ctx: DemoContext) -> None:
        self.plans[0].records = unicorn_records()
        self.plans[1].records = payment_records()
        kinesis = ctx.client("kinesis")
        for plan in self.plans:
            entries = [(key, data) for key, data, _ in plan.records]
            report = put_records(kinesis, ctx.physical_name(plan.stream), entries)
            if report.failed_entries:
                raise RuntimeError(f"{plan.stream}: {len(report.failed_entries)} records not put")

    def report(self, ctx: DemoContext) -> DemoSection:
        section = DemoSection(self.name, accounted=True)
        failures = ctx.on_failure_records()
        stats = ctx.mapping_stats()
        for plan in self.plans:
            self._report_stream(ctx, plan, failures, stats, section)
        return section

    def _report_stream(
        self,
        ctx: DemoContext,
        plan: StreamPlan,
        failures: Sequence[dict],
        stats: Mapping[str, Any],
        section: DemoSection,
    ) -> None:
        stream_name = ctx.physical_name(plan.stream)
        on_stream = read_stream(ctx.client("kinesis"), stream_name)
        items = scan_keys(ctx.client("dynamodb"), ctx.physical_name(plan.table), plan.key_attributes)
        function_arn = ctx.arn(plan.function)
        batches = [
            record
            for record in failures
            if _batch_stream(record) == stream_name and record["requestContext"]["functionArn"] == function_arn
        ]
        poison_by_data = {data: reason for _, data, reason in plan.records if reason}
        # Other demos may share the stream: the processor must account for every record on it.
        written = in_failure = 0
        lost: list[str] = []
        for record in on_stream:
            if _item_key(record.data, plan.key_attributes) in items:
                written += 1
            elif _in_batches(record, batches):
                in_failure += 1
            else:
                lost.append(f"{record.shard_id} {record.sequence_number}")
        missing = len(Counter(data for _, data, _ in plan.records) - Counter(record.data for record in on_stream))
        mapping = next((value for key, value in stats.items() if key.startswith(f"{plan.function}.")), None)
        section.lines.append(
            f"{stream_name}: {len(plan.records)} records put by this demo ({len(poison_by_data)} poison), "
            f"{len(on_stream)} on the stream; {ctx.physical_name(plan.table)}: {len(items)} items"
        )
        if mapping is not None:
            section.lines.append(
                f"  {plan.function}: {mapping.records_in} records in, {mapping.invocations} invocations, "
                f"{mapping.retries} retries, {mapping.function_errors} function errors, "
                f"{mapping.records_to_destination} records on-failure"
            )
        for batch in batches:
            section.lines.append(f"  on-failure: {_describe_batch(batch, on_stream, poison_by_data)}")
        section.lines.append(
            f"  accounted: {written} written + {in_failure} in on-failure batches of {len(on_stream)}, {len(lost)} lost"
        )
        if lost:
            section.accounted = False
            section.problems.append(f"{stream_name}: {len(lost)} records neither written nor on-failure: {lost[:3]}")
        if missing:
            section.accounted = False
            section.problems.append(f"{stream_name}: {missing} records put by the demo are not on the stream")


def read_stream(kinesis: Any, stream_name: str) -> list[RecordOnStream]:
    """Every record of every shard, from TRIM_HORIZON to the end."""
    records: list[RecordOnStream] = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            records += [
                RecordOnStream(shard["ShardId"], item["SequenceNumber"], item["Data"]) for item in response["Records"]
            ]
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    return records


def scan_keys(dynamodb: Any, table: str, key_attributes: Sequence[str]) -> set[tuple[str, ...]]:
    keys: set[tuple[str, ...]] = set()
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table,
        ProjectionExpression=", ".join(f"#k{position}" for position in range(len(key_attributes))),
        ExpressionAttributeNames={f"#k{position}": name for position, name in enumerate(key_attributes)},
    ):
        for item in page["Items"]:
            keys.add(tuple(item[name]["S"] for name in key_attributes))
    return keys


def _item_key(data: bytes, key_attributes: Sequence[str]) -> tuple[str, ...] | None:
    try:
        item = json.loads(data)
        return tuple(item[name] for name in key_attributes) if isinstance(item, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def _batch_stream(record: Mapping[str, Any]) -> str:
    return str((record.get("KinesisBatchInfo") or {}).get("streamArn", "")).rsplit("/", 1)[-1]


def _in_batches(record: RecordOnStream, batches: Sequence[Mapping[str, Any]]) -> bool:
    sequence = int(record.sequence_number)
    for batch in batches:
        info = batch["KinesisBatchInfo"]
        if info["shardId"] == record.shard_id and (
            int(info["startSequenceNumber"]) <= sequence <= int(info["endSequenceNumber"])
        ):
            return True
    return False


def _describe_batch(batch: Mapping[str, Any], on_stream: Sequence[RecordOnStream], poison: Mapping[bytes, str]) -> str:
    info = batch["KinesisBatchInfo"]
    reasons = sorted(
        {poison.get(record.data, "a valid record") for record in on_stream if _in_batches(record, [batch])}
    )
    condition = batch.get("requestContext", {}).get("condition")
    return (
        f"{condition} after {batch.get('requestContext', {}).get('approximateInvokeCount')} invocations: "
        f"{info['batchSize']} record(s) {info['startSequenceNumber'][-6:]}..{info['endSequenceNumber'][-6:]} "
        f"({', '.join(reasons)})"
    )


PIPELINE = StreamProcessorDemo()
