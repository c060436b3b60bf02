"""Opt-in updater: DMS change records of the opt-in table → the End User Messaging SMS opt-out list."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.optin_updater import OptInUpdater

logger = Logger()
metrics = Metrics()
tracer = Tracer()
updater = OptInUpdater.from_env(logger=logger, metrics=metrics)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return updater.handle(event, context)
