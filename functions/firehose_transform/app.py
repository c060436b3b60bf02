"""Firehose transform: DynamoDB change records of OrderTransactions → rows of the lake's Glue table."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.orders.firehose_transform import FirehoseTransform
from tributary_shared.orders.settings import FirehoseTransformSettings
from tributary_shared.tracing import traced

logger = Logger()
metrics = Metrics()
transform = FirehoseTransform(FirehoseTransformSettings.from_env(), logger=logger, metrics=metrics)


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return transform.handle(event, context)
