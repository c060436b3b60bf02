"""Write items to DynamoDB with BatchWriteItem, accounting for every one of them.

Each item carries a caller-chosen `ref` (a Kinesis sequence number, a CSV line number) so the
caller learns exactly which records were written and which failed, and how:

- chunks of 25 (the BatchWriteItem maximum), so 1,000 items cost 40 requests when nothing is
  throttled;
- items with the same key collapse to the last one given (BatchWriteItem rejects a request that
  names one key twice); a superseded item shares the fate of the item that replaced it;
- `UnprocessedItems` are retried with exponential backoff and full jitter until the deadline, then
  reported as transient failures;
- a chunk DynamoDB rejects as invalid is retried item by item with PutItem, so one bad item is
  isolated as a permanent failure instead of sinking the 24 others.
"""

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

MAX_BATCH_ITEMS = 25
BASE_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
# Errors a later attempt can get past; anything else on a whole request means the request is bad.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
        "TransactionConflictException",
    }
)

_serializer = TypeSerializer()


@dataclass(frozen=True)
class PendingItem:
    """One item to write and the caller's reference for it."""

    ref: str
    item: dict[str, Any]


@dataclass
class WriteReport:
    """What happened to every ref given to `BatchWriter.write`."""

    written: list[str] = field(default_factory=list)
    transient: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)
    requests: int = 0

    @property
    def failed(self) -> dict[str, str]:
        return {**self.transient, **self.permanent}


def to_dynamodb_value(value: Any) -> Any:
    """Python value → a value TypeSerializer accepts: floats become Decimals, exactly as printed."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: to_dynamodb_value(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamodb_value(inner) for inner in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def serialize_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's typed wire form (`{"S": ...}`, `{"N": ...}`)."""
    return {name: _serializer.serialize(to_dynamodb_value(value)) for name, value in item.items()}


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class BatchWriter:
    """Writes PendingItems to one table; see the module docstring for the guarantees."""

    def __init__(
        self,
        table_name: str,
        key_attributes: Sequence[str],
        client: Any = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.table_name = table_name
        self.key_attributes = tuple(key_attributes)
        self._client = client
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    @property
    def client(self) -> Any:
        # Created on first use so importing a handler does not pay for a client it may not need.
        if self._client is None:
            self._client = boto3.client("dynamodb")
        return self._client

    def write(self, items: Sequence[PendingItem], deadline: float) -> WriteReport:
        report = WriteReport()
        winners, superseded_by = self._collapse_duplicate_keys(items)
        for chunk in _chunks(winners, MAX_BATCH_ITEMS):
            self._write_chunk(chunk, deadline, report)
        self._settle_superseded(superseded_by, report)
        return report

    def _key_of(self, item: dict[str, Any]) -> tuple[str, ...]:
        try:
            return tuple(repr(_serializer.serialize(to_dynamodb_value(item.get(n)))) for n in self.key_attributes)
        except (TypeError, ValueError, ArithmeticError):
            return ("<unserializable key>", repr(id(item)))

    def _collapse_duplicate_keys(
        self, items: Sequence[PendingItem]
    ) -> tuple[list[PendingItem], dict[str, str]]:
        last_by_key: dict[tuple[Any, ...], PendingItem] = {}
        superseded_by: dict[str, str] = {}
        for pending in items:
            key = self._key_of(pending.item)
            previous = last_by_key.get(key)
            if previous is not None:
                superseded_by[previous.ref] = pending.ref
            last_by_key[key] = pending
        winners = [pending for pending in items if pending.ref not in superseded_by]
        return winners, superseded_by

    @staticmethod
    def _settle_superseded(superseded_by: dict[str, str], report: WriteReport) -> None:
        written = set(report.written)
        for loser, winner in superseded_by.items():
            while winner in superseded_by:
                winner = superseded_by[winner]
            if winner in written:
                report.written.append(loser)
            elif winner in report.permanent:
                # The newer record was bad; the older one was valid but is not in the table.
                report.transient[loser] = f"superseded by record {winner}, which failed"
            else:
                report.transient[loser] = report.transient.get(winner, "not written")

    def _write_chunk(self, chunk: list[PendingItem], deadline: float, report: WriteReport) -> None:
        by_request_key = {self._key_of(p.item): p for p in chunk}
        try:
            typed = {p.ref: serialize_item(p.item) for p in chunk}
        except (TypeError, ValueError, ArithmeticError):
            self._put_one_by_one(chunk, deadline, report)
            return
        pending = [{"PutRequest": {"Item": typed[p.ref]}} for p in chunk]
        attempt = 0
        while pending:
            try:
                report.requests += 1
                response = self.client.batch_write_item(RequestItems={self.table_name: pending})
            except ClientError as error:
                if error_code(error) not in TRANSIENT_ERROR_CODES:
                    self._put_one_by_one(chunk, deadline, report)
                    return
                unprocessed, reason = pending, error_code(error)
            except BotoCoreError as error:
                unprocessed, reason = pending, type(error).__name__
            else:
                unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
                reason = "UnprocessedItems"
            done = {self._typed_key(r) for r in pending} - {self._typed_key(r) for r in unprocessed}
            report.written += [p.ref for p in chunk if self._key_of(p.item) in done]
            chunk = [p for p in chunk if self._key_of(p.item) not in done]
            pending = unprocessed
            if pending and not self._backoff(attempt, deadline):
                for request in pending:
                    ref = by_request_key[self._typed_key(request)].ref
                    report.transient[ref] = f"{reason}: not written before the deadline"
                return
            attempt += 1

    def _typed_key(self, request: dict[str, Any]) -> tuple[str, ...]:
        item = request["PutRequest"]["Item"]
        return tuple(repr(item.get(name, {"NULL": True})) for name in self.key_attributes)

    def _put_one_by_one(self, chunk: list[PendingItem], deadline: float, report: WriteReport) -> None:
        for pending in chunk:
            self._put_single(pending, deadline, report)

    def _put_single(self, pending: PendingItem, deadline: float, report: WriteReport) -> None:
        attempt = 0
        while True:
            try:
                typed = serialize_item(pending.item)
                report.requests += 1
                self.client.put_item(TableName=self.table_name, Item=typed)
            except (TypeError, ValueError, ArithmeticError) as error:
                report.permanent[pending.ref] = f"item cannot be stored in DynamoDB: {error}"
                return
            except ClientError as error:
                code = error_code(error)
                if code not in TRANSIENT_ERROR_CODES:
                    report.permanent[pending.ref] = f"{code}: {error.response['Error'].get('Message', '')}"
                    return
                if not self._backoff(attempt, deadline):
                    report.transient[pending.ref] = f"{code}: not written before the deadline"
                    return
            except BotoCoreError as error:
                if not self._backoff(attempt, deadline):
                    report.transient[pending.ref] = f"{type(error).__name__}: not written before the deadline"
                    return
            else:
                report.written.append(pending.ref)
                return
            attempt += 1

    def _backoff(self, attempt: int, deadline: float) -> bool:
        """Sleep before the next attempt; False when the deadline leaves no time for one."""
        delay = self._rng.uniform(0, min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2**attempt))
        if self._clock() + delay >= deadline:
            return False
        self._sleep(delay)
        return True


def _chunks(items: list[PendingItem], size: int) -> Iterable[list[PendingItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
