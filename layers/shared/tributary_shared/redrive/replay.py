"""Records re-applied through the pipeline's own deployed function: same code, configuration and version guard.

Each record goes alone, as the one-record batch Lambda's event source mapping sends once it has
bisected a failing batch down to it, in a synchronous invocation (RequestResponse), and the answer is
read as the mapping reads it (`batchItemFailures`; a function error fails the record). One record per
invocation costs an invocation per record, and buys an exact account: every answer is about that
record alone, so nothing written by one attempt can be mistaken for a newer item by the next.

How each record came out, `Outcome`:

- APPLIED: the function wrote it; SUPERSEDED: the function's version guard found its item already
  at this record or a newer one, so nothing was written. Only the function knows which, so the redrive
  asks it: the invocation's ClientContext (which Lambda's event source mappings never set) carries
  `{"custom": {"recordReport": true}}`, and the function answers its `recordReport` beside
  `batchItemFailures`: `{"records": n, "superseded": [record ids], "failed": {record id: {"reason",
  "permanent"}}}`, a record id being the sequence number, or `<sequence>:<subsequence>` for a user
  record of a KPL aggregate (n counts them; the Kinesis record is superseded when all of them are).
  The event itself stays exactly what the mapping sends. A function whose answer carries no report
  gets APPLIED_UNREPORTED: done, written or superseded, it does not say which;
- FAILED: still failing after the bounded attempts (a failure the function reports permanent is not
  retried), with the reason the function gave, or its error, to quarantine the record with.

An attempt is started only if it can end before the redrive's own deadline (`record_retry`'s call
budget: the function's timeout); otherwise `ReplayOutOfTime`, and the message waits for the next run.

A function that cannot be invoked (missing, throttled past the retries, the service failing) is not
the record's fault: `FunctionUnavailable` stops the message, which stays in the queue for the next run.
"""

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tributary_shared.aws_clients import error_code
from tributary_shared.retries import NO_DEADLINE, RetryPolicy

REPORT_KEY = "recordReport"
# Invoke's ClientContext (base64 JSON) asking the function for its record report.
REPORT_REQUEST = base64.b64encode(json.dumps({"custom": {REPORT_KEY: True}}).encode()).decode()
# Errors of the Invoke call itself (not of the function) that a later call can get past.
RETRYABLE_INVOKE_ERRORS = frozenset(
    {"TooManyRequestsException", "ServiceException", "ResourceNotReadyException", "ResourceConflictException",
     "EC2ThrottledException", "SnapStartNotReadyException"}
)  # fmt: skip
INVOKE_RETRY = RetryPolicy(base_s=0.5, cap_s=8.0, max_attempts=5, call_budget_s=0.0)
MAX_REASON_CHARS = 500


class Outcome(StrEnum):
    APPLIED = "applied"
    SUPERSEDED = "superseded"
    APPLIED_UNREPORTED = "applied-unreported"
    FAILED = "failed"


@dataclass(frozen=True)
class RecordResult:
    outcome: Outcome
    attempts: int
    reason: str | None = None
    permanent: bool | None = None  # what the function said of a failure; None when it said nothing


@dataclass(frozen=True)
class Verdict:
    """What one invocation said about its one record."""

    done: bool
    superseded: bool | None = None  # None: the function's response carries no report
    reason: str | None = None
    permanent: bool | None = None


class ReplayOutOfTime(Exception):
    """The invocation's time ran out with a record not done: not the record's fault, so it is not quarantined."""


class FunctionUnavailable(Exception):
    """The function could not be invoked at all: the message stays where it is, for the next run."""


