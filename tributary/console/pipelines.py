"""The console's pipeline view: per event source mapping, its counters, checkpoints and latest discards.

Read from the runtime without stopping it: the step loop runs on the main thread and only mutates
these structures, so this side copies (``list(...)``, plain ints) and never iterates a live dict.
A discarded batch's records are read back from its stream (their own iterator, AT_SEQUENCE_NUMBER)
and decoded as the function decodes them: a record the layer refuses shows the layer's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tributary.runtime.app import Runtime
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.errors import RecordError
from tributary_shared.payloads import PayloadDecoder, reject_reported_error
from tributary_shared.schema_registry import GlueSchemaRegistry, RegistrySettings

LATEST_DELIVERIES = 10
MAX_RECORDS_SHOWN = 20
COUNTERS = ("records_in", "invocations", "retries", "bisections", "function_errors", "partial_failures",
            "records_succeeded", "records_filtered_out", "records_to_destination", "iterator_age_ms")  # fmt: skip


class PipelineView:
    """Builds the pipelines part of a snapshot; remembers the records of batches it has read once."""

    def __init__(self, runtime: Runtime, kinesis: Any, glue: Any) -> None:
        self.runtime = runtime
        self.kinesis = kinesis
        self._glue = glue
        self._batches: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
        self._decoders: dict[str, PayloadDecoder] = {}

    def snapshot(self) -> list[dict[str, Any]]:
        return [self._mapping_view(key, mapping) for key, mapping in list(self.runtime.mappings.items())]

    def _mapping_view(self, key: str, mapping: Any) -> dict[str, Any]:
        stats = mapping.stats
        readers = list(mapping.shards.readers.items())
        deliveries = list(stats.deliveries)[-LATEST_DELIVERIES:][::-1]
        return {
            "name": key,
            "function": mapping.config.function_name,
            "source": mapping.config.source_arn.split(":", 5)[-1],
            "counters": {name: int(getattr(stats, name)) for name in COUNTERS},
            "lastError": stats.last_error,
            "checkpoints": [
                {"shard": shard_id, "lanes": [lane.checkpoint for lane in list(reader.lanes)]}
                for shard_id, reader in readers
            ],
            "onFailure": [self._delivery_view(key, mapping, delivery) for delivery in deliveries],
            "onFailureTotal": len(stats.deliveries),
            "destination": mapping.config.on_failure_destination_arn,
        }

    def _delivery_view(self, key: str, mapping: Any, delivery: Mapping[str, Any]) -> dict[str, Any]:
        info = delivery.get("batchInfo") or {}
        records = self._batch_records(mapping, info) if info.get("streamArn", "").split(":")[2:3] == ["kinesis"] else []
        return {
            "mapping": key,
            "condition": delivery.get("condition"),
            "shard": delivery.get("shard"),
            "records": delivery.get("records"),
            "first": info.get("startSequenceNumber"),
            "last": info.get("endSequenceNumber"),
            "destination": delivery.get("destination"),
            "sendError": delivery.get("error"),
            "reasons": sorted({record["reason"] for record in records if record["reason"]}),
            "items": records[:MAX_RECORDS_SHOWN],
        }

    def _batch_records(self, mapping: Any, info: Mapping[str, Any]) -> list[dict[str, Any]]:
        batch = (info["streamArn"], info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"])
        if batch not in self._batches:
            decode = self._decoder(mapping.config.function_name)
            try:
                self._batches[batch] = [_judged(record, decode) for record in self._read_range(*batch)]
            except Exception as error:  # the stream went away (a reset): show the batch without its records
                return [{"sequenceNumber": "", "partitionKey": "", "reason": f"not read back: {error}"}]
        return self._batches[batch]

    def _read_range(self, stream_arn: str, shard_id: str, first: str, last: str) -> list[dict[str, Any]]:
        iterator = self.kinesis.get_shard_iterator(
            StreamName=stream_arn.rsplit("/", 1)[-1], ShardId=shard_id, ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=first,
        )["ShardIterator"]  # fmt: skip
        records: list[dict[str, Any]] = []
        while iterator:
            response = self.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for record in response["Records"]:
                if int(record["SequenceNumber"]) > int(last):
                    return records
                records.append(record)
            if not response["Records"] or response.get("MillisBehindLatest") == 0:
                return records
            iterator = response.get("NextShardIterator")
        return records

    def _decoder(self, function_name: str) -> PayloadDecoder:
        """The function's own decoder: its schema registry settings come from its environment."""
        if function_name not in self._decoders:
            environment = next((function.config.environment for function in list(self.runtime.functions.values())
                                if function.config.name == function_name), {})  # fmt: skip
            settings = RegistrySettings.from_env(environment)
            # Its Glue lookups through the console's own client (the layer's would be made on this thread).
            registry = GlueSchemaRegistry(settings.glue_registry_name, client=self._glue)
            codec = RegistryDeserializer(registry.schema_definition, reader_schema=settings.reader_schema)
            self._decoders[function_name] = PayloadDecoder(codec.decode)
        return self._decoders[function_name]


def _judged(record: Mapping[str, Any], decoder: PayloadDecoder) -> dict[str, Any]:
    """A record of a discarded batch: its position and why the layer refuses it ("" when it decodes)."""
    reason = ""
    try:
        value = decoder.decode(record["Data"])
        reject_reported_error(value)
    except RecordError as error:
        reason = error.reason
    except Exception as error:  # a registry it cannot reach: say so, the view goes on
        reason = f"not decoded here: {type(error).__name__}: {error}"
    return {"sequenceNumber": record["SequenceNumber"], "partitionKey": record["PartitionKey"], "reason": reason}


def alarm_states(runtime: Runtime) -> list[dict[str, Any]]:
    """The template's alarms as the runtime evaluates them now, then those it cannot evaluate locally."""
    if runtime.alarms is None:
        return []
    report = runtime.alarms.evaluate()
    states = [{"name": status.spec.name, "state": status.state, "detail": status.describe()}
              for status in report.statuses]  # fmt: skip
    states += [{"name": name, "state": "NOT EVALUATED", "detail": reason}
               for name, reason in sorted(report.not_evaluated.items())]  # fmt: skip
    return states
