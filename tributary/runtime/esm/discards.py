"""Discarded records: the invocation record of a batch the mapping gives up on, sent on-failure.

Records are discarded when their retries are exhausted (RetryAttemptsExhausted) or, before any
invocation, when they are older than MaximumRecordAgeInSeconds (RecordAgeExceeded). The record
goes to the on-failure destination, if any (see tributary.runtime.destinations for its format), and
the lane moves on past them either way; what happened is one "delivery" (also written to the trace).
"""

from __future__ import annotations

import uuid
from typing import Any

from tributary.runtime import destinations as dest
from tributary.runtime.esm.config import MappingConfig
from tributary.runtime.esm.sources import StreamRecord, StreamSource


class Discards:
    """Builds and sends the invocation records of one mapping's discarded batches."""

    def __init__(self, config: MappingConfig, mapping_uuid: str) -> None:
        self.config = config
        self.mapping_uuid = mapping_uuid
        self.destination = (
            dest.OnFailureDestination(config.on_failure_destination_arn)
            if config.on_failure_destination_arn else None
        )

    def deliver(self, source: StreamSource, shard_id: str, records: list[StreamRecord], *, condition: str,
                invocations: int, function_error: str | None, event: dict[str, Any], now: float) -> dict[str, Any]:
        """Send the records' invocation record; the delivery: where it went (``location``) or why not (``error``)."""
        batch_info = _batch_info(source, shard_id, records)
        record = dest.invocation_record(
            function_arn=self.config.function_arn, condition=condition, invoke_count=invocations,
            function_error=function_error, request_id=str(uuid.uuid4()),
            batch_info_key=source.batch_info_key, batch_info=batch_info, now=now,
        )
        delivery: dict[str, Any] = {
            "condition": condition, "shard": shard_id, "records": len(records),
            "destination": self.destination.arn if self.destination else None,
            "location": None, "error": None, "batchInfo": batch_info,
        }
        if self.destination is not None:
            try:
                delivery["location"] = self.destination.send(
                    record, event, mapping_uuid=self.mapping_uuid, shard_id=shard_id, now=now
                )
            except Exception as error:
                delivery["error"] = f"{type(error).__name__}: {error}"
        return delivery


def _batch_info(source: StreamSource, shard_id: str, records: list[StreamRecord]) -> dict[str, Any]:
    return {
        "shardId": shard_id,
        "startSequenceNumber": records[0].sequence_number,
        "endSequenceNumber": records[-1].sequence_number,
        "approximateArrivalOfFirstRecord": source.format_arrival(records[0].arrival),
        "approximateArrivalOfLastRecord": source.format_arrival(records[-1].arrival),
        "batchSize": len(records),
        "streamArn": source.arn,
    }
