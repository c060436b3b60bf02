"""CSV loader: order CSV files in S3 → the OrderTransactions table, resuming itself when time runs low."""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.orders.csv_loader import CsvLoader
from tributary_shared.orders.settings import CsvLoaderSettings
from tributary_shared.tracing import traced

logger = Logger()
metrics = Metrics()
csv_loader = CsvLoader(CsvLoaderSettings.from_env(), logger=logger, metrics=metrics)


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return csv_loader.handle(event, context)
