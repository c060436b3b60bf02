"""Opt-in updater: DMS change records of the opt-in table → the End User Messaging SMS opt-out list."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.optin_updater.settings import OptInUpdaterSettings
from tributary_shared.optin_updater.updater import OptInUpdater
from tributary_shared.tracing import traced

logger = Logger()
metrics = Metrics()
updater = OptInUpdater(OptInUpdaterSettings.from_env(), logger=logger, metrics=metrics)


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return updater.handle(event, context)
