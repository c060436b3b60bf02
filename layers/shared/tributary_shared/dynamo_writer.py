"""Write items to DynamoDB with BatchWriteItem, accounting for every one of them.

Each item carries a caller-chosen `ref` (a Kinesis sequence number, a CSV line number) so the
caller learns exactly which records were written and which failed, and how:

- chunks of 25 (the BatchWriteItem maximum): 1,000 items cost 40 requests when nothing is throttled;
- items with the same key collapse to the last one given (BatchWriteItem rejects a request that
  names one key twice); a superseded item shares the fate of the item that replaced it, except
  that when DynamoDB refuses that item, the newest older one given for the key is written instead;
- `UnprocessedItems` are retried with exponential backoff and full jitter until the deadline, then
  reported as transient failures;
- a chunk DynamoDB rejects as invalid is retried item by item with PutItem, so one bad item is
  isolated as a permanent failure instead of sinking the 24 others;
- an item that cannot be serialized at all fails permanently before it can supersede anything;
- any other error (access denied, missing table) is the deployment's fault, not the data's: every
  item not yet written is reported transient and no further request is sent. So is every item left
  when the deadline passes: the writer never sends a request after it.

Version-guarded writes (`version_attribute`, for read models fed by a stream): each item carries
its record's version (`kinesis_batch.record_version`, text that sorts as the stream position does)
and is written only if the table holds no newer or equal version of it. BatchWriteItem takes no
condition, so these go as TransactWriteItems of up to 100 conditional Puts: 1,000 items cost 10
requests, at twice the write units of a plain write (DynamoDB's price for transactions), and no
retry, bisect, redelivery or replay can make an item go back in time. An item whose condition fails
is `superseded`: the table already holds it or a newer version, which is success for the caller.
A cancelled transaction is retried without its stale and invalid items; a request DynamoDB refuses
as invalid (one bad item, or over 4 MB) is split in halves until the bad item stands alone.

Memory: `prepare` turns an item into what its request needs (a guarded writer: its conditional Put as
JSON, `dynamo_items.EncodedJson`, 600 bytes against 3 KB as typed dicts), and nothing more is kept.
"""

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tributary_shared import aws_clients
from tributary_shared.dynamo_items import (
    SERIALIZATION_ERRORS,
    EncodedJson,
    describe_unstorable,
    encode_item,
    encode_text,
    normalized_key,
    send_encoded_json,
    serialize_item,
)
from tributary_shared.errors import PoisonRecordError
from tributary_shared.retries import RetryPolicy

MAX_BATCH_ITEMS = 25
MAX_TRANSACTION_ITEMS = 100
# Reasons DynamoDB gives per item of a cancelled transaction.
STALE_ITEM_REASON = "ConditionalCheckFailed"
INVALID_ITEM_REASON = "ValidationError"
NOT_TRIED_REASON = "None"
# An item whose version attribute is not a string (written before versions, by a payload's own field
# of that name) is replaced: compared with a string, it would freeze its key forever.
GUARD_CONDITION = "attribute_not_exists(#version) OR NOT attribute_type(#version, :string) OR #version < :version"
# For a record of intent rather than a read model: the same change may record itself again.
GUARD_CONDITION_EQUAL_PASSES = (
    "attribute_not_exists(#version) OR NOT attribute_type(#version, :string) OR #version <= :version"
)
# Until the deadline, the first retry after up to 50 ms.
WRITE_RETRY = RetryPolicy(base_s=0.05, cap_s=2.0)
# Errors a later attempt can get past.
TRANSIENT_ERROR_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError",
    "ServiceUnavailable", "LimitExceededException", "TransactionConflictException",
})  # fmt: skip

# Errors that mean an item itself cannot be stored; any other error is about the deployment.
ITEM_ERROR_CODES = frozenset({"ValidationException", "ItemCollectionSizeLimitExceededException"})

# The writer builds every request from items it serialized itself, so botocore's parameter
# validation (about a quarter of the CPU per record, measured) checks nothing new. Account-ID
# endpoints are off: a transaction's items are sent encoded, out of sight of their resolution.
WRITER_CLIENT_SETTINGS: dict[str, Any] = {"parameter_validation": False, "account_id_endpoint_mode": "disabled"}


