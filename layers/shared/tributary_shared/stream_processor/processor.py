"""Kinesis → DynamoDB read model: decode, validate and write a batch, report what failed.

It runs on the Kinesis batch skeleton (`kinesis_batch`), which holds the rules every stream
function shares; here:

- records are decoded in sequence order; a poison record (bad base64/JSON/Avro, missing or
  mistyped key, oversized, nested too deep, a number DynamoDB cannot hold exactly) fails alone and
  the valid records after it are still written; a transient failure (registry outage, out of time)
  stops decoding, leaving the rest for the retry;
- every item carries its record's version (`recordVersion` by default) and is written only if the
  table holds nothing newer for its key (TransactWriteItems, 100 conditional Puts a request). So
  the retry from a reported record, a bisected half, a redelivery or a replay never takes a key
  back in time, and the final item of each key is its newest record that was not dead-lettered;
- the response names the lowest failed sequence number, so the mapping checkpoints before it,
  retries from it, bisects, and finally routes a poison record to the on-failure destination.

Permanent and transient failures are counted and logged apart; both are reported, neither is
dropped, and no record is reported as done unless it was written or a newer version was.
"""

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tributary_shared.dynamo_writer import MAX_TRANSACTION_ITEMS, BatchWriter, PendingItem, WriteReport
from tributary_shared.errors import PoisonRecordError
from tributary_shared.invocation import LambdaContextLike, LoggerLike
from tributary_shared.kinesis_batch import BatchLedger, KinesisBatch, KinesisRecord
from tributary_shared.metrics import MetricsLike, publish
from tributary_shared.payloads import Decoder, PayloadDecoder, reject_reported_error
from tributary_shared.stream_processor.settings import StreamProcessorSettings

# DynamoDB stores documents nested at most 32 levels deep.
MAX_NESTING_DEPTH = 32


@dataclass
class BatchOutcome(BatchLedger):
    """Every record of one invocation: written, superseded, failed (with reason), or left for the retry."""

    written: int = 0
    superseded: int = 0
    requests: int = 0

    def add(self, report: WriteReport) -> None:
        self.written += len(report.written)
        self.superseded += len(report.superseded)
        self.failed_permanent.update(report.permanent)
        self.failed_transient.update(report.transient)
        self.requests += report.requests


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
    """One function's work: settings built at cold start; the writer and the decoder from them unless given."""

    def __init__(
        self,
        settings: StreamProcessorSettings,
        *,
        writer: BatchWriter | None = None,
        decode: Decoder | None = None,
        logger: LoggerLike | None = None,
        metrics: MetricsLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.writer = writer or BatchWriter(
            settings.table_name, settings.key_attributes, version_attribute=settings.version_attribute
        )
        self.decode = decode or PayloadDecoder(registry=settings.registry).decode
        self.logger = logger
        self.metrics = metrics
        self.clock = clock

    def handle(self, event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        outcome = self.process(KinesisBatch.of_invocation(event, context, BatchOutcome, clock=self.clock))
        self._publish(outcome)
        return outcome.response()

    def process(self, batch: KinesisBatch[BatchOutcome]) -> BatchOutcome:
        """Decode, validate and write one transaction's worth of records at a time.

        Memory stays flat in the batch's size: only one chunk's items exist at once. A key repeated
        across chunks is written once per chunk, in order, under the version guard.
        """
        outcome = batch.ledger
        for chunk in itertools.batched(batch.each(self.item_of), MAX_TRANSACTION_ITEMS, strict=False):
            pending = [PendingItem(record.sequence_number, item, record.version) for record, item in chunk]
            report = self.writer.write(pending, batch.deadline)
            outcome.add(report)
            if report.transient:
                # The mapping retries from the lowest failed record: what is not decoded yet comes back with it.
                outcome.not_reached = batch.records_not_walked
                break
        return outcome

    def item_of(self, record: KinesisRecord) -> dict[str, Any]:
        item = self.decode(record.data(self.settings.max_record_bytes))
        validate_item(item, self.settings.key_attributes)
        return item

    def _publish(self, outcome: BatchOutcome) -> None:
        if self.logger is not None:
            for sequence, reason in outcome.failed_permanent.items():
                self.logger.warning("permanent failure", extra={"sequence_number": sequence, "reason": reason})
            for sequence, reason in outcome.failed_transient.items():
                self.logger.warning("transient failure", extra={"sequence_number": sequence, "reason": reason})
            self.logger.info("batch processed", extra={"outcome": outcome.response(), "written": outcome.written})
        publish(
            self.metrics,
            {
                **outcome.metrics(),
                "RecordsWritten": outcome.written,
                "RecordsSuperseded": outcome.superseded,
                "DynamoDBRequests": outcome.requests,
            },
        )
