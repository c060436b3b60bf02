"""The demo's last step: fix the cause of some dead-lettered records, redrive, and account for every one.

After the pipelines' reports, the on-failure queue holds the poison pills every pipeline gave up. This
step adds records that failed for a cause that can be fixed: producers move to a schema version 3
while the schema registry is down (a `glue.unavailable` outage injected on purpose), so the payment
processor fails those payments transiently until its mapping gives them up. The registry comes back,
newer payments of two of those paymentIds arrive and are applied, and the redrive state machine runs
(the same ASL file as in AWS, in moto's interpreter). Then, read back independently of the summary:

- every record of every dead-lettered batch is in its read model (the item holds it, or a newer one it
  must not replace: the two payments with newer items keep them), or quarantined with a reason, or
  reported lost to retention: 0 unaccounted for;
- the on-failure queue is empty, and the summary's figures agree with the tables and the bucket.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from tributary.avro_encoding import encode_glue
from tributary.demos import DemoContext, DemoFigures, DemoSection, RecordOnStream, in_failure_batches, read_stream
from tributary.demos.redrive_summary import STATE_MACHINE_NAME, summary_lines
from tributary.demos.stream_processor import PAYMENT_SCHEMA, VERSION_ATTRIBUTE, record_decoder, schema_registry
from tributary.producer import SCHEMAS
from tributary.runtime.executions import LOCAL_REDRIVE_OPTIONS, run_execution
from tributary_shared.avro_schemas import canonical_definition, parse_definition
from tributary_shared.errors import RecordError
from tributary_shared.kinesis_batch import record_version

OUTAGE = "glue.unavailable"
PIPELINE_FUNCTIONS = ("StreamProcessorFunction", "PaymentProcessorFunction", "AggregatorFunction",
                      "OptInUpdaterFunction", "CsvLoaderFunction")  # fmt: skip
OUTAGE_PAYMENTS = 4
ACCOUNTED_AS = ("every dead-lettered record accounted for: re-applied or superseded (applied), "
                "or quarantined (on-failure)")
NEWER_PAYMENTS = 2
# Read models the demo reads a redriven record back from: function logical id -> (table, key attributes).
READ_MODELS = {
    "StreamProcessorFunction": ("UnicornSensorDataTable", ("Name", "StatusTime")),
    "PaymentProcessorFunction": ("PaymentsTable", ("paymentId",)),
}


class RedriveStepContext(DemoContext, Protocol):
    """What the step needs beyond a plug-in's context: a drain, an outage, the queue as it is now."""

    def drain(self) -> None: ...

    def outage(self, kind: str) -> AbstractContextManager[None]: ...

    def current_failure_records(self) -> Sequence[dict]: ...


@dataclass
class DeadLettered:
    """One record of a batch a function dead-lettered, read back from its stream before the redrive."""

    function: str  # the function that gave it up (a record two functions gave up counts twice)
    stream: str
    record: RecordOnStream
    key: tuple[str, ...] | None  # its item's key in the function's read model, when it decodes to one
    accounted: str = ""  # how it came out: "re-applied", "superseded by a newer item", "quarantined"...


@dataclass(frozen=True)
class PutPayment:
    payment_id: str
    status: str
    sequence_number: str

    @property
    def version(self) -> str:
        return record_version(self.sequence_number)


