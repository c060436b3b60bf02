"""The redrive function's work, one action per state machine task: start, redrive one message, tally a page.

`redrive` settles one on-failure message or object, or keeps it with the reason:

- settled: every record of it is re-applied, superseded, quarantined (with the reason), or reported
  lost to retention. Only then does the state machine delete the message (move the object to
  `redriven/`), so an execution that dies midway loses nothing: the message comes back and the next
  run applies it again, which the pipelines' version guard and the quarantine's fixed keys make
  harmless;
- kept: not an invocation record, a function or a stream that no longer exists, a function that
  cannot be invoked now, or no time left: nothing is given up, the reason is in the summary;
- planned (a dry run): what would be re-applied or quarantined, nothing invoked or written.
"""

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tributary_shared import aws_clients
from tributary_shared.invocation import LambdaContextLike, LoggerLike, invocation_deadline
from tributary_shared.metrics import MetricsLike, publish
from tributary_shared.redrive import quarantine as lines
from tributary_shared.redrive.failure_records import (
    AsyncRequest,
    FailureRecord,
    NotRedrivable,
    StreamBatch,
    parse_failure,
)
from tributary_shared.redrive.replay import (
    FunctionReplay,
    FunctionUnavailable,
    Outcome,
    RecordResult,
    ReplayOutOfTime,
)
from tributary_shared.redrive.settings import RedriveSettings, RunOptions
from tributary_shared.redrive.stream_range import BatchRead, ReadOutOfTime, StreamGone, read_batch
from tributary_shared.redrive.summary import KEPT, NOT_SELECTED, PLANNED, SETTLED, empty_summary, tally
from tributary_shared.retries import RetryPolicy

# The longest invocation of a stream function (its Timeout, 60 s) and a margin: a record is started
# only if its invocation can end before the redrive's own deadline.
INVOCATION_BUDGET_S = 70.0
# Lambda's longest invocation: the client waits this long for a synchronous answer.
INVOKE_READ_TIMEOUT_S = 905
MAX_OBJECT_BYTES = 16 * 1024 * 1024  # an S3 destination object: a 6 MB event, base64 and JSON around it
NOT_REPLAYABLE = (
    "not replayed: {pipeline} cannot take a record back once it has moved on (its tumbling window has "
    "closed); kept here with its data"
)
NOT_ATTEMPTED = RecordResult(Outcome.FAILED, attempts=0)
FIGURE_OF = {
    Outcome.APPLIED: "reApplied",
    Outcome.SUPERSEDED: "superseded",
    Outcome.APPLIED_UNREPORTED: "appliedUnreported",
    Outcome.FAILED: "quarantined",
}


