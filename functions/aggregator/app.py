"""Aggregator: per-unicorn figures of each tumbling window of the wildrydes stream.

Logic lives in the shared layer (tributary_shared.fleet_window); this module wires configuration,
clients, logs and metrics. Environment: TABLE_NAME (UnicornAggregation), SUMMARY_STREAM_NAME.
"""

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.aggregation_sink import QUARANTINE_NAME, AggregationSink, QuarantineReport
from tributary_shared.fleet_window import FoldOutcome, InvocationReport, handle_window_event
from tributary_shared.invocation import invocation_deadline, required_env

logger = Logger()
metrics = Metrics()
tracer = Tracer()
# A batch full of bad records should not flood the log: the first few name the problem.
MAX_LOGGED_SEQUENCES = 10


@cache
def _configured_sink() -> AggregationSink:
    settings = required_env("aggregator", "TABLE_NAME", "SUMMARY_STREAM_NAME")
    return AggregationSink(settings["TABLE_NAME"], settings["SUMMARY_STREAM_NAME"])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = handle_window_event(event, _configured_sink(), invocation_deadline(context))
    _record(report)
    return report.response


def _record(report: InvocationReport) -> None:
    fold = report.fold
    metrics.add_metric(name="RecordsFolded", unit=MetricUnit.Count, value=fold.folded)
    metrics.add_metric(name="RecordsRedelivered", unit=MetricUnit.Count, value=fold.redelivered)
    metrics.add_metric(name="PoisonRecords", unit=MetricUnit.Count, value=fold.new_poison)
    metrics.add_metric(name="StateBytes", unit=MetricUnit.Bytes, value=report.state_bytes)
    metrics.add_metric(name="StateQuarantined", unit=MetricUnit.Count, value=int(bool(report.state_quarantined)))
    context = {
        "window": report.window.start,
        "shardId": report.window.shard_id,
        "folded": fold.folded,
        "redelivered": fold.redelivered,
        "unicorns": report.unicorns,
        "stateBytes": report.state_bytes,
    }
    if report.state_quarantined:
        _log_quarantine(
            "window state could not be read: stored raw as a quarantined item, the window goes on with a fresh state",
            report.state_quarantined,
            context,
        )
    _record_failures(fold, context)
    if report.flush_deferred:
        logger.warning(
            f"large window state not stored yet, kept for the next batch: {report.flush_deferred}", extra=context
        )
    if report.published:
        metrics.add_metric(name="WindowsClosed", unit=MetricUnit.Count, value=int(report.closed))
        metrics.add_metric(name="SegmentsFlushed", unit=MetricUnit.Count, value=int(report.segment_flushed))
        metrics.add_metric(name="PartialWindows", unit=MetricUnit.Count, value=int(report.partial))
        metrics.add_metric(name="AggregationItems", unit=MetricUnit.Count, value=report.published.items_written)
        metrics.add_metric(name="RowsQuarantined", unit=MetricUnit.Count, value=report.published.rows_quarantined)
        if report.published.quarantine:
            _log_quarantine(
                "unicorn rows that could not be stored were kept as a quarantined item; the others were stored",
                report.published.quarantine,
                context,
            )
        logger.info(
            "window stored" if report.closed else "large window state stored as a partial segment",
            extra={
                **context,
                "partial": report.partial,
                "items": report.published.items_written,
                "summaries": report.published.summaries_sent,
                "poisonInWindow": report.poison_in_window,
            },
        )


def _log_quarantine(message: str, quarantine: QuarantineReport, context: dict[str, Any]) -> None:
    logger.error(
        f"{message}: {quarantine.reason}",
        extra={
            **context,
            "quarantineKey": {"name": QUARANTINE_NAME, "windowStartPrefix": quarantine.sort_key_prefix},
            "parts": quarantine.parts,
            "chars": quarantine.chars,
            "truncated": quarantine.truncated,
        },
    )


def _record_failures(fold: FoldOutcome, context: dict[str, Any]) -> None:
    for sequence, reason in list(fold.poison.items())[:MAX_LOGGED_SEQUENCES]:
        logger.warning(f"poison record not folded: {reason}", extra={**context, "sequenceNumber": sequence})
    if fold.transient_sequence:
        logger.warning(
            f"transient failure, batch reported for retry from here: {fold.transient_reason}",
            extra={**context, "sequenceNumber": fold.transient_sequence, "notReached": fold.not_reached},
        )
