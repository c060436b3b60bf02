"""The opt-in updater's order guard: per phone number, the stream position of the newest change started on it.

Why a table beside the opt-out list. Lambda keeps order in what it *delivers*, not in what a
function *applies*: a retry from the reported record, a bisected half after a function error (the
runtime dying after the handler ran), a redelivery and a replay from the on-failure destination
all bring back changes older than some already applied. The stream processors cure this with
version-guarded items; the SMS opt-out list holds no attributes, so its writes cannot be guarded
themselves. So the guard lives here: one item per phone number (`phone`, `recordVersion`), where
`recordVersion` is `kinesis_batch.record_version` of the newest change acting on that number whose
application has been *started*. It is an intent, written before the change is applied:

- a change is applied to a number only once the table holds its own version for that number;
  writes are conditional on the stored version being older or equal, so the stored version never
  goes back;
- so the stored version is always at least the version of every change applied to the number, and
  a change older than the stored version is never applied: it is *superseded* (skipped, counted as
  done), because a newer change of that number has been applied or is about to be;
- equal means a delivery of the change that started before: it is applied again, because the
  invocation may have died between the intent and the application. Applying again is harmless:
  PutOptedOutNumber is idempotent, and an opt-in first looks the number up, so a number already
  off the list costs no second deletion (a number can be deleted only once every 30 days).

Hence, whatever the delivery order, the operations each number receives never go back in stream
order, and only the newest started change of a number is ever applied again. The changes packed in
one KPL aggregate share its sequence number: their versions carry their subsequence numbers, so
they are ordered too, and when one of them fails the whole aggregate comes again, its changes
before the failed one at their recorded versions (applied again, harmlessly) or superseded.

Reading and writing in batches. The batch's numbers are read with one consistent BatchGetItem per
100 (a stale read could miss the intent of the previous invocation and take a redelivery for a
newer change). Intents are written with TransactWriteItems of up to 100 conditional Puts, not one
request per change, in *segments*: runs of consecutive changes in which no number appears twice.
A segment's intents are written before its first change is applied, and after every change of the
previous segments has been dealt with (applied, skipped, held back or failed). No intent is written
for a change of a number whose earlier change in the batch waits for the redelivery or failed: the
updater holds such a change back too (`waiting_numbers`). So a stored intent never hides an older
change of its number that has not been applied: a change is skipped only because of a newer change
that came after everything older of its number had been applied.

Why not all intents of the batch at once, collapsed per number to the newest: then an older change
of a number would be skipped because of the newer change's intent before the newer one had even
been tried. If the newer one then failed for good and was dead-lettered, no delivery would ever
apply the older one (every later delivery finds the newer intent), and the number would end as it
was before the batch, not as its newest change that was not dead-lettered. The same holds for an
intent written for a change that waits behind an earlier change of its number.

What remains. A dead-lettered change may have acted on some of its numbers before it failed (the
old number of a changed row is opted out even when the new one is invalid): the safe side, by
design. Order between shards: changes of one number on two shards (two users whose partition keys
hash apart exchanging a number) have no stream order at all; the table orders them by sequence
number, which Kinesis does not promise to follow time across shards, and a change applied from one
shard can race a newer intent from another between its read and its application. With DMS's
`schema-table` partitioning, or one shard, every change of the table is on one shard and neither
arises.
"""

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from tributary_shared import aws_clients
from tributary_shared.dynamo_writer import (
    TRANSIENT_ERROR_CODES,
    WRITE_RETRY,
    BatchWriter,
    PendingItem,
    describe,
)
from tributary_shared.errors import TransientError
from tributary_shared.retries import RetryPolicy

PHONE_ATTRIBUTE = "phone"
VERSION_ATTRIBUTE = "recordVersion"
MAX_KEYS_PER_READ = 100  # BatchGetItem's limit


@dataclass(frozen=True)
class Intent:
    """A change of stream position `version` is about to act on `phone`."""

    phone: str
    version: str


@dataclass
class VersionRead:
    """The stored version of each number read (numbers never changed are absent)."""

    versions: dict[str, str] = field(default_factory=dict)
    requests: int = 0


@dataclass
class IntentReport:
    """What happened to each intent, by phone number."""

    started: set[str] = field(default_factory=set)
    # The number holds a newer version: the change must not act on it.
    superseded: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    requests: int = 0


class VersionStore(Protocol):
    def read(self, phones: Collection[str], deadline: float) -> VersionRead: ...

    def start(self, intents: Sequence[Intent], deadline: float) -> IntentReport: ...


