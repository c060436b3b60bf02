"""The one Kinesis batch skeleton every stream function runs on.

It owns what Lambda's event source mapping (ReportBatchItemFailures, bisect, retries) requires of
any function, so each pipeline only says how to turn one record into work:

- records in sequence order, their sequence numbers validated (decimal, compared as integers);
- the deadline: no record is started once the invocation's time is up;
- classification: `RecordError.permanent` decides poison (fails alone, the mapping isolates it and
  sends it to the on-failure destination) or transient (the batch is retried from it). An AWS error
  is transient. A `ConfigurationError` (and MemoryError) fails the invocation: the deployment is at
  fault, not the record. Any other exception raised for one record is that record's poison, so
  hostile input can never fail the batch or the process;
- the ordering rule (below), the partial batch response (the lowest failed sequence number) and
  the metrics every stream function publishes.

The ordering rule. Lambda keeps order in what it *delivers*, not in what a function *applies*: a
retry from the reported record, a bisected half, a redelivery after a crash and, later, a replay
from the on-failure destination all bring back records older than some already applied. So every
write a read model receives is *version-guarded*: the item carries `record_version` of the record
that wrote it, and the write is conditional on being newer (see `dynamo_writer`). With that, valid
records after a poison record are applied in the same invocation (so a poison record never holds
valid ones hostage, whatever AWS does with a partial response naming a batch's first record), and
no delivery order can make a key go back in time. A transient failure still stops the batch where
it happened: it would hit the records after it too, and the retry starts there.
"""

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tributary_shared.errors import ConfigurationError, RecordError, TransientError
from tributary_shared.invocation import (
    DEADLINE_MARGIN_S,
    LambdaContextLike,
    batch_item_failures,
    invocation_deadline,
    kinesis_data,
)

# Kinesis' API pattern for a sequence number: 0|([1-9]\d{0,128}).
MAX_SEQUENCE_DIGITS = 129
# A KPL aggregate holds at most 1 MiB of user records of at least 2 bytes each.
MAX_SUBSEQUENCE = 999_999

_log = logging.getLogger(__name__)


class InvalidEventError(ValueError):
    """The event is not a Kinesis event from Lambda: a record cannot even be identified."""


def record_version(sequence_number: str, subsequence: int = 0) -> str:
    """The record's stream position as text that sorts as the position does.

    A length prefix makes text order equal integer order for sequence numbers of any length;
    the subsequence (a user record's place inside a KPL aggregate) is fixed width. For example
    `056:49590338271490256608559692538361571095921575989136588898:000000`.
    """
    if not 0 <= subsequence <= MAX_SUBSEQUENCE:
        raise ValueError(f"subsequence {subsequence} is outside 0..{MAX_SUBSEQUENCE}")
    return f"{len(sequence_number):03d}:{sequence_number}:{subsequence:06d}"


def validated_sequence_number(record: Any, position: int) -> str:
    kinesis = record.get("kinesis") if isinstance(record, Mapping) else None
    sequence = kinesis.get("sequenceNumber") if isinstance(kinesis, Mapping) else None
    if (
        not isinstance(sequence, str)
        or not sequence.isascii()
        or not sequence.isdecimal()
        or len(sequence) > MAX_SEQUENCE_DIGITS
        or (len(sequence) > 1 and sequence[0] == "0")
    ):
        # Lambda always sends one: without it the record cannot be reported, only the invocation can fail.
        raise InvalidEventError(f"record {position} has no valid kinesis.sequenceNumber: {sequence!r:.80}")
    return sequence


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """One record of a Kinesis event, identified by its stream position."""

    sequence_number: str
    event_record: Mapping[str, Any]
    subsequence_number: int = 0

    @property
    def version(self) -> str:
        return record_version(self.sequence_number, self.subsequence_number)

    def data(self, max_bytes: int | None = None) -> bytes:
        return kinesis_data(self.event_record, max_bytes)


def ordered_records(event: Any) -> list[Mapping[str, Any]]:
    """The event's records in sequence order; InvalidEventError if the event is not Lambda's.

    Lambda sends a batch in order, so the records are only checked (every sequence number read
    once, nothing built per record) and sorted only if they are not: a batch of 10,000 costs no
    memory beyond the event itself.
    """
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"event must be a JSON object, got {type(event).__name__}")
    raw = event.get("Records") or []
    if not isinstance(raw, list):
        raise InvalidEventError("event 'Records' must be a list")
    previous, in_order = -1, True
    for position, record in enumerate(raw):
        sequence = int(validated_sequence_number(record, position))
        in_order = in_order and sequence > previous
        previous = sequence
    return raw if in_order else sorted(raw, key=lambda record: int(record["kinesis"]["sequenceNumber"]))


