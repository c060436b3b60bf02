"""CSV loader: order CSV files in S3 → the OrderTransactions table, resuming itself when time runs low."""

import json
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tributary_shared.invocation import bounded_int_env, required_env
from tributary_shared.order_loader import (
    LoadFailed,
    LoadRequest,
    LoadResult,
    OrderCsvLoader,
    order_table_writer,
    requests_from_event,
)

TABLE_NAME = required_env("csv loader", "TABLE_NAME")["TABLE_NAME"]
# Stop and hand over to a fresh invocation when less than this is left.
CONTINUATION_MARGIN_S = bounded_int_env("CONTINUATION_MARGIN_MS", 30_000, 1_000, 600_000) / 1000
ROWS_PER_WRITE = bounded_int_env("ROWS_PER_WRITE", 500, 25, 10_000)
# BatchWriteItem requests in flight at once: each is mostly a round trip to DynamoDB.
WRITE_THREADS = bounded_int_env("WRITE_THREADS", 4, 1, 16)

logger = Logger()
metrics = Metrics()
tracer = Tracer()


@cache
def loader() -> OrderCsvLoader:
    # Clients on first use: importing the handler stays cheap and tests can point boto3 first.
    writer = order_table_writer(TABLE_NAME)
    return OrderCsvLoader(boto3.client("s3"), writer, rows_per_write=ROWS_PER_WRITE, write_threads=WRITE_THREADS)


@cache
def lambda_client() -> Any:
    return boto3.client("lambda")


def invoke_continuation(request: LoadRequest, context: LambdaContext) -> None:
    """Hand the rest of the file to a new asynchronous invocation of this same function."""
    lambda_client().invoke(
        FunctionName=context.invoked_function_arn,
        InvocationType="Event",
        Payload=json.dumps(request.to_payload()).encode(),
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    requests, skipped = requests_from_event(event)
    results: list[LoadResult] = []
    for request in requests:
        try:
            result = loader().load(
                request, lambda: context.get_remaining_time_in_millis() / 1000, CONTINUATION_MARGIN_S
            )
        except LoadFailed as failure:
            # Raised on: Lambda retries this invocation, then sends its payload to the on-failure destination.
            logger.error("load failed", extra={"error": str(failure), "resume_from": failure.request.to_payload()})
            metrics.add_metric("OrderLoadsFailed", MetricUnit.Count, 1)
            raise
        if result.continuation is not None:
            invoke_continuation(result.continuation, context)
        log_result(request, result)
        results.append(result)
    return {
        "files": [result.as_dict() for result in results],
        "skipped": skipped,
        "rows_loaded": sum(result.rows_loaded for result in results),
        "rows_rejected": sum(result.rows_rejected for result in results),
        "continued": sum(result.continuation is not None for result in results),
    }


def log_result(request: LoadRequest, result: LoadResult) -> None:
    summary = result.as_dict()
    if result.error:
        logger.error("load failed", extra=summary)
    else:
        logger.info("load segment done", extra=summary)
    # Results carry totals over all segments; metrics count this segment's rows only.
    metrics.add_metric("OrderRowsLoaded", MetricUnit.Count, result.rows_loaded - request.rows_loaded)
    metrics.add_metric("OrderRowsRejected", MetricUnit.Count, result.rows_rejected - request.rows_rejected)
