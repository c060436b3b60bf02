"""Demo: unicorn telemetry and payments through the stream processors into their read models.

Produces a small fleet of unicorns (JSON) on the wildrydes stream and payment state changes on the
payments stream (the producer's generators, `tributary produce` uses the same), each with a few
labelled poison pills (not JSON, missing key, key of the wrong type). The unicorns' producer
aggregates as the KPL does (`tributary produce --aggregate`, `tributary.kpl_aggregation`): each
unicorn's readings go in one aggregated Kinesis record, which reaches the functions unchanged and is
opened by them; the poison pills, each under a key of its own, go plain. Payments are Avro framed for
the Glue Schema Registry the template declares: the first half written with schema version 1, the
rest with version 2 (registered before anything is put, zlib-compressed), as producers upgraded
mid-stream would.
The report reads both streams back, opens every aggregate on them as the functions do, and accounts
for every user record: its Kinesis record's sequence number lies in a batch delivered to the
on-failure destination (an aggregate is dead-lettered whole), or its key's item holds its version
(`recordVersion`, the stream position of the user record that wrote it: sequence and subsequence
number) or a newer one. Per key, the item must hold the
newest record that was not dead-lettered (or a newer, dead-lettered one the function had applied
before failing): an older one means the key went back in time, whatever faults were injected.
(Payments repeat a paymentId through its lifecycle.)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from tributary.demos import (
    DemoContext,
    DemoFigures,
    DemoSection,
    RecordOnStream,
    UserRecordOnStream,
    batches_of_stream,
    function_mapping_stats,
    in_failure_batches,
    read_stream,
    user_records_of,
)
from tributary.kpl_aggregation import KeyAggregator
from tributary.producer import SCHEMAS, glue_encoder, json_bytes, payment_events, unicorn_statuses
from tributary.schema_registration import SchemaRegistration
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.avro_framing import COMPRESSION_ZLIB, GLUE_HEADER_VERSION
from tributary_shared.errors import RecordError
from tributary_shared.kinesis_put import PutReport, put_records
from tributary_shared.schema_registry import GlueSchemaRegistry

UNICORNS = ("Shadowfax", "Rocinante", "Bucephalus", "Pegasus", "Epona", "Artax")
UNICORN_READINGS = 60
PAYMENT_EVENTS = 40
PAYMENT_SCHEMA = "payment-event"
# The stream processor's default VERSION_ATTRIBUTE: every item carries the version that wrote it.
VERSION_ATTRIBUTE = "recordVersion"
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


def payment_records(registry: SchemaRegistration) -> list[tuple[str, bytes, str]]:
    """Payments as v1 producers and then upgraded v2 producers write them, poison pills spread through."""
    _, encode_v1 = glue_encoder(registry, PAYMENT_SCHEMA, SCHEMAS / "payment_event_v1.avsc")
    # v2 is checked against v1 under the schema's own compatibility mode before it is registered.
    _, encode_v2 = glue_encoder(registry, PAYMENT_SCHEMA, SCHEMAS / "payment_event_v2.avsc", compress=True)
    events = list(islice(payment_events(start=FLEET_START, seed=11), PAYMENT_EVENTS))
    upgraded_from = len(events) // 2
    encoded = [
        (event["paymentId"], (encode_v2 if position >= upgraded_from else encode_v1)(event), "")
        for position, event in enumerate(events)
    ]
    return _with_poison(encoded, PAYMENT_POISON)


def schema_registry(ctx: DemoContext) -> SchemaRegistration:
    registry_arn = ctx.physical_name("SchemaRegistry")  # Ref of AWS::Glue::Registry is its ARN
    return SchemaRegistration(registry_arn.rsplit("/", 1)[-1], ctx.client("glue"))


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
    aggregate: bool = False
    """Whether its producer packs each key's records into KPL aggregates."""
    records: list[tuple[str, bytes, str]] = field(default_factory=list)
    """(partition key, data, poison reason or ""): the user records, as the producer means them."""
    put: PutReport = field(default_factory=PutReport)
    """What the put took: Kinesis records and PutRecords calls."""