def _record(event_record: Mapping[str, Any]) -> KinesisRecord:
    return KinesisRecord(event_record["kinesis"]["sequenceNumber"], event_record)


@dataclass
class BatchLedger:
    """Every record of one invocation: done, failed (with why), or not reached."""

    records_in: int = 0
    done: int = 0
    failed_permanent: dict[str, str] = field(default_factory=dict)
    failed_transient: dict[str, str] = field(default_factory=dict)
    not_reached: int = 0

    def fail(self, record: KinesisRecord, error: RecordError) -> None:
        failures = self.failed_permanent if error.permanent else self.failed_transient
        failures.setdefault(record.sequence_number, error.reason)

    @property
    def failed_sequence_numbers(self) -> list[str]:
        return [*self.failed_permanent, *self.failed_transient]

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": batch_item_failures(self.failed_sequence_numbers)}

    def metrics(self) -> dict[str, int]:
        """The counts every stream function publishes (`metrics.publish`), by metric name."""
        return {
            "RecordsIn": self.records_in,
            "FailedPermanent": len(self.failed_permanent),
            "FailedTransient": len(self.failed_transient),
            "RecordsDeferred": self.not_reached,
        }


def as_record_error(error: Exception) -> RecordError:
    """Any exception raised while handling one record, classified for the mapping."""
    if isinstance(error, RecordError):
        return error
    if isinstance(error, ClientError | BotoCoreError):
        return TransientError(f"{type(error).__name__}: {error}")
    # A bug reached by hostile input: isolate the record, never the batch. Logged with its traceback.
    _log.error("unexpected error handling one record", exc_info=error)
    return RecordError(f"unexpected {type(error).__name__} handling the record: {error!s:.200}")


class KinesisBatch[Ledger: BatchLedger]:
    """One invocation's records, deadline and ledger; `each` walks the records under the rules above.

    `ledger_type` lets a pipeline keep its own counts beside the shared ones (a BatchLedger subclass).
    """

    def __init__(
        self,
        event_records: list[Mapping[str, Any]],
        deadline: float,
        ledger_type: type[Ledger] = BatchLedger,  # type: ignore[assignment]
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.event_records = event_records  # in sequence order, sequence numbers validated
        self.deadline = deadline
        self.clock = clock
        self.ledger: Ledger = ledger_type(records_in=len(event_records))
        self._position = -1

    @property
    def records(self) -> list[KinesisRecord]:
        """Every record at once, for a pipeline that must see the whole batch before acting."""
        return [_record(event_record) for event_record in self.event_records]

    @classmethod
    def of_invocation(
        cls,
        event: Any,
        context: LambdaContextLike,
        ledger_type: type[Ledger] = BatchLedger,  # type: ignore[assignment]
        *,
        clock: Callable[[], float] = time.monotonic,
        margin_s: float = DEADLINE_MARGIN_S,
    ) -> "KinesisBatch[Ledger]":
        """The batch Lambda invoked the function with, and the deadline its context leaves."""
        deadline = invocation_deadline(context, clock, margin_s)
        return cls(ordered_records(event), deadline, ledger_type, clock=clock)

    @classmethod
    def of_records(
        cls,
        records: list[Any],
        deadline: float,
        ledger_type: type[Ledger] = BatchLedger,  # type: ignore[assignment]
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> "KinesisBatch[Ledger]":
        """Event records handled outside an invocation (a replay, a test), with a given deadline."""
        return cls(ordered_records({"Records": records}), deadline, ledger_type, clock=clock)

    def each(self, handle: Callable[[KinesisRecord], Any]) -> Iterator[tuple[KinesisRecord, Any]]:
        """Yield (record, handle(record)) in order; failures go to the ledger and are not yielded.

        A permanent failure skips its record; a transient one, or the deadline, stops the walk and
        counts the rest as not reached (they come back with the retry). Records are built one at a
        time, so a caller that consumes them as they come holds only its own chunk.
        """
        for position, event_record in enumerate(self.event_records):
            self._position = position
            record = _record(event_record)
            if self.clock() >= self.deadline:
                self._stop(record, TransientError("not reached before the invocation's deadline"))
                return
            try:
                result = handle(record)
            except (MemoryError, ConfigurationError):
                raise  # not the record's fault: the invocation fails and Lambda retries the batch
            except Exception as error:
                record_error = as_record_error(error)
                if not record_error.permanent:
                    self._stop(record, record_error)
                    return
                self.ledger.fail(record, record_error)
                continue
            yield record, result

    @property
    def records_not_walked(self) -> int:
        """How many records `each` has not reached yet (all of them before it starts)."""
        return len(self.event_records) - self._position - 1

    def _stop(self, record: KinesisRecord, error: RecordError) -> None:
        self.ledger.fail(record, error)
        self.ledger.not_reached = self.records_not_walked