class NumberVersions:
    """The version table: read with consistent BatchGetItem, intents written as guarded transactions."""

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        *,
        retry: RetryPolicy = WRITE_RETRY,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self.retry = retry

    @property
    def client(self) -> Any:
        # Created on first use so importing the handler does not pay for a client it may not need.
        if self._client is None:
            self._client = aws_clients.client("dynamodb")
        return self._client

    def read(self, phones: Collection[str], deadline: float) -> VersionRead:
        """The stored versions of `phones`; TransientError when they cannot all be read in time."""
        read = VersionRead()
        numbers = sorted(set(phones))
        for start in range(0, len(numbers), MAX_KEYS_PER_READ):
            self._read_chunk(numbers[start : start + MAX_KEYS_PER_READ], deadline, read)
        return read

    def start(self, intents: Sequence[Intent], deadline: float) -> IntentReport:
        """Record each intent unless the number holds a newer version; never two intents for one number."""
        writer = BatchWriter(
            self.table_name,
            [PHONE_ATTRIBUTE],
            self.client,
            retry=self.retry,
            version_attribute=VERSION_ATTRIBUTE,
            # A redelivered change records its intent again (after a lost response, say) and is then
            # applied again: only a newer stored version refuses it.
            equal_version_passes=True,
        )
        items = [PendingItem(intent.phone, {PHONE_ATTRIBUTE: intent.phone}, intent.version) for intent in intents]
        written = writer.write(items, deadline)
        return IntentReport(
            started=set(written.written),
            superseded=set(written.superseded),
            failed=written.failed,
            requests=written.requests,
        )

    def _read_chunk(self, numbers: list[str], deadline: float, read: VersionRead) -> None:
        pending: dict[str, Any] = {
            self.table_name: {"Keys": [{PHONE_ATTRIBUTE: {"S": number}} for number in numbers], "ConsistentRead": True}
        }
        calls = 0
        while pending:
            if not self.retry.call_fits(deadline):
                raise TransientError("stored versions not read: the deadline left no time for one more request")
            try:
                read.requests += 1
                response = self.client.batch_get_item(RequestItems=pending)
            except ClientError as error:
                if aws_clients.error_code(error) not in TRANSIENT_ERROR_CODES:
                    # Access denied, a missing table: the deployment's fault, and no change may go unguarded.
                    raise TransientError(f"reading version table {self.table_name!r}: {describe(error)}") from error
                reason = aws_clients.error_code(error)
            except BotoCoreError as error:
                reason = type(error).__name__
            else:
                read.versions.update(_versions(response.get("Responses", {}).get(self.table_name, [])))
                pending = response.get("UnprocessedKeys") or {}
                reason = "UnprocessedKeys"
            calls += 1
            if pending and not self.retry.wait_before_retry(calls, deadline):
                raise TransientError(f"stored versions not read before the deadline ({reason})")


def _versions(items: Iterable[dict[str, Any]]) -> dict[str, str]:
    versions = {}
    for item in items:
        phone = item.get(PHONE_ATTRIBUTE, {}).get("S")
        version = item.get(VERSION_ATTRIBUTE, {}).get("S")
        if isinstance(phone, str) and isinstance(version, str):
            versions[phone] = version
    return versions


@dataclass(frozen=True)
class GuardedChange:
    """One change of a batch as the guard sees it: its position, its version and the numbers it acts on."""

    index: int
    version: str
    phones: tuple[str, ...]


class BatchOrderGuard:
    """One batch's use of the version table: which numbers each change may act on, intents written
    one segment at a time (see the module docstring).

    `verdict(index, deadline)` must be asked for the batch's changes in order, before each is applied.
    """

    def __init__(self, store: VersionStore, changes: Sequence[GuardedChange], deadline: float) -> None:
        self.store = store
        self.requests = 0
        self._changes = {change.index: change for change in changes}
        self._segment_of, self._segments = _segments(changes)
        self._written_segments: set[int] = set()
        self._superseded: dict[int, set[str]] = {change.index: set() for change in changes}
        self._failures: dict[int, str] = {}
        self._versions: dict[str, str] = {}
        self._read_failure: TransientError | None = None
        self._read(changes, deadline)

    def verdict(self, index: int, deadline: float, waiting_numbers: Collection[str] = frozenset()) -> frozenset[str]:
        """The numbers change `index` must leave alone (a newer change holds them); TransientError when
        its versions could not be read or its intent could not be recorded: it must not be applied.

        `waiting_numbers`: numbers whose earlier change waits for the redelivery. A change acting on
        one waits too, so no intent is recorded for it: it would supersede the waiting change.
        """
        if self._read_failure is not None:
            raise TransientError(self._read_failure.reason)
        segment = self._segment_of[index]
        if segment not in self._written_segments:
            self._written_segments.add(segment)
            self._start_segment(self._segments[segment], deadline, frozenset(waiting_numbers))
        if index in self._failures:
            raise TransientError(self._failures[index])
        return frozenset(self._superseded[index])

    def _read(self, changes: Sequence[GuardedChange], deadline: float) -> None:
        phones = {phone for change in changes for phone in change.phones}
        if not phones:
            return
        try:
            read = self.store.read(phones, deadline)
        except TransientError as error:
            self._read_failure = error
            return
        self.requests += read.requests
        self._versions = dict(read.versions)

    def _start_segment(self, members: list[GuardedChange], deadline: float, waiting_numbers: frozenset[str]) -> None:
        intents: dict[str, tuple[int, str]] = {}
        for change in members:
            waits = not waiting_numbers.isdisjoint(change.phones)
            for phone in change.phones:
                stored = self._versions.get(phone)
                if stored is not None and stored > change.version:
                    self._superseded[change.index].add(phone)
                elif stored != change.version and not waits:
                    intents[phone] = (change.index, change.version)
        if not intents:
            return
        report = self.store.start([Intent(phone, version) for phone, (_, version) in intents.items()], deadline)
        self.requests += report.requests
        for phone, (index, version) in intents.items():
            if phone in report.started:
                self._versions[phone] = version
            elif phone in report.superseded:
                self._superseded[index].add(phone)
            else:
                reason = report.failed.get(phone, "no answer")
                self._failures.setdefault(index, f"start of the change on {phone} not recorded: {reason}")


def _segments(changes: Sequence[GuardedChange]) -> tuple[dict[int, int], list[list[GuardedChange]]]:
    """Runs of consecutive changes in which no number appears twice, and each change's run."""
    segment_of: dict[int, int] = {}
    segments: list[list[GuardedChange]] = []
    numbers: set[str] = set()
    for change in changes:
        if not segments or numbers.intersection(change.phones):
            segments.append([])
            numbers = set()
        segments[-1].append(change)
        numbers.update(change.phones)
        segment_of[change.index] = len(segments) - 1
    return segment_of, segments