class StreamProcessorDemo:
    name = "stream processor: unicorns and payments"
    required_resources = ("WildrydesStream", "UnicornSensorDataTable", "PaymentsStream", "PaymentsTable",
                          "SchemaRegistry")  # fmt: skip
    parameter_overrides: Mapping[str, str] = {"BatchingWindowSeconds": "0"}

    def __init__(self) -> None:
        self.plans = [
            StreamPlan("WildrydesStream", "UnicornSensorDataTable", "StreamProcessorFunction", ("Name", "StatusTime"),
                       aggregate=True),
            StreamPlan("PaymentsStream", "PaymentsTable", "PaymentProcessorFunction", ("paymentId",)),
        ]

    def produce(self, ctx: DemoContext) -> None:
        self.plans[0].records = unicorn_records()
        self.plans[1].records = payment_records(schema_registry(ctx))
        kinesis = ctx.client("kinesis")
        for plan in self.plans:
            entries = [(key, data) for key, data, _ in plan.records]
            if plan.aggregate:
                entries = [(packed.partition_key, packed.data) for packed in KeyAggregator().pack(entries)]
            plan.put = put_records(kinesis, ctx.physical_name(plan.stream), entries)
            if plan.put.failed_entries:
                raise RuntimeError(f"{plan.stream}: {len(plan.put.failed_entries)} Kinesis records not put")

    def report(self, ctx: DemoContext) -> DemoSection:
        section = DemoSection(self.name, accounted=True, main=True)
        failures = ctx.on_failure_records()
        accounts = []
        for plan in self.plans:
            account = account_stream(ctx, plan, failures)
            accounts.append(account)
            section.lines += describe_account(account, plan, function_mapping_stats(ctx, plan.function))
            problems = account_problems(account)
            section.problems += problems
            section.accounted = section.accounted and not problems
        section.figures = DemoFigures(
            records_in=sum(len(account.user_records) for account in accounts),
            applied=sum(account.written for account in accounts),
            on_failure=sum(account.in_failure for account in accounts),
            lost=sum(len(account.lost) + account.missing for account in accounts),
        )
        return section


@dataclass
class StreamAccount:
    """Where every user record on one stream ended up: its item in the table, or an on-failure batch."""

    stream_name: str
    table_name: str
    on_stream: list[RecordOnStream]
    user_records: list[UserRecordOnStream]
    """The user records of `on_stream`: each aggregate opened, every other record as itself."""
    items: int
    batches: list[Mapping[str, Any]]
    written: int = 0
    in_failure: int = 0
    lost: list[str] = field(default_factory=list)
    """User records neither dead-lettered nor written: no item for their key."""
    missing: int = 0
    """User records this demo put that are not on the stream."""
    stale: list[str] = field(default_factory=list)
    """Keys whose item is older than their newest record that was not dead-lettered: order went back."""
    unknown: list[str] = field(default_factory=list)
    """Keys whose item holds a version no record on the stream has."""
    current: int = 0
    """Items holding their key's newest record that was not dead-lettered."""
    newer_dead_lettered: int = 0
    """Items holding a dead-lettered record newer than every other: applied, then the invocation failed."""
    aggregated_written: int = 0
    """Of `written`, user records of KPL aggregates: the functions opened them (dead-lettered whole, they are not)."""


def account_stream(ctx: DemoContext, plan: StreamPlan, failures: Sequence[Mapping[str, Any]]) -> StreamAccount:
    stream_name = ctx.physical_name(plan.stream)
    table_name = ctx.physical_name(plan.table)
    on_stream = read_stream(ctx.client("kinesis"), stream_name)
    items = scan_items(ctx.client("dynamodb"), table_name, plan.key_attributes, VERSION_ATTRIBUTE)
    function_arn = ctx.arn(plan.function)
    batches = [
        batch
        for batch in batches_of_stream(failures, stream_name)
        if batch["requestContext"]["functionArn"] == function_arn
    ]
    account = StreamAccount(stream_name, table_name, on_stream, user_records_of(on_stream), len(items), batches)
    decode = record_decoder(ctx)
    newest_live: dict[tuple[str, ...], str] = {}
    versions: dict[tuple[str, ...], set[str]] = {}
    # Other demos may share the stream: the processor must account for every user record on it.
    for user_record in account.user_records:
        key, _ = _decoded_key(decode, user_record.data, plan.key_attributes)
        version = user_record.version
        if key is not None:
            versions.setdefault(key, set()).add(version)
        if in_failure_batches(user_record.record, batches):
            account.in_failure += 1
        elif key not in items:
            account.lost.append(user_record.position)
        else:  # its key's item must hold it or a newer record: checked below, per key
            account.written += 1
            account.aggregated_written += user_record.aggregated
            newest_live[key] = max(newest_live.get(key, version), version)
    for key, newest in newest_live.items():
        held = items[key] or ""
        if held == newest:
            account.current += 1
        elif held < newest:
            account.stale.append(" ".join(key))
        elif held in versions[key]:  # newer than every record not dead-lettered: a dead-lettered one
            account.newer_dead_lettered += 1
        else:
            account.unknown.append(" ".join(key))
    put_by_demo = Counter(data for _, data, _ in plan.records)
    account.missing = (put_by_demo - Counter(user_record.data for user_record in account.user_records)).total()
    return account


