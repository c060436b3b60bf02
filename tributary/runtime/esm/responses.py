"""How the engine judges what an invocation returned, and what follows from it.

- A function error (`InvocationResult.function_error`, or an exception escaping the invoker) fails
  the whole batch. With a tumbling window, a response without a ``state`` object does too.
- ReportBatchItemFailures: success = null response, empty response, null or empty batchItemFailures;
  whole-batch failure = an itemIdentifier that is null, empty, under a wrong key, or not a sequence
  number of this batch (also a non-object response or a non-list batchItemFailures). Otherwise the
  lowest sequence number returned is the checkpoint: the records before it are done. Without bisect
  the rest is retried as a retry of the batch (consuming the quota); with bisect the batch is split at
  that record and the rest is a new batch (no quota consumed); if the lowest failed record is the
  first of the batch nothing was split off, so it counts as a whole-batch failure (and bisects).
- After a whole-batch failure: with BisectBatchOnFunctionError a batch of two or more records is
  split in halves; splitting does not consume the retry quota, so retries are only counted (and
  exhausted) on single-record batches. MaximumRetryAttempts N allows N retries (N + 1 invocations);
  -1 = forever. Exhausted records are discarded to the on-failure destination.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tributary.runtime.esm.config import MappingConfig
from tributary.runtime.esm.sources import StreamRecord
from tributary.runtime.esm.windows import has_state
from tributary.runtime.invocation import InvocationResult, Invoker

SUCCESS, PARTIAL, ERROR = "success", "partial", "error"
_INVALID = -1


@dataclass(frozen=True)
class Outcome:
    kind: str  # SUCCESS | PARTIAL | ERROR
    failed_from: int = 0  # PARTIAL: index of the first record to retry
    error: str | None = None
    function_error: str | None = None


class AfterFailure(Enum):
    """What the engine does with a batch that failed as a whole."""

    BISECT = "bisect"
    DISCARD = "discard"
    RETRY = "retry"


def invoke(invoker: Invoker, event: dict[str, Any]) -> InvocationResult:
    try:
        return invoker(event)
    except Exception as error:
        # An invoker is expected to report errors itself; an escaping one is still a function error.
        return InvocationResult(function_error="Unhandled", error_message=f"{type(error).__name__}: {error}")


def judge(result: InvocationResult, records: list[StreamRecord], config: MappingConfig) -> Outcome:
    """The outcome of invoking `records` (a batch; never the final invoke of a window)."""
    if result.function_error:
        return function_error(result)
    response = result.response
    if config.window_s and not has_state(response):
        return Outcome(ERROR, error="tumbling-window functions must return {'state': {...}}",
                       function_error="Unhandled")
    if not config.report_batch_item_failures:
        return Outcome(SUCCESS)
    failed_from = _first_failed_index(response, records)
    if failed_from is None:
        return Outcome(SUCCESS)
    if failed_from == _INVALID:
        return Outcome(ERROR, error=f"invalid batchItemFailures response: {_clip(response)}")
    return Outcome(PARTIAL, failed_from=failed_from)


def judge_final(result: InvocationResult) -> Outcome:
    """The outcome of a window's final invoke: only a function error fails it."""
    return function_error(result) if result.function_error else Outcome(SUCCESS)


def function_error(result: InvocationResult) -> Outcome:
    return Outcome(ERROR, error=result.error_message or result.function_error, function_error=result.function_error)


def checkpoint_after(records: list[StreamRecord], outcome: Outcome, current: str | None) -> str | None:
    """The last sequence number of the lane known to be done once this outcome is applied."""
    if outcome.kind == SUCCESS:
        return records[-1].sequence_number
    if outcome.kind == PARTIAL and outcome.failed_from > 0:
        return records[outcome.failed_from - 1].sequence_number
    return current


def after_failure(records: list[StreamRecord], invocations: int, config: MappingConfig) -> AfterFailure:
    if config.bisect_on_function_error and len(records) > 1:
        return AfterFailure.BISECT
    if config.retries_exhausted(invocations):
        return AfterFailure.DISCARD
    return AfterFailure.RETRY


def _first_failed_index(response: Any, records: list[StreamRecord]) -> int | None:
    """Index of the lowest reported sequence number; None = success; _INVALID = whole batch failed."""
    if response is None or response == {} or response == "":
        return None
    if not isinstance(response, dict):
        return _INVALID
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return None
    if not isinstance(failures, list):
        return _INVALID
    positions = {record.sequence: index for index, record in enumerate(records)}
    indexes = [_failure_index(item, positions) for item in failures]
    return _INVALID if _INVALID in indexes else min(indexes)


def _failure_index(item: Any, positions: dict[int, int]) -> int:
    identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
    if not isinstance(identifier, str) or not identifier.strip().isdigit():
        return _INVALID
    return positions.get(int(identifier), _INVALID)


def _clip(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"
