"""Aggregator: per-unicorn figures of each tumbling window of the wildrydes stream.

Logic lives in the shared layer (tributary_shared.fleet_window); this module wires configuration,
clients, logs and metrics. Environment: TABLE_NAME (UnicornAggregation), SUMMARY_STREAM_NAME.
"""

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.aggregation_sink import AggregationSink
from tributary_shared.fleet_window import InvocationReport, handle_window_event
from tributary_shared.invocation import invocation_deadline

logger = Logger()
metrics = Metrics()
tracer = Tracer()


@cache
def _sink(table_name: str, stream_name: str, endpoint_url: str | None) -> AggregationSink:
    # Keyed by endpoint so a process that re-points boto3 (tests, the local runtime) gets fresh clients.
    return AggregationSink(table_name, stream_name, dynamodb=boto3.client("dynamodb"), kinesis=boto3.client("kinesis"))


def _configured_sink() -> AggregationSink:
    missing = [name for name in ("TABLE_NAME", "SUMMARY_STREAM_NAME") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"aggregator is not configured: set {', '.join(missing)}")
    return _sink(os.environ["TABLE_NAME"], os.environ["SUMMARY_STREAM_NAME"], os.environ.get("AWS_ENDPOINT_URL"))


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
    context = {
        "window": report.window.start,
        "shardId": report.window.shard_id,
        "folded": fold.folded,
        "redelivered": fold.redelivered,
        "unicorns": report.unicorns,
        "stateBytes": report.state_bytes,
    }
    if fold.failed_sequence:
        kind = "poison" if fold.failure_permanent else "transient"
        logger.warning(
            f"{kind} record reported for retry: {fold.failure_reason}",
            extra={**context, "sequenceNumber": fold.failed_sequence, "notReached": fold.not_reached},
        )
    if report.state_near_limit:
        logger.warning("window state is close to Lambda's 1 MB limit; expect early termination", extra=context)
    if report.closed and report.published:
        metrics.add_metric(name="WindowsClosed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="PartialWindows", unit=MetricUnit.Count, value=int(report.partial))
        metrics.add_metric(name="AggregationItems", unit=MetricUnit.Count, value=report.published.items_written)
        logger.info(
            "window stored",
            extra={
                **context,
                "partial": report.partial,
                "items": report.published.items_written,
                "summaries": report.published.summaries_sent,
                "poisonInWindow": report.poison_in_window,
            },
        )
