"""DMS change records of the opt-in table → the SMS opt-out list, one Kinesis batch at a time.

The contract with Lambda's event source mapping (ReportBatchItemFailures + bisect):

- records are applied in sequence order, so each user's changes keep their order;
- a transient failure (throttling past the retries, missing list, access denied, out of time)
  blocks that user: their later changes in the batch are not applied, since applying an older
  change after a newer one would leave the wrong state;
- a permanent failure (malformed record, invalid phone, refused opt-out) fails that record only;
- the response names the lowest failed sequence number: the mapping checkpoints before it and
  re-delivers everything from it; with bisect, a record that keeps failing is isolated and its
  batch sent to the on-failure destination;
- after the first failure, other users' opt-outs are still applied at once (PutOptedOutNumber is
  idempotent, and an opt-out should take effect as soon as possible), but opt-ins wait for the
  redelivery: a number can be deleted from the list only once every 30 days, so deleting it now
  and again when the record is redelivered would have the second deletion refused.
"""

import base64
import binascii
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tributary_shared.dms_records import (
    DEFAULT_BEFORE_IMAGE_FIELD,
    DmsSource,
    OptInChange,
    SkippedRecord,
    parse_dms_record,
)
from tributary_shared.errors import PoisonRecordError, RecordError, TransientError
from tributary_shared.invocation import LambdaContextLike, LoggerLike, MetricsLike, invocation_deadline
from tributary_shared.opt_out_list import Applied, OptOutList, OptOutRefused, Outcome

METRIC_BY_OUTCOME = {
    Outcome.OPTED_OUT: "OptOuts",
    Outcome.OPTED_IN: "OptIns",
    Outcome.NOT_ON_LIST: "OptIns",
    Outcome.REFUSED: "Refused",
}


@dataclass(frozen=True)
class UpdaterConfig:
    opt_out_list_name: str
    source: DmsSource

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "UpdaterConfig":
        env = os.environ if environ is None else environ
        missing = [name for name in ("OPT_OUT_LIST_NAME", "SOURCE_TABLE") if not env.get(name)]
        if missing:
            raise RuntimeError(f"opt-in updater is not configured: set {', '.join(missing)}")
        source = DmsSource(
            table=env["SOURCE_TABLE"],
            schema=env.get("SOURCE_SCHEMA") or None,
            before_image_field=env.get("BEFORE_IMAGE_FIELD") or DEFAULT_BEFORE_IMAGE_FIELD,
        )
        return cls(opt_out_list_name=env["OPT_OUT_LIST_NAME"], source=source)


@dataclass
class BatchOutcome:
    """Every record of one invocation: applied, skipped, failed (with reason) or held back."""

    records_in: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    failed_permanent: dict[str, str] = field(default_factory=dict)
    failed_transient: dict[str, str] = field(default_factory=dict)
    held_back: list[str] = field(default_factory=list)

    @property
    def first_failed_sequence(self) -> str | None:
        failed = [*self.failed_permanent, *self.failed_transient]
        return min(failed, key=int) if failed else None

    def response(self) -> dict[str, list[dict[str, str]]]:
        first = self.first_failed_sequence
        return {"batchItemFailures": [] if first is None else [{"itemIdentifier": first}]}


class OptInUpdater:
    def __init__(
        self,
        config: UpdaterConfig,
        *,
        opt_out_list: OptOutList | None = None,
        logger: LoggerLike | None = None,
        metrics: MetricsLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.opt_out_list = opt_out_list or OptOutList(config.opt_out_list_name, clock=clock)
        self.logger = logger
        self.metrics = metrics
        self.clock = clock

    @classmethod
    def from_env(cls, **kwargs: Any) -> "OptInUpdater":
        return cls(UpdaterConfig.from_env(), **kwargs)

    def handle(self, event: Mapping[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        deadline = invocation_deadline(context, self.clock, margin_s=2.0)
        outcome = self.process(event.get("Records") or [], deadline)
        self._publish(outcome)
        return outcome.response()

    def process(self, records: Sequence[Mapping[str, Any]], deadline: float) -> BatchOutcome:
        ordered = sorted(records, key=lambda record: int(record["kinesis"]["sequenceNumber"]))
        outcome = BatchOutcome(records_in=len(ordered))
        blocked_users: set[str] = set()
        for record in ordered:
            sequence = str(record["kinesis"]["sequenceNumber"])
            try:
                self._process_record(record, sequence, deadline, blocked_users, outcome)
            except RecordError as error:
                self._fail(sequence, error, outcome)
        return outcome

    def _process_record(
        self,
        record: Mapping[str, Any],
        sequence: str,
        deadline: float,
        blocked_users: set[str],
        outcome: BatchOutcome,
    ) -> None:
        parsed = parse_dms_record(_record_bytes(record), self.config.source)
        if isinstance(parsed, SkippedRecord):
            outcome.counts["Ignored"] += 1
            self._log_info("skipped DMS record", sequence=sequence, reason=parsed.reason)
            return
        if parsed.user_id in blocked_users or (outcome.first_failed_sequence and parsed.opted_in):
            # This change will be delivered again from the checkpoint, so it waits for that. A user's
            # later changes wait with it (order); an opt-in waits even for another user, because
            # a number can be deleted from the list only once every 30 days: deleting it now and
            # again on the redelivery would have the second deletion refused.
            blocked_users.add(parsed.user_id)
            outcome.held_back.append(sequence)
            return
        try:
            self._apply(parsed, sequence, deadline, outcome)
        except TransientError:
            blocked_users.add(parsed.user_id)
            raise

    def _apply(self, change: OptInChange, sequence: str, deadline: float, outcome: BatchOutcome) -> None:
        if self.clock() >= deadline:
            raise TransientError("out of time before applying this change")
        for applied in self.opt_out_list.apply(change, deadline):
            self._count(applied, change, sequence, outcome)

    def _count(self, applied: Applied, change: OptInChange, sequence: str, outcome: BatchOutcome) -> None:
        metric = METRIC_BY_OUTCOME.get(applied.outcome)
        if metric:
            outcome.counts[metric] += 1
        if applied.reason:
            self._log_warning(
                "change not applied as asked",
                sequence=sequence,
                user_id=change.user_id,
                phone=applied.phone,
                outcome=str(applied.outcome),
                reason=applied.reason,
            )

    def _fail(self, sequence: str, error: RecordError, outcome: BatchOutcome) -> None:
        if error.permanent:
            outcome.failed_permanent[sequence] = error.reason
            outcome.counts["Refused" if isinstance(error, OptOutRefused) else "Invalid"] += 1
        else:
            outcome.failed_transient[sequence] = error.reason
        kind = "permanent" if error.permanent else "transient"
        self._log_warning(f"{kind} failure", sequence=sequence, reason=error.reason)

    def _publish(self, outcome: BatchOutcome) -> None:
        if self.metrics is not None:
            for name in ("OptOuts", "OptIns", "Ignored", "Invalid", "Refused"):
                self.metrics.add_metric(name=name, unit="Count", value=outcome.counts[name])
            self.metrics.add_metric(name="TransientFailures", unit="Count", value=len(outcome.failed_transient))
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


def _record_bytes(record: Mapping[str, Any]) -> bytes:
    try:
        return base64.b64decode(record["kinesis"]["data"], validate=True)
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise PoisonRecordError(f"record data is not valid base64: {error}") from error
