"""Firehose transform: DynamoDB change records of OrderTransactions → rows of the lake's Glue table."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.firehose_orders import transform_order_changes
from tributary_shared.invocation import required_env

SOURCE_TABLE_NAME = required_env("firehose transform", "SOURCE_TABLE_NAME")["SOURCE_TABLE_NAME"]

logger = Logger()
metrics = Metrics()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response, summary = transform_order_changes(event, SOURCE_TABLE_NAME)
    for record_id, reason in summary.failed.items():
        logger.warning("record failed transformation", extra={"record_id": record_id, "reason": reason})
    metrics.add_metric("ChangesTransformed", MetricUnit.Count, summary.ok)
    metrics.add_metric("ChangesDropped", MetricUnit.Count, summary.dropped)
    metrics.add_metric("ChangesFailed", MetricUnit.Count, len(summary.failed))
    return response
