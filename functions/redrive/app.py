"""Redrive: dead-lettered records back through the pipeline that gave them up (statemachine/redrive.asl.json).

The state machine calls this function with one action per task (`start`, `redrive` one message,
`tally` a page); the work lives in the shared layer (tributary_shared.redrive).
"""

import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.redrive.redriver import Redriver
from tributary_shared.redrive.settings import RedriveSettings
from tributary_shared.tracing import traced

# Only `redrive` publishes metrics; `start` and `tally` publishing none is expected, not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
logger = Logger()
metrics = Metrics()
redriver = Redriver(RedriveSettings.from_env(), logger=logger, metrics=metrics)


@logger.inject_lambda_context
@traced
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return redriver.handle(event, context)