@dataclass(frozen=True)
class PendingItem:
    """One item to write and the caller's reference for it."""

    ref: str
    item: dict[str, Any]
    # The record's stream position (`kinesis_batch.record_version`); required by a guarded writer.
    version: str | None = None


@dataclass
class WriteReport:
    """What happened to every ref given to `BatchWriter.write`."""

    written: list[str] = field(default_factory=list)
    # Not written because the table already holds this version or a newer one: done, not failed.
    superseded: list[str] = field(default_factory=list)
    transient: dict[str, str] = field(default_factory=dict)
    permanent: dict[str, str] = field(default_factory=dict)
    requests: int = 0

    @property
    def failed(self) -> dict[str, str]:
        return {**self.transient, **self.permanent}


def describe(error: ClientError) -> str:
    return f"{aws_clients.error_code(error)}: {error.response.get('Error', {}).get('Message', '')}"


ItemKey = tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class PreparedItem:
    """An item as its writer sends it (`BatchWriter.prepare`): all the writer keeps of it."""

    ref: str
    key: ItemKey
    # An unguarded writer's typed item (BatchWriteItem, PutItem).
    typed: dict[str, Any] | None = None
    # A guarded writer's conditional Put, as the JSON of one TransactWriteItems entry.
    put: bytes = b""


class _StopWriting(Exception):
    """No further request may be sent: the deadline passed, or the deployment is broken (access denied)."""