@dataclass
class RedriveDemo:
    name: str = "redrive: dead-lettered records back through their pipelines"
    required_resources: tuple[str, ...] = ("RedriveStateMachine", "PaymentsStream", "PaymentsTable",
                                           "PaymentProcessorFunction", "SchemaRegistry", "FailedRecordsQueue")
    outage_payments: list[PutPayment] = field(default_factory=list)  # put while the registry was down
    newer_payments: list[PutPayment] = field(default_factory=list)  # put after, for some of the same ids

    def run(self, ctx: RedriveStepContext) -> DemoSection:
        section = DemoSection(self.name, accounted=True, accounted_as=ACCOUNTED_AS)
        section.lines += self.break_and_fix(ctx)
        dead_lettered = self.dead_lettered(ctx)
        functions = {ctx.physical_name(name): name.removesuffix("Function") for name in PIPELINE_FUNCTIONS
                     if ctx.has_resource(name)}  # fmt: skip
        counts = Counter(f"{item.stream} by {functions.get(item.function, item.function)}" for item in dead_lettered)
        section.lines.append(f"before the redrive: {len(dead_lettered)} records in dead-lettered batches: "
                             + ", ".join(f"{n} of {what}" for what, n in sorted(counts.items())))
        given_up = {item.record.sequence_number for item in dead_lettered}
        if missing := [p.payment_id for p in self.outage_payments if p.sequence_number not in given_up]:
            section.problems.append(f"the outage did not make the payment processor give up {', '.join(missing)}")
        stepfunctions = ctx.client("stepfunctions")
        result = run_execution(stepfunctions, ctx.physical_name("RedriveStateMachine"),
                               {**LOCAL_REDRIVE_OPTIONS, "retryDelaySeconds": 0.05}, name="demo-redrive", timeout_s=600)
        section.lines.append(f"redrive execution {STATE_MACHINE_NAME}/demo-redrive: {result.status} "
                             f"in {result.seconds:.1f} s")  # fmt: skip
        if result.status != "SUCCEEDED":
            section.problems.append(f"the redrive execution ended {result.status}: {result.error}: {result.cause}")
            section.accounted = False
            return section
        ctx.drain()  # what the redrive handed on (a CSV load continuing itself) runs too
        section.lines += [f"  {line}" for line in summary_lines(result.output)]
        section.problems += self.account(ctx, dead_lettered, result.output, section.lines)
        outcome = Counter(item.accounted or "unaccounted" for item in dead_lettered)
        section.figures = DemoFigures(
            records_in=len(dead_lettered), applied=outcome["re-applied"] + outcome["superseded by a newer item"],
            on_failure=outcome["quarantined"], lost=outcome["unaccounted"] + outcome["lost to retention"],
        )
        section.accounted = not section.problems
        return section

    def break_and_fix(self, ctx: RedriveStepContext) -> list[str]:
        """The cause (an outage while producers move to schema v3), then the fix (the registry back)."""
        registry = schema_registry(ctx)
        definition = canonical_definition(json.dumps(payment_schema_v3()))
        version_id = registry.version_for(PAYMENT_SCHEMA, definition, compatibility="FULL")
        schema = parse_definition(definition)
        payment_ids = [key[0] for key in sorted(scan_versions(ctx, "PaymentsTable", ("paymentId",)))][:OUTAGE_PAYMENTS]
        moment = datetime.now(UTC).replace(microsecond=0)
        kinesis, stream = ctx.client("kinesis"), ctx.physical_name("PaymentsStream")

        def put(payment_id: str, status: str) -> PutPayment:
            data = encode_glue(payment(payment_id, status, moment), schema, version_id)
            response = kinesis.put_record(StreamName=stream, PartitionKey=payment_id, Data=data)
            return PutPayment(payment_id, status, response["SequenceNumber"])

        with ctx.outage(OUTAGE):
            self.outage_payments = [put(payment_id, "REFUNDED") for payment_id in payment_ids]
            ctx.drain()
        self.newer_payments = [put(payment_id, "SETTLED") for payment_id in payment_ids[-NEWER_PAYMENTS:]]
        ctx.drain()
        return [
            f"the cause: the schema registry down ({OUTAGE} injected) while {len(payment_ids)} payments arrived "
            f"in schema version 3 ({', '.join(payment_ids)}): the payment processor failed them until its "
            "mapping gave them up",
            f"the fix: the registry back; meanwhile {len(self.newer_payments)} newer payments of "
            f"{', '.join(p.payment_id for p in self.newer_payments)} arrived and were applied",
        ]

    def dead_lettered(self, ctx: RedriveStepContext) -> list[DeadLettered]:
        """Every record of every batch in the on-failure destination now, read back from its stream."""
        decode = record_decoder(ctx)
        key_attributes = {ctx.physical_name(function): keys for function, (_, keys) in READ_MODELS.items()}
        streams: dict[str, list[RecordOnStream]] = {}
        records: list[DeadLettered] = []
        for failure in ctx.current_failure_records():
            info = failure.get("KinesisBatchInfo")
            if not info:
                continue
            function = failure["requestContext"]["functionArn"].rsplit(":function:", 1)[-1].split(":")[0]
            stream = info["streamArn"].rsplit("/", 1)[-1]
            on_stream = streams.setdefault(stream, read_stream(ctx.client("kinesis"), stream))
            keys = key_attributes.get(function, ())
            records += [DeadLettered(function, stream, record, decoded_key(decode, record.data, keys))
                        for record in on_stream if in_failure_batches(record, [failure])]  # fmt: skip
        return records

    def account(self, ctx: RedriveStepContext, dead_lettered: list[DeadLettered], summary: Mapping[str, Any],
                lines: list[str]) -> list[str]:  # fmt: skip
        """Where every dead-lettered record is now, read back from the tables and the bucket."""
        quarantined = quarantine_lines(ctx)
        in_quarantine = {(line.get("function"), line.get("shardId"), line.get("sequenceNumber"))
                         for line in quarantined if line.get("kind") == "record"}  # fmt: skip
        lost = [line for line in quarantined if line.get("kind") == "lost"]
        versions = {ctx.physical_name(function): scan_versions(ctx, table, keys)
                    for function, (table, keys) in READ_MODELS.items() if ctx.has_resource(table)}  # fmt: skip
        for item in dead_lettered:
            version = record_version(item.record.sequence_number)
            held = versions.get(item.function, {}).get(item.key) if item.key is not None else None
            if (item.function, item.record.shard_id, item.record.sequence_number) in in_quarantine:
                item.accounted = "quarantined"
            elif held is not None and held == version:
                item.accounted = "re-applied"
            elif held is not None and held > version:
                item.accounted = "superseded by a newer item"
            elif any(line.get("function") == item.function and _in_range(item.record, line) for line in lost):
                item.accounted = "lost to retention"
        payments = versions.get(ctx.physical_name("PaymentProcessorFunction"), {})
        lines += self.describe_payments(ctx, payments)
        lines += [f"quarantined {line['shardId']} {line['sequenceNumber']} ({line['pipeline']}): {line['reason']}"
                  for line in quarantined if line.get("kind") == "record"]  # fmt: skip
        outcome = Counter(item.accounted or "unaccounted" for item in dead_lettered)
        left = len(ctx.current_failure_records())
        lines.append(f"after: {left} messages in the on-failure queue; {len(dead_lettered)} dead-lettered records: "
                     + ", ".join(f"{count} {what}" for what, count in sorted(outcome.items()))
                     + f"; {outcome['unaccounted']} unaccounted for")  # fmt: skip
        return self.problems(dead_lettered, outcome, left, summary, len(in_quarantine), payments)

    def describe_payments(self, ctx: RedriveStepContext, versions: Mapping[Any, str]) -> list[str]:
        lines = [f"{ctx.physical_name('PaymentsTable')}, the payments the outage dead-lettered:"]
        for key, expected, holds in self.payment_verdicts(versions):
            verdict = "" if holds else f"  <- holds {versions.get((key,), 'nothing')}, not {expected.version}"
            what = (f"kept its newer {expected.status} record, untouched" if expected.status == "SETTLED"
                    else f"holds its redriven {expected.status} record")  # fmt: skip
            lines.append(f"  {key}: {what}{verdict}")
        return lines

    def payment_verdicts(self, versions: Mapping[Any, str]) -> list[tuple[str, PutPayment, bool]]:
        """Per payment the outage dead-lettered: what its item must hold now, and whether it does."""
        newest = {p.payment_id: p for p in self.outage_payments} | {p.payment_id: p for p in self.newer_payments}
        return [(key, put, versions.get((key,)) == put.version) for key, put in newest.items()]

    def problems(self, dead_lettered: list[DeadLettered], outcome: Counter[str], left: int,
                 summary: Mapping[str, Any], quarantined_lines: int,
                 versions: Mapping[Any, str]) -> list[str]:  # fmt: skip
        problems = []
        if outcome["unaccounted"]:
            missing = [f"{i.record.shard_id} {i.record.sequence_number}" for i in dead_lettered if not i.accounted]
            problems.append(f"{outcome['unaccounted']} dead-lettered records are in no read model, quarantine or "
                            f"lost range: {missing[:3]}")  # fmt: skip
        if left:
            problems.append(f"{left} messages are still in the on-failure destination")
        if summary.get("quarantined") != quarantined_lines:
            problems.append(f"the summary says {summary.get('quarantined')} quarantined, the bucket holds "
                            f"{quarantined_lines}")  # fmt: skip
        applied = outcome["re-applied"] + outcome["superseded by a newer item"]
        summarised = sum(int(summary.get(key, 0)) for key in ("reApplied", "superseded", "appliedUnreported"))
        if summarised != applied:
            problems.append(f"the summary says {summarised} records re-applied or superseded, the tables {applied}")
        reported = (int(summary.get("reApplied", 0)), int(summary.get("superseded", 0)))
        if not summary.get("appliedUnreported") and reported != (outcome["re-applied"],
                                                                 outcome["superseded by a newer item"]):
            problems.append(f"the summary says {reported[0]} re-applied and {reported[1]} superseded, the tables "
                            f"{outcome['re-applied']} and {outcome['superseded by a newer item']}")  # fmt: skip
        problems += [f"payment {key}: its item does not hold its {put.status} record {put.version}"
                     for key, put, holds in self.payment_verdicts(versions) if not holds]  # fmt: skip
        return problems


