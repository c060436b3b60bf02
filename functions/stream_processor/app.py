"""Stream processor: Kinesis records → a DynamoDB read model (deployed once per stream/table pair)."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.stream_processor.processor import StreamProcessor
from tributary_shared.stream_processor.settings import StreamProcessorSettings
from tributary_shared.tracing import traced

logger = Logger()
metrics = Metrics()
processor = StreamProcessor(StreamProcessorSettings.from_env(), logger=logger, metrics=metrics)


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return processor.handle(event, context)
