"""Stream processor: Kinesis records → a DynamoDB read model (deployed once per stream/table pair)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.stream_processor import StreamProcessor

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = StreamProcessor.from_env(logger=logger, metrics=metrics)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return processor.handle(event, context)