def payment_schema_v3() -> dict[str, Any]:
    """schemas/payment_event_v2.avsc and one more optional field: a FULL-compatible version 3."""
    schema = json.loads((SCHEMAS / "payment_event_v2.avsc").read_text())
    schema["fields"].append({"name": "reason", "type": ["null", "string"], "default": None,
                             "doc": "Why the payment changed state; added in version 3"})  # fmt: skip
    return schema


def payment(payment_id: str, status: str, moment: datetime) -> dict[str, Any]:
    return {"paymentId": payment_id, "accountId": "acct-0001", "amount": Decimal("12.50"), "currency": "EUR",
            "status": status, "createdAt": moment, "channel": "web", "reason": f"redrive demo: {status.lower()}"}


def decoded_key(decode: Callable[[bytes], Any], data: bytes, key_attributes: Sequence[str]) -> tuple[str, ...] | None:
    """The record's item key in its read model; None for a record that is no item (a poison pill)."""
    if not key_attributes:
        return None
    try:
        value = decode(data)
        key = tuple(value[name] for name in key_attributes)
    except (RecordError, ValueError, KeyError, TypeError):
        return None
    return key if all(isinstance(part, str) for part in key) else None


def scan_versions(ctx: DemoContext, table: str, key_attributes: Sequence[str]) -> dict[tuple[str, ...], str]:
    """Each item's key and its `recordVersion`."""
    versions: dict[tuple[str, ...], str] = {}
    for page in ctx.client("dynamodb").get_paginator("scan").paginate(TableName=ctx.physical_name(table)):
        for item in page["Items"]:
            versions[tuple(item[name]["S"] for name in key_attributes)] = item.get(VERSION_ATTRIBUTE, {}).get("S", "")
    return versions


def quarantine_lines(ctx: DemoContext) -> list[dict[str, Any]]:
    bucket = ctx.physical_name("QuarantineBucket" if ctx.has_resource("QuarantineBucket") else "FailedRecordsBucket")
    s3 = ctx.client("s3")
    lines: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="quarantine/"):
        for entry in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode()
            lines += [json.loads(line) for line in body.splitlines() if line.strip()]
    return lines


def _in_range(record: RecordOnStream, lost: Mapping[str, Any]) -> bool:
    return lost.get("shardId") == record.shard_id and int(lost["from"]) <= int(record.sequence_number) <= int(
        lost["to"])  # fmt: skip


STEP = RedriveDemo()