def describe_account(account: StreamAccount, plan: StreamPlan, mapping: Any | None) -> list[str]:
    poison_by_data = {data: reason for _, data, reason in plan.records if reason}
    user_records, kinesis_records = len(account.user_records), len(account.on_stream)
    on_stream = f"{user_records} on the stream"
    if user_records != kinesis_records:
        on_stream = f"{user_records} user records on the stream in {kinesis_records} Kinesis records"
    lines = [
        f"{account.stream_name}: {len(plan.records)} records put by this demo ({len(poison_by_data)} poison), "
        f"{on_stream}; {account.table_name}: {account.items} items"
    ]
    if plan.aggregate:
        lines.append(_describe_aggregation(account, plan))
    if mapping is not None:  # the mapping sees Kinesis records; an aggregate is one
        lines.append(
            f"  {plan.function}: {mapping.records_in} Kinesis records in, {mapping.invocations} invocations, "
            f"{mapping.retries} retries, {mapping.function_errors} function errors, "
            f"{mapping.records_to_destination} Kinesis records on-failure"
        )
    if framed := [data for _, data, _ in plan.records if data[:1] == bytes([GLUE_HEADER_VERSION])]:
        compressed = sum(data[1] == COMPRESSION_ZLIB for data in framed)
        lines.append(f"  {len(framed)} records are Glue-framed Avro ({compressed} zlib-compressed)")
    lines += [f"  on-failure: {_describe_batch(batch, account.user_records, poison_by_data)}"
              for batch in account.batches]  # fmt: skip
    lines.append(
        f"  order per key: {account.current} of {account.items} items hold their key's newest record that was "
        f"not dead-lettered, {account.newer_dead_lettered} a newer dead-lettered one, {len(account.stale)} an older one"
    )
    lines.append(
        f"  accounted for: {account.written} applied + {account.in_failure} on-failure (in dead-lettered batches) "
        f"of {len(account.user_records)} user records, {len(account.lost)} lost"
    )
    return lines


def _describe_aggregation(account: StreamAccount, plan: StreamPlan) -> str:
    aggregates = {user_record.record for user_record in account.user_records if user_record.aggregated}
    in_aggregates = sum(user_record.aggregated for user_record in account.user_records)
    calls = plan.put.requests
    return (
        f"  KPL-aggregated, one partition key per aggregate: {len(plan.records)} user records in "
        f"{plan.put.sent} Kinesis records ({calls} PutRecords call{'' if calls == 1 else 's'}); "
        f"on the stream {len(aggregates)} aggregates hold {in_aggregates} user records, "
        f"{account.aggregated_written} of them applied"
    )


def account_problems(account: StreamAccount) -> list[str]:
    problems = []
    if account.lost:
        problems.append(
            f"{account.stream_name}: {len(account.lost)} records neither written nor on-failure: {account.lost[:3]}"
        )
    if account.stale:
        problems.append(f"{account.table_name}: {len(account.stale)} items are older than their key's newest record "
                        f"that was not dead-lettered (order went back): {account.stale[:3]}")  # fmt: skip
    if account.unknown:
        problems.append(f"{account.table_name}: {len(account.unknown)} items hold a {VERSION_ATTRIBUTE} no record "
                        f"on the stream has: {account.unknown[:3]}")  # fmt: skip
    if account.missing:
        problems.append(f"{account.stream_name}: {account.missing} records put by the demo are not on the stream")
    return problems


def scan_items(
    dynamodb: Any, table: str, key_attributes: Sequence[str], state_field: str
) -> dict[tuple[str, ...], str | None]:
    """Each item's key, with its string `state_field` (None when the item has none)."""
    names = [*key_attributes, state_field]
    items: dict[tuple[str, ...], str | None] = {}
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table,
        ProjectionExpression=", ".join(f"#a{position}" for position in range(len(names))),
        ExpressionAttributeNames={f"#a{position}": name for position, name in enumerate(names)},
    ):
        for item in page["Items"]:
            state = item.get(state_field, {}).get("S")
            items[tuple(item[name]["S"] for name in key_attributes)] = state
    return items


def record_decoder(ctx: DemoContext) -> Callable[[bytes], Any]:
    """JSON, or Glue-framed Avro looked up in the template's registry (the demo's own, not the functions')."""
    registry = schema_registry(ctx)
    avro = RegistryDeserializer(GlueSchemaRegistry(registry.registry_name, registry.client).schema_definition)
    return lambda data: avro(data) if data[:1] == bytes([GLUE_HEADER_VERSION]) else json.loads(data)


def _decoded_key(
    decode: Callable[[bytes], Any], data: bytes, key_attributes: Sequence[str]
) -> tuple[tuple[str, ...] | None, dict[str, Any]]:
    """The record's item key and its decoded value; (None, {}) for a record that is no item."""
    try:
        value = decode(data)
        key = tuple(value[name] for name in key_attributes)
    except (RecordError, ValueError, KeyError, TypeError):
        return None, {}
    return (key, value) if all(isinstance(part, str) for part in key) else (None, {})


def _describe_batch(
    batch: Mapping[str, Any], user_records: Sequence[UserRecordOnStream], poison: Mapping[bytes, str]
) -> str:
    info = batch["KinesisBatchInfo"]
    reasons = sorted({
        poison.get(user_record.data, "a valid record")
        for user_record in user_records
        if in_failure_batches(user_record.record, [batch])
    })  # fmt: skip
    condition = batch.get("requestContext", {}).get("condition")
    return (
        f"{condition} after {batch.get('requestContext', {}).get('approximateInvokeCount')} invocations: "
        f"{info['batchSize']} record(s) {info['startSequenceNumber'][-6:]}..{info['endSequenceNumber'][-6:]} "
        f"({', '.join(reasons)})"
    )


PIPELINE = StreamProcessorDemo()