class BatchWriter:
    """Writes PendingItems to one table; see the module docstring for the guarantees."""

    def __init__(
        self,
        table_name: str,
        key_attributes: Sequence[str],
        client: Any = None,
        *,
        retry: RetryPolicy = WRITE_RETRY,
        version_attribute: str | None = None,
        equal_version_passes: bool = False,
    ) -> None:
        self.table_name = table_name
        self.key_attributes = tuple(key_attributes)
        self.version_attribute = version_attribute
        self._guard = GUARD_CONDITION_EQUAL_PASSES if equal_version_passes else GUARD_CONDITION
        self._client = client
        self._sends_encoded = False
        self.retry = retry
        # Every conditional Put is this, the item's version, `}},"Item":`, the item and `}}`.
        self._put_head = b"".join([
            b'{"Put":{"TableName":', encode_text(table_name), b',"ConditionExpression":', encode_text(self._guard),
            b',"ExpressionAttributeNames":{"#version":', encode_text(version_attribute or ""),
            b'},"ExpressionAttributeValues":{":string":{"S":"S"},":version":{"S":',
        ])  # fmt: skip

    @property
    def client(self) -> Any:
        # Created on first use so importing a handler does not pay for a client it may not need.
        if self._client is None:
            self._client = aws_clients.client("dynamodb", **WRITER_CLIENT_SETTINGS)
        if not self._sends_encoded and self.version_attribute is not None and hasattr(self._client, "meta"):
            send_encoded_json(self._client)  # a guarded writer's transactions go as encoded JSON
            self._sends_encoded = True
        return self._client

    def prepare(self, ref: str, item: dict[str, Any], version: str | None = None) -> PreparedItem:
        """`item` ready to write (guarded: with its `version`); PoisonRecordError if DynamoDB cannot store it."""
        try:
            typed = serialize_item(item)
            key = normalized_key(typed, self.key_attributes)
        except SERIALIZATION_ERRORS as error:
            raise PoisonRecordError(f"item cannot be stored in DynamoDB: {describe_unstorable(error)}") from None
        if self.version_attribute is None:
            return PreparedItem(ref, key, typed)
        if version is None:
            raise ValueError(f"a version-guarded writer needs every item's version (ref {ref})")
        typed[self.version_attribute] = {"S": version}
        put = b"".join([self._put_head, encode_text(version), b'}},"Item":', encode_item(typed), b"}}"])
        return PreparedItem(ref, key, put=put)

    def write(self, items: Sequence[PendingItem], deadline: float) -> WriteReport:
        """Prepare and write `items`; an item DynamoDB could not store fails alone, permanently."""
        prepared, unstorable = [], {}
        for pending in items:
            try:
                prepared.append(self.prepare(pending.ref, pending.item, pending.version))
            except PoisonRecordError as error:
                unstorable[pending.ref] = error.reason
        report = self.write_prepared(prepared, deadline)
        report.permanent.update(unstorable)
        return report

    def write_prepared(self, items: Sequence[PreparedItem], deadline: float) -> WriteReport:
        """Write items from `prepare`; what happened to each, by its ref."""
        report, remaining = WriteReport(), list(items)
        guarded = self.version_attribute is not None
        write_chunk = self._write_guarded_chunk if guarded else self._write_chunk
        size = MAX_TRANSACTION_ITEMS if guarded else MAX_BATCH_ITEMS
        while remaining:
            winners, superseded_by = self._collapse_duplicate_keys(remaining)
            try:
                for chunk in itertools.batched(winners, size, strict=False):
                    write_chunk(list(chunk), deadline, report)
            except _StopWriting as error:
                self._give_up(winners, str(error), report)
                self._settle_superseded(superseded_by, report, stand_ins_from=None)
                return report
            # An item DynamoDB refused leaves its key to the newest older item given for it.
            remaining = self._settle_superseded(superseded_by, report, stand_ins_from=remaining)
        return report

    @staticmethod
    def _collapse_duplicate_keys(items: list[PreparedItem]) -> tuple[list[PreparedItem], dict[str, str]]:
        last_by_key: dict[ItemKey, PreparedItem] = {}
        superseded_by: dict[str, str] = {}
        for item in items:
            previous = last_by_key.get(item.key)
            if previous is not None:
                superseded_by[previous.ref] = item.ref
            last_by_key[item.key] = item
        return [item for item in items if item.ref not in superseded_by], superseded_by

    @staticmethod
    def _settle_superseded(
        superseded_by: dict[str, str], report: WriteReport, stand_ins_from: list[PreparedItem] | None
    ) -> list[PreparedItem]:
        """Give each collapsed item its winner's fate; the items to write in place of refused winners."""
        written, stale = set(report.written), set(report.superseded)
        stand_ins: set[str] = set()
        for loser, winner in superseded_by.items():
            while winner in superseded_by:
                winner = superseded_by[winner]
            if winner in written:
                report.written.append(loser)
            elif winner in stale:
                report.superseded.append(loser)
            elif winner in report.permanent and stand_ins_from is not None:
                stand_ins.add(loser)
            elif winner in report.permanent:
                report.transient[loser] = f"superseded by record {winner}, which DynamoDB rejected"
            else:
                report.transient[loser] = report.transient.get(winner, "not written")
        return [item for item in stand_ins_from or [] if item.ref in stand_ins]

    @staticmethod
    def _give_up(items: Iterable[PreparedItem], reason: str, report: WriteReport) -> None:
        settled = {*report.written, *report.superseded, *report.transient, *report.permanent}
        for item in items:
            if item.ref not in settled:
                report.transient[item.ref] = reason

    def _write_chunk(self, chunk: list[PreparedItem], deadline: float, report: WriteReport) -> None:
        by_key = {item.key: item for item in chunk}
        pending = [{"PutRequest": {"Item": item.typed}} for item in chunk]
        calls = 0
        while pending:
            self._check_deadline(deadline)
            try:
                report.requests += 1
                response = self.client.batch_write_item(RequestItems={self.table_name: pending})
            except ClientError as error:
                if aws_clients.error_code(error) in ITEM_ERROR_CODES:
                    for key in self._keys(pending):
                        self._put_single(by_key[key], deadline, report)
                    return
                if aws_clients.error_code(error) not in TRANSIENT_ERROR_CODES:
                    raise _StopWriting(describe(error)) from error
                unprocessed, reason = pending, aws_clients.error_code(error)
            except BotoCoreError as error:
                unprocessed, reason = pending, type(error).__name__
            else:
                unprocessed = response.get("UnprocessedItems", {}).get(self.table_name, [])
                reason = "UnprocessedItems"
            left = set(self._keys(unprocessed))
            report.written += [by_key[key].ref for key in self._keys(pending) if key not in left]
            pending, calls = unprocessed, calls + 1
            if pending and not self.retry.wait_before_retry(calls, deadline):
                for key in left & by_key.keys():
                    report.transient[by_key[key].ref] = f"{reason}: not written before the deadline"
                return

    def _write_guarded_chunk(self, chunk: list[PreparedItem], deadline: float, report: WriteReport) -> None:
        pending, calls = chunk, 0
        while pending:
            self._check_deadline(deadline)
            try:
                report.requests += 1
                self._send_transaction(pending)
            except ClientError as error:
                code = aws_clients.error_code(error)
                if code == "TransactionCanceledException":
                    pending, wait_reason = self._settle_cancelled(pending, error, report)
                    if wait_reason is None:
                        continue  # only stale or invalid items stopped it: the rest goes again at once
                    reason = wait_reason
                elif code in ITEM_ERROR_CODES:
                    self._isolate_invalid(pending, error, deadline, report)
                    return
                elif code not in TRANSIENT_ERROR_CODES:
                    raise _StopWriting(describe(error)) from error
                else:
                    reason = code
            except BotoCoreError as error:
                # Perhaps applied, perhaps not (a lost response): the retry's guard settles it.
                reason = type(error).__name__
            else:
                report.written += [item.ref for item in pending]
                return
            calls += 1  # the re-send at once above, without stale items, waited for nothing: not counted
            if pending and not self.retry.wait_before_retry(calls, deadline):
                for item in pending:
                    report.transient[item.ref] = f"{reason}: not written before the deadline"
                return

    def _send_transaction(self, items: list[PreparedItem]) -> None:
        array = [b"["]
        for item in items:
            array += (item.put, b",")
        array[-1] = b"]"
        stand_in = [{"Put": {"TableName": self.table_name, "Item": {}}}]  # what botocore checks in its place
        self.client.transact_write_items(TransactItems=EncodedJson(array, stand_in))

    @staticmethod
    def _settle_cancelled(
        items: list[PreparedItem], error: ClientError, report: WriteReport
    ) -> tuple[list[PreparedItem], str | None]:
        """Record stale and invalid items of a cancelled transaction; the items to try again, and the
        reason to wait before that (None: the rest was only cancelled along, so retry at once)."""
        reasons = _cancellation_reasons(error)
        if len(reasons) != len(items):
            return items, "TransactionCanceledException"
        retry, wait_reasons = [], []
        for item, (code, message) in zip(items, reasons, strict=True):
            if code == STALE_ITEM_REASON:
                report.superseded.append(item.ref)
            elif code == INVALID_ITEM_REASON:
                report.permanent[item.ref] = f"ValidationError: {message}"
            else:
                retry.append(item)
                if code != NOT_TRIED_REASON:
                    wait_reasons.append(code)
        if wait_reasons or len(retry) == len(items):
            return retry, (wait_reasons or ["TransactionCanceledException"])[0]
        return retry, None

    def _isolate_invalid(
        self, items: list[PreparedItem], error: ClientError, deadline: float, report: WriteReport
    ) -> None:
        if len(items) == 1:
            report.permanent[items[0].ref] = describe(error)
            return
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            self._write_guarded_chunk(part, deadline, report)

    def _keys(self, requests: list[dict[str, Any]]) -> Iterator[ItemKey]:
        for request in requests:
            yield normalized_key(request["PutRequest"]["Item"], self.key_attributes)

    def _put_single(self, item: PreparedItem, deadline: float, report: WriteReport) -> None:
        calls = 0
        while True:
            self._check_deadline(deadline)
            try:
                report.requests += 1
                self.client.put_item(TableName=self.table_name, Item=item.typed)
            except ClientError as error:
                code = aws_clients.error_code(error)
                if code in ITEM_ERROR_CODES:
                    report.permanent[item.ref] = describe(error)
                    return
                if code not in TRANSIENT_ERROR_CODES:
                    raise _StopWriting(describe(error)) from error
                reason = code
            except BotoCoreError as error:
                reason = type(error).__name__
            else:
                report.written.append(item.ref)
                return
            calls += 1
            if not self.retry.wait_before_retry(calls, deadline):
                report.transient[item.ref] = f"{reason}: not written before the deadline"
                return

    def _check_deadline(self, deadline: float) -> None:
        # A request started later could outlive the function: Lambda would time it out mid-batch.
        if not self.retry.call_fits(deadline):
            raise _StopWriting("not attempted: the invocation's deadline left no time for one more request")


def _cancellation_reasons(error: ClientError) -> list[tuple[str, str]]:
    reasons = error.response.get("CancellationReasons") or []
    # AWS documents a null Code for an item that had no error: the same as "None".
    return [(str(reason.get("Code") or NOT_TRIED_REASON), str(reason.get("Message") or "")) for reason in reasons]