class FunctionReplay:
    """Invokes one function with one record at a time and judges its answer as the mapping would."""

    def __init__(
        self,
        lambda_client: Any,
        function_name: str,
        *,
        max_attempts: int,
        record_retry: RetryPolicy,
        invoke_retry: RetryPolicy = INVOKE_RETRY,
        deadline: float = NO_DEADLINE,
    ) -> None:
        self.lambda_client = lambda_client
        self.function_name = function_name
        self.max_attempts = max_attempts
        self.record_retry = record_retry
        self.invoke_retry = invoke_retry
        self.deadline = deadline
        self.invocations = 0

    def apply(self, event_record: Mapping[str, Any]) -> RecordResult:
        """The record through the function until it is done, fails permanently, or the attempts run out."""
        sequence = str(event_record["kinesis"]["sequenceNumber"])
        attempts = 0
        while True:
            attempts += 1
            verdict = self.judge(sequence, self.invoke({"Records": [dict(event_record)]}))
            if verdict.done:
                return RecordResult(_done_outcome(verdict), attempts)
            if verdict.permanent or attempts >= self.max_attempts:
                return RecordResult(Outcome.FAILED, attempts, verdict.reason, verdict.permanent)
            self._wait_before_retry(attempts)

    def apply_request(self, payload: Any) -> tuple[RecordResult, Any]:
        """An asynchronous invocation's request sent again, synchronously: done when the function answers
        without an error (the CSV loader then has loaded the rest of its file, or handed it on to itself)."""
        attempts = 0
        while True:
            attempts += 1
            response, answer = self.invoke(payload)
            if not response.get("FunctionError"):
                return RecordResult(Outcome.APPLIED, attempts), answer
            if attempts >= self.max_attempts:
                reason = f"{self.function_name} failed: {_error_text(answer)}"
                return RecordResult(Outcome.FAILED, attempts, reason), answer
            self._wait_before_retry(attempts)

    def _wait_before_retry(self, attempts: int) -> None:
        """Sleep before the next attempt; ReplayOutOfTime when it could not end before the deadline."""
        if not self.record_retry.wait_before_retry(attempts, self.deadline):
            raise ReplayOutOfTime(f"no time left for attempt {attempts + 1} at a record through {self.function_name}")

    def invoke(self, payload: Any) -> tuple[dict[str, Any], Any]:
        """(the Invoke response's metadata, the function's answer); FunctionUnavailable if it cannot be invoked."""
        calls = 0
        while True:
            calls += 1
            try:
                response = self.lambda_client.invoke(
                    FunctionName=self.function_name,
                    InvocationType="RequestResponse",
                    ClientContext=REPORT_REQUEST,
                    Payload=json.dumps(payload).encode(),
                )
                self.invocations += 1
                return response, _answer(response["Payload"].read())
            except ClientError as error:
                code = error_code(error)
                if code not in RETRYABLE_INVOKE_ERRORS or not self.invoke_retry.wait_before_retry(calls, self.deadline):
                    raise FunctionUnavailable(f"cannot invoke {self.function_name}: {code}: {error}") from error
            except BotoCoreError as error:
                if not self.invoke_retry.wait_before_retry(calls, self.deadline):
                    raise FunctionUnavailable(f"cannot invoke {self.function_name}: {error}") from error

    def judge(self, sequence: str, invocation: tuple[Mapping[str, Any], Any]) -> Verdict:
        """The verdict on `sequence`'s record, from the function's answer as Lambda's mapping reads it."""
        response, answer = invocation
        if response.get("FunctionError"):
            return Verdict(False, reason=f"{self.function_name} failed: {_error_text(answer)}")
        report = answer.get(REPORT_KEY) if isinstance(answer, Mapping) else None
        failures = answer.get("batchItemFailures") if isinstance(answer, Mapping) else None
        if answer is None or answer == {} or failures is None or failures == []:
            return Verdict(True, superseded=_superseded(report, sequence))
        identifiers = [item.get("itemIdentifier") for item in failures if isinstance(item, Mapping)] if (
            isinstance(failures, list)) else []  # fmt: skip
        if identifiers != [sequence] and sequence not in identifiers:
            return Verdict(False, reason=f"{self.function_name} answered an invalid batchItemFailures: {_clip(answer)}")
        reason, permanent = _reported_failure(report, sequence)
        return Verdict(False, reason=reason or f"{self.function_name} reported the record failed "
                                               "(its response gives no reason; see its log group)",
                       permanent=permanent)  # fmt: skip


def _done_outcome(verdict: Verdict) -> Outcome:
    if verdict.superseded is None:
        return Outcome.APPLIED_UNREPORTED
    return Outcome.SUPERSEDED if verdict.superseded else Outcome.APPLIED


def _answer(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _superseded(report: Any, sequence: str) -> bool | None:
    """Whether the report says the record (every user record of an aggregate) was superseded; None: no report."""
    if not isinstance(report, Mapping) or not isinstance(report.get("superseded"), list):
        return None
    superseded = [record_id for record_id in report["superseded"] if _sequence_of(record_id) == sequence]
    records = report.get("records")
    return bool(superseded) and len(superseded) >= (records if isinstance(records, int) and records > 0 else 1)


def _reported_failure(report: Any, sequence: str) -> tuple[str | None, bool | None]:
    """The reason the report gives for the record's failure (its first failed user record's), and whether
    it is permanent (every failure of it is)."""
    failed = report.get("failed") if isinstance(report, Mapping) else None
    if not isinstance(failed, Mapping):
        return None, None
    entries = [(key, entry) for key, entry in failed.items() if _sequence_of(key) == sequence
               and isinstance(entry, Mapping)]  # fmt: skip
    if not entries:
        return None, None
    key, first = entries[0]
    reason = str(first.get("reason") or "no reason given")
    if key != sequence:
        reason = f"user record {key}: {reason}"
    permanent = [entry.get("permanent") for _, entry in entries]
    return reason[:MAX_REASON_CHARS], (all(permanent) if all(isinstance(p, bool) for p in permanent) else None)


def _sequence_of(record_id: Any) -> str:
    """A record id's sequence number (`<sequence>:<subsequence>` for a user record of an aggregate)."""
    return str(record_id).partition(":")[0]


def _error_text(answer: Any) -> str:
    if isinstance(answer, Mapping):
        kind, message = answer.get("errorType"), answer.get("errorMessage")
        return f"{kind}: {message}"[:MAX_REASON_CHARS] if kind or message else _clip(answer)
    return _clip(answer)


def _clip(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"
