"""DMS change records of the opt-in table → the SMS opt-out list, one Kinesis batch at a time.

The contract with Lambda's event source mapping (ReportBatchItemFailures + bisect): records are
applied in sequence order, so each user's changes keep their order, and the response names the
lowest failed sequence number. The mapping checkpoints before it and delivers everything from it
again (with bisect, in smaller batches, until the failing record is isolated and sent to the
on-failure destination). So whatever this invocation applies after its first failure is applied
again, perhaps several times, and must be safe to repeat:

- opt-outs are: PutOptedOutNumber is idempotent;
- an opt-in is, when its number is absent from the list at the repetition: the opt-out list looks
  the number up (DescribeOptedOutNumbers) and, finding it absent, makes no deletion;
- an opt-in is not, when its number is back on the list: a number can be deleted only once every
  30 days, so the repeated deletion would be refused and the number would stay opted out against
  the user's wish. Between the first application and a repetition, only another change of the same
  number that is delivered again as well can put it back (or the user, by texting STOP, which the
  lookup sees: EndUserOptedOut). Such a change is at or after the first failure, in this batch.

Hence, after the first failure of an invocation:

- a transient failure (throttling past the retries, missing list, access denied, out of time)
  blocks that user, whose later changes in the batch are not applied (an older change applied
  after a newer one would leave the wrong state), and every later opt-in waits for the redelivery;
- a permanent failure (malformed record, invalid phone, refused opt-out) fails that record only and
  holds back no opt-out: everything after it is applied, so little depends on how Lambda retries a
  batch whose first record is the reported one (AWS does not document whether it bisects then).
  Two kinds of opt-in wait for the redelivery: the failed user's own later opt-ins (their failed
  change may have been an opt-out: keep them opted out until the failed record has been dealt
  with), and an opt-in of a number that another change at or after the failure also touches (the
  case above). Both are rare; if they end up dead-lettered with the batch, the number stays opted
  out, the safe side, and the records are with the operator.

Per-number order under any delivery order comes from the version table (`versions`): before a
change acts on a number, its stream position is recorded there as the number's newest started
change (guarded: never over a newer one), and a change older than what a number holds is
*superseded* for that number: never applied, counted as done (`RecordsSuperseded` when it is
superseded for every number it acts on). So a bisected older half, a redelivery or a replay can
never take a number back to an older change, and only a number's newest started change is ever
applied again, which the lookup before a deletion makes harmless. A change whose versions cannot be
read or whose intent cannot be recorded fails transiently: nothing is ever applied unguarded.

The rules above still decide which of the changes that are not superseded are applied now and which
wait, with one more: a change of a number whose earlier change in this batch waits or failed waits
too, even an opt-out, and records no intent. Applied, its newer version would supersede the waiting
change on every later delivery, so that change would never be applied, and whether a later opt-in of
the number passes the 30-day deletion rule would depend on how Lambda happened to deliver the batch.
With it, each change of a number is applied the first time it is reached with nothing of its number
waiting before it, in stream order, whatever the deliveries. A change superseded for every number it
acts on applies nothing, so it counts as neither touching a number nor waiting.
"""

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tributary_shared.dynamo_writer import WRITE_RETRY
from tributary_shared.errors import ConfigurationError, RecordError
from tributary_shared.invocation import LambdaContextLike, LoggerLike, lowest_sequence
from tributary_shared.kinesis_batch import BatchLedger, KinesisBatch, KinesisRecord, as_record_error
from tributary_shared.metrics import MetricsLike, publish
from tributary_shared.optin_updater.dms_records import OptInChange, SkippedRecord, parse_dms_record
from tributary_shared.optin_updater.opt_out_list import (
    OPT_OUT_RETRY,
    Applied,
    OptOutList,
    OptOutRefused,
    Outcome,
    is_e164,
)
from tributary_shared.optin_updater.settings import OptInUpdaterSettings
from tributary_shared.optin_updater.versions import BatchOrderGuard, GuardedChange, NumberVersions, VersionStore

# See the module docstring: applying such a change would supersede the waiting one for good.
WAITING_NUMBER_REASON = "an earlier change of this number waits for the redelivery"

# What one record of the batch is once read.
type ParsedRecord = OptInChange | SkippedRecord | RecordError

# Outcome.SUPERSEDED has no metric of its own: a record superseded for every number counts in
# RecordsSuperseded, one superseded for some numbers only is logged.
METRIC_BY_OUTCOME = {
    Outcome.OPTED_OUT: "OptOuts",
    Outcome.OPTED_IN: "OptIns",
    Outcome.NOT_ON_LIST: "OptIns",
    Outcome.REFUSED: "Refused",
    # An update that leaves the same number opted in (a reload, a `lastupdate` change) is no opt-in.
    Outcome.UNCHANGED: "Ignored",
    # A row without a phone, or an old number that was never E.164: nothing to apply, logged with why.
    Outcome.SKIPPED: "Ignored",
}


