"""Aggregator: per-unicorn figures of each tumbling window of the wildrydes stream.

Logic, logs and metrics live in the shared layer (tributary_shared.aggregator); this module builds
the function's settings and its Powertools logger and metrics at cold start and wires them in.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.aggregator.aggregator import Aggregator
from tributary_shared.aggregator.settings import AggregatorSettings
from tributary_shared.tracing import traced

logger = Logger()
metrics = Metrics()
aggregator = Aggregator(AggregatorSettings.from_env(), logger=logger, metrics=metrics)


@logger.inject_lambda_context
@traced
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return aggregator.handle(event, context)
