"""Kinesis → DynamoDB read model: decode, validate and write a batch, report what failed.

The contract with Lambda's event source mapping (ReportBatchItemFailures + bisect):

- records are handled in sequence order; every valid record is written (BatchWriteItem, 25 at a
  time), also those after a poison record, so they are stored whatever the mapping does next (the
  writes are idempotent upserts, re-applied in order on a retry);
- decoding stops at the first *transient* failure (a registry outage hits every later record too),
  leaving the rest for the retry;
- the response names the lowest failed sequence number, so the mapping checkpoints before it,
  retries from it, bisects, and finally routes a poison record to the on-failure destination.

Permanent failures (bad base64/JSON/Avro, missing or mistyped key, oversized record) and transient
ones (throttling, registry outage, out of time) are counted and logged apart; both are reported,
neither is dropped, and no record is reported as done unless it was written.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tributary_shared.dynamo_writer import BatchWriter, PendingItem, WriteReport
from tributary_shared.errors import PoisonRecordError, RecordError
from tributary_shared.invocation import (
    LambdaContextLike,
    LoggerLike,
    MetricsLike,
    batch_item_failures,
    bounded_int_env,
    invocation_deadline,
    kinesis_data,
    required_env,
)
from tributary_shared.payloads import decode_payload, reject_reported_error

# DynamoDB's item size limit: a record larger than this can never be written.
DEFAULT_MAX_RECORD_BYTES = 400 * 1024
# DynamoDB stores documents nested at most 32 levels deep.
MAX_NESTING_DEPTH = 32


@dataclass(frozen=True)
class ProcessorConfig:
    table_name: str
    key_attributes: tuple[str, ...]
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ProcessorConfig":
        settings = required_env("stream processor", "TABLE_NAME", "KEY_ATTRIBUTES", environ=environ)
        keys = tuple(name.strip() for name in settings["KEY_ATTRIBUTES"].split(",") if name.strip())
        max_bytes = bounded_int_env("MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES, 1, DEFAULT_MAX_RECORD_BYTES, environ)
        return cls(table_name=settings["TABLE_NAME"], key_attributes=keys, max_record_bytes=max_bytes)


@dataclass
class BatchOutcome:
    """Every record of one invocation: written, failed (with reason), or left for the retry."""

    records_in: int = 0
    written: int = 0
    failed_permanent: dict[str, str] = field(default_factory=dict)
    failed_transient: dict[str, str] = field(default_factory=dict)
    deferred: int = 0
    requests: int = 0

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": batch_item_failures([*self.failed_permanent, *self.failed_transient])}


def nesting_depth(value: Any) -> int:
    """Depth of nested maps and lists, without recursion: a hostile record cannot blow the stack."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth + 1)
            if depth + 1 > MAX_NESTING_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def validate_item(item: dict[str, Any], key_attributes: Sequence[str]) -> None:
    validate_keys(item, key_attributes)
    reject_reported_error(item)
    if nesting_depth(item) > MAX_NESTING_DEPTH:
        raise PoisonRecordError(f"record is nested deeper than {MAX_NESTING_DEPTH} levels, DynamoDB's limit")


def validate_keys(item: dict[str, Any], key_attributes: Sequence[str]) -> None:
    for name in key_attributes:
        value = item.get(name)
        if value is None:
            raise PoisonRecordError(f"record has no key attribute {name!r}")
        if not isinstance(value, str):
            raise PoisonRecordError(f"key attribute {name!r} must be a string, got {type(value).__name__}")
        if not value:
            raise PoisonRecordError(f"key attribute {name!r} is empty")


class StreamProcessor:
    def __init__(
        self,
        config: ProcessorConfig,
        *,
        writer: BatchWriter | None = None,
        decode: Callable[[bytes], dict[str, Any]] = decode_payload,
        logger: LoggerLike | None = None,
        metrics: MetricsLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.writer = writer or BatchWriter(config.table_name, config.key_attributes)
        self.decode = decode
        self.logger = logger
        self.metrics = metrics
        self.clock = clock

    @classmethod
    def from_env(cls, **kwargs: Any) -> "StreamProcessor":
        return cls(ProcessorConfig.from_env(), **kwargs)

    def handle(self, event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        deadline = invocation_deadline(context, self.clock)
        outcome = self.process(event.get("Records") or [], deadline)
        self._publish(outcome)
        return outcome.response()

    def process(self, records: Sequence[dict[str, Any]], deadline: float) -> BatchOutcome:
        ordered = sorted(records, key=lambda record: int(record["kinesis"]["sequenceNumber"]))
        outcome = BatchOutcome(records_in=len(ordered))
        pending = self._decode_until_transient_failure(ordered, outcome)
        report = self.writer.write(pending, deadline) if pending else WriteReport()
        outcome.written = len(report.written)
        outcome.failed_permanent.update(report.permanent)
        outcome.failed_transient.update(report.transient)
        outcome.requests = report.requests
        return outcome

    def _decode_until_transient_failure(
        self, records: Sequence[dict[str, Any]], outcome: BatchOutcome
    ) -> list[PendingItem]:
        pending: list[PendingItem] = []
        for position, record in enumerate(records):
            sequence = record["kinesis"]["sequenceNumber"]
            try:
                item = self.decode(kinesis_data(record, self.config.max_record_bytes))
                validate_item(item, self.config.key_attributes)
            except RecordError as error:
                if error.permanent:
                    outcome.failed_permanent[sequence] = error.reason
                    continue
                outcome.failed_transient[sequence] = error.reason
                outcome.deferred = len(records) - position - 1
                return pending
            pending.append(PendingItem(ref=sequence, item=item))
        return pending

    def _publish(self, outcome: BatchOutcome) -> None:
        if self.logger is not None:
            for sequence, reason in outcome.failed_permanent.items():
                self.logger.warning("permanent failure", extra={"sequence_number": sequence, "reason": reason})
            for sequence, reason in outcome.failed_transient.items():
                self.logger.warning("transient failure", extra={"sequence_number": sequence, "reason": reason})
            self.logger.info("batch processed", extra={"outcome": outcome.response(), "written": outcome.written})
        if self.metrics is not None:
            for name, value in (
                ("RecordsIn", outcome.records_in),
                ("RecordsWritten", outcome.written),
                ("FailedPermanent", len(outcome.failed_permanent)),
                ("FailedTransient", len(outcome.failed_transient)),
                ("RecordsDeferred", outcome.deferred),
                ("DynamoDBRequests", outcome.requests),
            ):
                self.metrics.add_metric(name=name, unit="Count", value=value)