@dataclass
class BatchOutcome(BatchLedger):
    """Every record of one invocation: applied, skipped, failed (with reason) or held back."""

    counts: Counter[str] = field(default_factory=Counter)
    held_back: list[str] = field(default_factory=list)
    version_table_requests: int = 0

    @property
    def first_failed_sequence(self) -> str | None:
        return lowest_sequence(self.failed_sequence_numbers)


class OptInUpdater:
    def __init__(
        self,
        settings: OptInUpdaterSettings,
        *,
        opt_out_list: OptOutList | None = None,
        versions: VersionStore | None = None,
        logger: LoggerLike | None = None,
        metrics: MetricsLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # The list and the version table keep this updater's clock: one deadline, one time.
        self.opt_out_list = opt_out_list or OptOutList(
            settings.opt_out_list_name, retry=replace(OPT_OUT_RETRY, clock=clock)
        )
        self.versions = versions or NumberVersions(settings.version_table_name, retry=replace(WRITE_RETRY, clock=clock))
        self.logger = logger
        self.metrics = metrics
        self.clock = clock

    def handle(self, event: Mapping[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        outcome = self.apply(KinesisBatch.of_invocation(event, context, BatchOutcome, clock=self.clock, margin_s=2.0))
        self._publish(outcome)
        return outcome.response()

    def process(self, records: Sequence[Mapping[str, Any]], deadline: float) -> BatchOutcome:
        """The event records of a batch (or a replay), applied before `deadline`."""
        return self.apply(KinesisBatch.of_records(list(records), deadline, BatchOutcome, clock=self.clock))

    def apply(self, batch: KinesisBatch[BatchOutcome]) -> BatchOutcome:
        # Not `batch.each`: a change's fate depends on the changes after it in the batch (`last_touch`).
        outcome = batch.ledger
        parsed = [(record, self._parse(record)) for record in batch.records]
        state = _BatchState(
            last_touch={
                number: index
                for index, (_, change) in enumerate(parsed)
                if isinstance(change, OptInChange)
                for number in change.numbers
            }
        )
        guard = BatchOrderGuard(self.versions, _guarded_changes(parsed), batch.deadline)
        for index, (record, change) in enumerate(parsed):
            try:
                self._process_change(change, index, record.record_id, batch.deadline, state, guard, outcome)
            except (MemoryError, ConfigurationError):
                raise  # as in the skeleton: the invocation fails, the batch is retried
            except Exception as error:
                record_error = as_record_error(error)
                self._fail(record, record_error, outcome)
                state.failed(change, record_error)
        outcome.version_table_requests = guard.requests
        return outcome

    def _parse(self, record: KinesisRecord) -> ParsedRecord:
        try:
            return parse_dms_record(record.data(), self.settings.source)
        except Exception as error:
            return as_record_error(error)

    def _process_change(
        self,
        change: ParsedRecord,
        index: int,
        record_id: str,
        deadline: float,
        batch: "_BatchState",
        guard: BatchOrderGuard,
        outcome: BatchOutcome,
    ) -> None:
        if isinstance(change, RecordError):
            raise change
        if isinstance(change, SkippedRecord):
            outcome.counts["Ignored"] += 1
            self._log_info("skipped DMS record", record=record_id, reason=change.reason)
            return
        superseded = guard.verdict(index, deadline, waiting_numbers=batch.waiting_numbers)
        if change.numbers and superseded.issuperset(change.numbers):
            outcome.counts["Superseded"] += 1
            outcome.superseded_ids.append(record_id)
            self._log_info("change superseded: a newer change of its numbers came first", record=record_id)
            return
        wait_reason = batch.wait_reason(change, index)
        batch.touched(change)
        if wait_reason:
            batch.hold_back(change)
            outcome.held_back.append(record_id)
            self._log_info("change waits for the redelivery", record=record_id, reason=wait_reason)
            return
        for applied in self.opt_out_list.apply(change, deadline, superseded=superseded):
            self._count(applied, change, record_id, outcome)

    def _count(self, applied: Applied, change: OptInChange, record_id: str, outcome: BatchOutcome) -> None:
        metric = METRIC_BY_OUTCOME.get(applied.outcome)
        if metric:
            outcome.counts[metric] += 1
        if applied.outcome is Outcome.SUPERSEDED:
            self._log_info("number left to a newer change", record=record_id, phone=applied.phone)
        elif applied.reason:
            self._log_warning(
                "change not applied as asked",
                record=record_id,
                user_id=change.user_id,
                phone=applied.phone,
                outcome=str(applied.outcome),
                reason=applied.reason,
            )

    def _fail(self, record: KinesisRecord, error: RecordError, outcome: BatchOutcome) -> None:
        outcome.fail(record, error)
        if error.permanent:
            outcome.counts["Refused" if isinstance(error, OptOutRefused) else "Invalid"] += 1
        kind = "permanent" if error.permanent else "transient"
        self._log_warning(f"{kind} failure", record=record.record_id, reason=error.reason)

    def _publish(self, outcome: BatchOutcome) -> None:
        publish(
            self.metrics,
            {
                **outcome.metrics(),
                **{name: outcome.counts[name] for name in ("OptOuts", "OptIns", "Ignored", "Invalid", "Refused")},
                "TransientFailures": len(outcome.failed_transient),
                "RecordsSuperseded": outcome.counts["Superseded"],
                "DynamoDBRequests": outcome.version_table_requests,
            },
        )
        self._log_info(
            "batch done",
            records=outcome.records_in,
            counts=dict(outcome.counts),
            held_back=len(outcome.held_back),
            first_failed_sequence=outcome.first_failed_sequence,
        )

    def _log_info(self, message: str, **fields: Any) -> None:
        if self.logger is not None:
            self.logger.info(message, extra=fields)

    def _log_warning(self, message: str, **fields: Any) -> None:
        if self.logger is not None:
            self.logger.warning(message, extra=fields)


def _guarded_changes(parsed: list[tuple[KinesisRecord, ParsedRecord]]) -> list[GuardedChange]:
    """Every change of the batch and the numbers it can act on: an invalid number is never applied."""
    return [
        GuardedChange(index, record.version, tuple(dict.fromkeys(n for n in change.numbers if is_e164(n))))
        for index, (record, change) in enumerate(parsed)
        if isinstance(change, OptInChange)
    ]


@dataclass
class _BatchState:
    """What one invocation has seen: which changes must wait for the redelivery, and why.

    `last_touch`: for each number, the position of the last change in the batch that acts on it.
    `waiting_numbers`: numbers whose earlier change in this batch waits for the redelivery or failed.
    """

    last_touch: dict[str, int]
    failure_seen: bool = False
    transient_failure_seen: bool = False
    blocked_users: set[str] = field(default_factory=set)
    opt_in_blocked_users: set[str] = field(default_factory=set)
    touched_after_failure: set[str] = field(default_factory=set)
    waiting_numbers: set[str] = field(default_factory=set)

    def wait_reason(self, change: OptInChange, index: int) -> str:
        if change.user_id in self.blocked_users:
            return "an earlier change of this user failed transiently"
        if self.waiting_numbers.intersection(change.numbers):
            return WAITING_NUMBER_REASON
        if not self.failure_seen or not change.opted_in or change.already_opted_in:
            return ""
        if self.transient_failure_seen:
            return "opt-ins after a transient failure wait for the redelivery"
        if change.user_id in self.opt_in_blocked_users:
            return "an earlier change of this user failed permanently"
        numbers = set(change.numbers)
        if numbers & self.touched_after_failure or any(self.last_touch[n] != index for n in numbers):
            return "another change after the failure touches this number: repeating both would delete it twice"
        return ""

    def hold_back(self, change: OptInChange) -> None:
        # After a transient failure a held-back change blocks its user, as a failed one does. After
        # only permanent failures it does not, so that no opt-out of another number waits: the
        # held-back opt-in is delivered again before the user's later changes, in order, and the
        # list ends as the user last chose. It always blocks its own numbers (`WAITING_NUMBER_REASON`).
        self.waiting_numbers.update(change.numbers)
        if self.transient_failure_seen:
            self.blocked_users.add(change.user_id)

    def touched(self, change: OptInChange) -> None:
        if self.failure_seen:
            self.touched_after_failure.update(change.numbers)

    def failed(self, change: OptInChange | SkippedRecord | RecordError, error: RecordError) -> None:
        self.failure_seen = True
        if isinstance(change, OptInChange):
            # The failed record is redelivered too: its numbers count as touched after the failure.
            self.touched_after_failure.update(change.numbers)
            self.waiting_numbers.update(change.numbers)
        if error.permanent:
            if isinstance(change, OptInChange):
                self.opt_in_blocked_users.add(change.user_id)
            return
        self.transient_failure_seen = True
        if isinstance(change, OptInChange):
            self.blocked_users.add(change.user_id)
