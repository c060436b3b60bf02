"""The firehose_transform function: one Firehose transformation event, logged and published as metrics.

The transformation itself is `lake_rows.transform_order_changes`; this module imports nothing of
the CSV loader, so the transform never loads the loader's clients.
"""

from collections.abc import Mapping
from typing import Any

from tributary_shared.invocation import LambdaContextLike, LoggerLike
from tributary_shared.metrics import MetricsLike, publish
from tributary_shared.orders.lake_rows import transform_order_changes
from tributary_shared.orders.settings import FirehoseTransformSettings


class FirehoseTransform:
    def __init__(
        self,
        settings: FirehoseTransformSettings,
        *,
        logger: LoggerLike | None = None,
        metrics: MetricsLike | None = None,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.metrics = metrics

    def handle(self, event: Mapping[str, Any], context: LambdaContextLike) -> dict[str, Any]:
        response, summary = transform_order_changes(event, self.settings.source_table_name)
        if self.logger is not None:
            for record_id, reason in summary.failed.items():
                self.logger.warning("record failed transformation", extra={"record_id": record_id, "reason": reason})
        publish(
            self.metrics,
            {"ChangesTransformed": summary.ok, "ChangesDropped": summary.dropped, "ChangesFailed": len(summary.failed)},
        )
        return response