class Redriver:
    def __init__(
        self,
        settings: RedriveSettings,
        *,
        kinesis: Any = None,
        lambda_client: Any = None,
        s3: Any = None,
        logger: LoggerLike | None = None,
        metrics: MetricsLike | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._kinesis, self._lambda, self._s3 = kinesis, lambda_client, s3
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep

    # Clients on first use: the cold start stays cheap and tests can point boto3 first.
    @property
    def kinesis(self) -> Any:
        self._kinesis = self._kinesis or aws_clients.client("kinesis")
        return self._kinesis

    @property
    def lambda_client(self) -> Any:
        self._lambda = self._lambda or aws_clients.client("lambda", read_timeout=INVOKE_READ_TIMEOUT_S)
        return self._lambda

    @property
    def s3(self) -> Any:
        self._s3 = self._s3 or aws_clients.client("s3", botocore_retries=True)
        return self._s3

    def handle(self, event: Mapping[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        action = event.get("action") if isinstance(event, Mapping) else None
        if action == "start":
            return self.start(event.get("input"))
        if action == "redrive":
            return self.redrive(event["source"], RunOptions.from_input(event["options"], self._names()), context)
        if action == "tally":
            return tally(event["state"], event.get("results") or [], event["source"], bool(event.get("truncated")))
        raise ValueError(f"unknown action {action!r}: expected start, redrive or tally")

    def start(self, execution_input: Any) -> dict[str, Any]:
        """The execution's starting state: its options checked (ValueError fails the execution at once)."""
        options = RunOptions.from_input(execution_input if execution_input is not None else {}, self._names())
        state = options.as_input()
        return {
            "options": state,
            "failedRecordsBucket": self.settings.failed_records_bucket,
            "summary": empty_summary(state),
            "release": [],
            "more": True,
            "cursor": "",
        }

    def redrive(self, source: Mapping[str, Any], options: RunOptions, context: LambdaContextLike) -> dict[str, Any]:
        label = _label(source)
        try:
            failure = parse_failure(self._read(source))
        except NotRedrivable as error:
            return self._kept(label, None, error.reason)
        pipeline = self.settings.pipeline_of(failure.function_name)
        if pipeline is None:
            return self._kept(label, None, f"{failure.function_name} is not a function this stack redrives "
                                           f"({', '.join(self._names())})")  # fmt: skip
        if options.pipeline is not None and pipeline != options.pipeline:
            return {"message": label, "pipeline": pipeline, "disposition": NOT_SELECTED}
        deadline = invocation_deadline(context, self.clock)
        try:
            if isinstance(failure, AsyncRequest):
                return self._redrive_request(label, pipeline, failure, options, deadline)
            return self._redrive_batch(label, pipeline, failure, options, deadline)
        except NotRedrivable as error:
            return self._kept(label, pipeline, error.reason, failure)
        except (FunctionUnavailable, StreamGone, ReadOutOfTime, ReplayOutOfTime) as error:
            return self._kept(label, pipeline, str(error), failure)
        except (ClientError, BotoCoreError) as error:
            return self._kept(label, pipeline, f"{type(error).__name__}: {error}", failure)

    # ------------------------------------------------------------------ one stream batch

    def _redrive_batch(self, label: str, pipeline: str, batch: StreamBatch, options: RunOptions,
                       deadline: float) -> dict[str, Any]:  # fmt: skip
        read = self._read_back(batch, deadline)
        replayable = pipeline in self.settings.pipelines
        if options.dry_run:
            return self._planned(label, pipeline, batch, {
                "wouldReApply" if replayable else "wouldQuarantine": len(read.records),
                "lostToRetention": read.lost.records if read.lost else 0,
                "lost": [read.lost.as_dict()] if read.lost else [],
            })  # fmt: skip
        counts: Counter[str] = Counter()
        kept: list[dict[str, Any]] = []
        if read.lost is not None:
            counts["lostToRetention"] += read.lost.records
            kept.append(lines.lost_line(pipeline, batch, read.lost))
        if not replayable:
            reason = NOT_REPLAYABLE.format(pipeline=pipeline)
            kept += [lines.record_line(pipeline, batch, record, NOT_ATTEMPTED, reason) for record in read.records]
            counts["quarantined"] += len(read.records)
            return self._settled(label, pipeline, batch, counts, kept, read)
        replay = self._replay(batch.function_name, options, deadline)
        for position, record in enumerate(read.records):
            if self.clock() + INVOCATION_BUDGET_S > deadline:
                raise ReplayOutOfTime(f"out of time after {position} of {len(read.records)} records of "
                                      f"{batch.describe()}; the next run redrives it again")  # fmt: skip
            result = replay.apply(record)
            counts[FIGURE_OF[result.outcome]] += 1
            if result.outcome is Outcome.FAILED:
                kept.append(lines.record_line(pipeline, batch, record, result))
        return self._settled(label, pipeline, batch, counts, kept, read)

    def _read_back(self, batch: StreamBatch, deadline: float) -> BatchRead:
        if batch.records is not None:  # an S3 destination's object: the batch itself, exactly as Lambda sent it
            return BatchRead([dict(record) for record in batch.records])
        return read_batch(self.kinesis, batch, invoke_identity_arn=self.settings.invoke_identity_arn,
                          region=self.settings.region, deadline=deadline)  # fmt: skip

    # ------------------------------------------------------------------ one asynchronous request

    def _redrive_request(self, label: str, pipeline: str, request: AsyncRequest, options: RunOptions,
                         deadline: float) -> dict[str, Any]:  # fmt: skip
        if pipeline not in self.settings.pipelines:
            raise NotRedrivable(f"{pipeline} cannot replay an asynchronous request")
        if options.dry_run:
            return self._planned(label, pipeline, request, {"wouldReApply": 1, "request": request.payload})
        if self.clock() + INVOCATION_BUDGET_S > deadline:
            raise ReplayOutOfTime(f"out of time before re-invoking {request.describe()}")
        result, _ = self._replay(request.function_name, options, deadline).apply_request(request.payload)
        counts: Counter[str] = Counter({FIGURE_OF[result.outcome]: 1})
        kept = [lines.request_line(pipeline, request, result)] if result.outcome is Outcome.FAILED else []
        return self._settled(label, pipeline, request, counts, kept, None)

    # ------------------------------------------------------------------ outcomes

    def _replay(self, function_name: str, options: RunOptions, deadline: float) -> FunctionReplay:
        record_retry = RetryPolicy(base_s=options.retry_delay_s, cap_s=max(options.retry_delay_s * 8, 0.001),
                                   call_budget_s=INVOCATION_BUDGET_S, clock=self.clock, sleep=self.sleep)  # fmt: skip
        return FunctionReplay(self.lambda_client, function_name, max_attempts=options.max_attempts,
                              record_retry=record_retry, deadline=deadline)  # fmt: skip

    def _settled(self, label: str, pipeline: str, failure: FailureRecord, counts: Counter[str],
                 kept: list[dict[str, Any]], read: BatchRead | None) -> dict[str, Any]:  # fmt: skip
        uri = lines.Quarantine(self.s3, self.settings.quarantine_bucket).keep(
            lines.quarantine_key(pipeline, failure), kept
        )
        figures = {figure: counts.get(figure, 0) for figure in FIGURE_OF.values()} | {
            "lostToRetention": counts.get("lostToRetention", 0)
        }
        publish(self.metrics, {"MessagesSettled": 1, "RecordsReApplied": figures["reApplied"],
                               "RecordsSuperseded": figures["superseded"],
                               "RecordsAppliedUnreported": figures["appliedUnreported"],
                               "RecordsQuarantined": figures["quarantined"],
                               "RecordsLostToRetention": figures["lostToRetention"]})  # fmt: skip
        outcome = {
            "message": label,
            "pipeline": pipeline,
            "function": failure.function_name,
            "disposition": SETTLED,
            "describe": failure.describe(),
            "counts": figures,
            "lost": [read.lost.as_dict()] if read is not None and read.lost is not None else [],
            "quarantine": uri,
        }
        self._log("message settled", outcome)
        return outcome

    def _kept(self, label: str, pipeline: str | None, reason: str, failure: FailureRecord | None = None
              ) -> dict[str, Any]:  # fmt: skip
        publish(self.metrics, {"MessagesKept": 1})
        outcome = {"message": label, "pipeline": pipeline, "disposition": KEPT, "reason": reason,
                   "describe": failure.describe() if failure is not None else None}  # fmt: skip
        self._log("message kept", outcome, warning=True)
        return outcome

    def _planned(self, label: str, pipeline: str, failure: FailureRecord, plan: dict[str, Any]) -> dict[str, Any]:
        return {"message": label, "pipeline": pipeline, "function": failure.function_name, "disposition": PLANNED,
                "plan": {"describe": failure.describe(), **plan}}  # fmt: skip

    def _log(self, message: str, outcome: Mapping[str, Any], *, warning: bool = False) -> None:
        if self.logger is not None:
            (self.logger.warning if warning else self.logger.info)(message, extra={"outcome": outcome})

    # ------------------------------------------------------------------ sources

    def _read(self, source: Mapping[str, Any]) -> str | bytes:
        kind = source.get("type")
        if kind == "sqs":
            body = source.get("body")
            if not isinstance(body, str):
                raise NotRedrivable("the message has no body")
            return body
        if kind == "s3":
            return self._object(str(source.get("bucket")), str(source.get("key")))
        raise NotRedrivable(f"unknown source type {kind!r}")

    def _object(self, bucket: str, key: str) -> bytes:
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if aws_clients.error_code(error) in {"NoSuchKey", "404"}:
                raise NotRedrivable(f"s3://{bucket}/{key} no longer exists") from error
            raise NotRedrivable(f"cannot read s3://{bucket}/{key}: {aws_clients.error_code(error)}") from error
        if int(response.get("ContentLength") or 0) > MAX_OBJECT_BYTES:
            raise NotRedrivable(f"s3://{bucket}/{key} is larger than {MAX_OBJECT_BYTES} bytes")
        return bytes(response["Body"].read())

    def _names(self) -> list[str]:
        return self.settings.pipeline_names


def _label(source: Mapping[str, Any]) -> str:
    if source.get("type") == "s3":
        return f"s3://{source.get('bucket')}/{source.get('key')}"
    return str(source.get("messageId") or "unknown message")

