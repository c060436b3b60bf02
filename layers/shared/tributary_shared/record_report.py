"""The record report: what became of each record of one invocation, for an invoker that asks for it.

Lambda's event source mappings read a stream function's `batchItemFailures` only: the lowest failed
record, where to checkpoint. The redrive (tributary_shared.redrive) re-applies dead-lettered records one
per synchronous invocation and must know more: whether the function wrote the record or its version
guard found the item already at it or newer (superseded), and why a failure failed, and whether a
retry can help. It asks in the invocation's ClientContext (`{"custom": {"recordReport": true}}`), which
the mappings never set, and the function answers `recordReport` beside `batchItemFailures`:

    {"records": <records in, a KPL aggregate's user records each>,
     "superseded": [<record id>, ...],
     "failed": {<record id>: {"reason": "...", "permanent": true|false}}}

A record id is the sequence number, or `<sequence>:<subsequence>` for a user record of an aggregate.
"""

from collections.abc import Mapping
from typing import Any, Protocol

REPORT_KEY = "recordReport"


class ReportedLedger(Protocol):
    records_in: int
    superseded_ids: list[str]
    failed_permanent: dict[str, str]
    failed_transient: dict[str, str]


def report_requested(context: Any) -> bool:
    """Whether the invoker asked for the report in Invoke's ClientContext."""
    custom = getattr(getattr(context, "client_context", None), "custom", None)
    return isinstance(custom, Mapping) and custom.get(REPORT_KEY) is True


def record_report(ledger: ReportedLedger) -> dict[str, Any]:
    """`{"recordReport": ...}` for `ledger`: merged into the function's response when it was asked for."""
    failed = {
        record_id: {"reason": reason, "permanent": permanent}
        for failures, permanent in ((ledger.failed_permanent, True), (ledger.failed_transient, False))
        for record_id, reason in failures.items()
    }
    return {REPORT_KEY: {"records": ledger.records_in, "superseded": ledger.superseded_ids, "failed": failed}}
