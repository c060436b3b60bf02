"""The csv_loader function: the objects one event names, loaded until time runs low, then handed on.

Each request (an S3 notification's objects, or a payload naming one object or a continuation) is
loaded by `OrderCsvLoader`; a load that stops for time is continued by a new asynchronous
invocation of this same function, with the resume point as its payload. A load that cannot finish
raises `LoadFailed` out of the handler, so Lambda retries the invocation and then sends its payload
to the on-failure destination.
"""

import json
from collections.abc import Mapping
from typing import Any, Protocol

from tributary_shared import aws_clients
from tributary_shared.invocation import LambdaContextLike, LoggerLike
from tributary_shared.metrics import MetricsLike, publish
from tributary_shared.orders.load_request import LoadFailed, LoadRequest, LoadResult, requests_from_event
from tributary_shared.orders.loader import OrderCsvLoader, order_table_writer
from tributary_shared.orders.settings import CsvLoaderSettings


class FunctionContext(LambdaContextLike, Protocol):
    invoked_function_arn: str


class CsvLoader:
    def __init__(
        self,
        settings: CsvLoaderSettings,
        *,
        loader: OrderCsvLoader | None = None,
        lambda_client: Any = None,
        logger: LoggerLike | None = None,
        metrics: MetricsLike | None = None,
    ) -> None:
        self.settings = settings
        self._loader = loader
        self._lambda = lambda_client
        self.logger = logger
        self.metrics = metrics

    @property
    def loader(self) -> OrderCsvLoader:
        # Clients on first use: importing the handler stays cheap and tests can point boto3 first.
        if self._loader is None:
            self._loader = OrderCsvLoader(
                aws_clients.client("s3", botocore_retries=True),
                order_table_writer(self.settings.table_name),
                rows_per_write=self.settings.rows_per_write,
                write_threads=self.settings.write_threads,
            )
        return self._loader

    def handle(self, event: Mapping[str, Any], context: FunctionContext) -> dict[str, Any]:
        requests, skipped = requests_from_event(event)
        results: list[LoadResult] = []
        for request in requests:
            try:
                result = self.loader.load(
                    request, lambda: context.get_remaining_time_in_millis() / 1000, self.settings.continuation_margin_s
                )
            except LoadFailed as failure:
                # Raised on: Lambda retries this invocation, then sends its payload to the on-failure destination.
                if self.logger is not None:
                    resume_from = failure.request.to_payload()
                    self.logger.error("load failed", extra={"error": str(failure), "resume_from": resume_from})
                publish(self.metrics, {"OrderLoadsFailed": 1})
                raise
            if result.continuation is not None:
                self.continue_load(result.continuation, context)
            self._record(request, result)
            results.append(result)
        return {
            "files": [result.as_dict() for result in results],
            "skipped": skipped,
            "rows_loaded": sum(result.rows_loaded for result in results),
            "rows_rejected": sum(result.rows_rejected for result in results),
            "continued": sum(result.continuation is not None for result in results),
        }

    def continue_load(self, request: LoadRequest, context: FunctionContext) -> None:
        """Hand the rest of the file to a new asynchronous invocation of this same function."""
        if self._lambda is None:
            # Outside any retry loop of ours: botocore's own retries stay on for this one call.
            self._lambda = aws_clients.client("lambda", botocore_retries=True)
        self._lambda.invoke(
            FunctionName=context.invoked_function_arn,
            InvocationType="Event",
            Payload=json.dumps(request.to_payload()).encode(),
        )

    def _record(self, request: LoadRequest, result: LoadResult) -> None:
        if self.logger is not None:
            if result.error:
                self.logger.error("load failed", extra=result.as_dict())
            else:
                self.logger.info("load segment done", extra=result.as_dict())
        # Results carry totals over all segments; metrics count this segment's rows only.
        publish(
            self.metrics,
            {
                "OrderRowsLoaded": result.rows_loaded - request.rows_loaded,
                "OrderRowsRejected": result.rows_rejected - request.rows_rejected,
            },
        )
