"""Demo plug-ins: each pipeline of the template shows its work in `tributary demo`.

A pipeline engineer adds `tributary/demos/<pipeline>.py` defining a module-level `PIPELINE`
object that satisfies `DemoPipeline`. `tributary demo` then:

1. starts the emulator and deploys the template with every pipeline's `parameter_overrides`
   merged (later pipelines win on a clash; keep them to demo-friendly values such as a short
   tumbling window or `BatchingWindowSeconds=0`);
2. calls `produce(ctx)` of every pipeline whose `required_resources` the template declares
   (the others are reported as skipped, which does not fail the demo);
3. drains every event source mapping and emulation;
4. calls `report(ctx)` of each pipeline and prints a summary table (one row of `DemoFigures` per
   section), then each `DemoSection`; the demo exits 0 only if every section is `accounted`.

`ctx` (a `DemoContext`) is all a pipeline needs: boto3 clients already pointed at the emulator,
physical names and ARNs by logical id, the runtime's per-mapping counters and every invocation
record delivered to an on-failure destination. The helpers below (`read_stream`, `user_records_of`,
`batches_of_stream`, `in_failure_batches`, `function_mapping_stats`) are what several reports share.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from tributary_shared.kinesis_aggregation import Aggregate, open_aggregate
from tributary_shared.kinesis_batch import record_version


@dataclass(frozen=True)
class DemoFigures:
    """One row of the demo's summary table: where the records a pipeline's check covers ended up."""

    records_in: int
    applied: int
    """Written to the pipeline's read model (or, for the redrive, re-applied or superseded by a newer item)."""
    on_failure: int
    """Delivered to the on-failure destination, in a dead-lettered batch (for the redrive: quarantined)."""
    lost: int
    """Neither: the demo fails if any pipeline lost a record."""


@dataclass
class DemoSection:
    """What one pipeline prints, and whether every record it produced is accounted for."""

    title: str
    lines: list[str] = field(default_factory=list)
    accounted: bool = False
    problems: list[str] = field(default_factory=list)
    figures: DemoFigures | None = None
    """The summary table's row; None for a section that did not run."""
    main: bool = False
    """The report's first section (the stream processor: what the project is for)."""
    accounted_as: str = "every record accounted for: applied or on the on-failure destination"
    """What `accounted` means for this section, in the summary table's verdict column."""


class DemoContext(Protocol):
    """What the runtime hands to a pipeline's `produce` and `report`."""

    endpoint_url: str
    region: str
    parameters: Mapping[str, str]
    """Template parameters after defaults and overrides."""

    def client(self, service: str) -> Any:
        """A boto3 client for `service` at the emulator (or the runtime's own emulation, e.g. SMS opt-out lists)."""
        ...

    def has_resource(self, logical_id: str) -> bool:
        """Whether the template declares `logical_id` and its condition holds."""
        ...

    def physical_name(self, logical_id: str) -> str:
        """What `!Ref logical_id` resolves to (stream/table/bucket/topic name, queue URL...)."""
        ...

    def arn(self, logical_id: str) -> str:
        """What `!GetAtt logical_id.Arn` resolves to."""
        ...

    def mapping_stats(self) -> Mapping[str, Any]:
        """Counters of each event source mapping keyed "<FunctionLogicalId>.<EventName>".

        Values are `tributary.runtime.esm.MappingStats` (records_in, invocations, retries,
        function_errors, records_filtered_out, records_to_destination, iterator_age_ms, deliveries).
        """
        ...

    def on_failure_records(self) -> Sequence[dict]:
        """Every invocation record delivered to an on-failure destination (SQS, SNS or S3), parsed.

        Read once by the runtime after draining, so several pipelines sharing one queue all see
        every record; each has `requestContext.condition` and `KinesisBatchInfo` (streamArn,
        shardId, startSequenceNumber, endSequenceNumber, batchSize).
        """
        ...

    def invocations(self, function_logical_id: str) -> int:
        """Invocations of a function so far, from any trigger (mappings, S3 events, Firehose)."""
        ...


@runtime_checkable
class DemoPipeline(Protocol):
    """One pipeline's part of `tributary demo`."""

    name: str
    required_resources: tuple[str, ...]
    """Logical ids the template must declare for this pipeline to run."""
    parameter_overrides: Mapping[str, str]
    """Template parameter overrides that make the demo quick (e.g. short tumbling window)."""

    def produce(self, ctx: DemoContext) -> None:
        """Put records on streams / upload files. Remember what was sent for `report`."""
        ...

    def report(self, ctx: DemoContext) -> DemoSection:
        """After draining: what arrived where, and whether every produced record is accounted for."""
        ...


@dataclass(frozen=True)
class RecordOnStream:
    """One record read back from a Kinesis stream."""

    shard_id: str
    sequence_number: str
    data: bytes
    arrival: datetime
    """ApproximateArrivalTimestamp: what Lambda's tumbling windows group records by."""


def read_stream(kinesis: Any, stream_name: str) -> list[RecordOnStream]:
    """Every record of every shard of `stream_name`, from TRIM_HORIZON to the end, shard by shard."""
    records: list[RecordOnStream] = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            records += [
                RecordOnStream(shard["ShardId"], item["SequenceNumber"], item["Data"],
                               item["ApproximateArrivalTimestamp"])
                for item in response["Records"]
            ]
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    return records


@dataclass(frozen=True)
class UserRecordOnStream:
    """One user record as the functions see it: a plain Kinesis record, or one user record of a KPL aggregate."""

    record: RecordOnStream
    """The Kinesis record holding it: its sequence number is all an on-failure batch can name."""
    subsequence_number: int
    data: bytes
    aggregated: bool

    @property
    def version(self) -> str:
        """The `recordVersion` a write of this user record carries (its stream position)."""
        return record_version(self.record.sequence_number, self.subsequence_number)

    @property
    def position(self) -> str:
        """Where it is, for a report: shard and sequence number, and subsequence number inside an aggregate."""
        where = f"{self.record.shard_id} {self.record.sequence_number}"
        return f"{where}:{self.subsequence_number}" if self.aggregated else where


def user_records_of(records: Sequence[RecordOnStream]) -> list[UserRecordOnStream]:
    """The user records of `records`, in stream order: a KPL aggregate opened by the layer's own rules
    (`kinesis_aggregation`, what every function uses), any other record as itself."""
    opened: list[UserRecordOnStream] = []
    for record in records:
        aggregate = open_aggregate(record.data)
        if isinstance(aggregate, Aggregate):
            opened += [UserRecordOnStream(record, user.subsequence_number, user.data, True) for user in aggregate]
        else:
            opened.append(UserRecordOnStream(record, 0, record.data, False))
    return opened


def batches_of_stream(failures: Sequence[Mapping[str, Any]], stream_name: str) -> list[Mapping[str, Any]]:
    """The on-failure invocation records (see `DemoContext.on_failure_records`) of batches read from `stream_name`."""
    return [failure for failure in failures if _batch_stream_name(failure) == stream_name]


def in_failure_batches(record: RecordOnStream, batches: Sequence[Mapping[str, Any]]) -> bool:
    """Whether `record` lies in one of the on-failure `batches`: its shard, within the sequence number range."""
    sequence = int(record.sequence_number)  # sequence numbers compare as integers, never as strings
    for batch in batches:
        info = batch["KinesisBatchInfo"]
        if info["shardId"] == record.shard_id and (
            int(info["startSequenceNumber"]) <= sequence <= int(info["endSequenceNumber"])
        ):
            return True
    return False


def function_mapping_stats(ctx: DemoContext, function_logical_id: str) -> Any | None:
    """The counters (`DemoContext.mapping_stats`) of the first event source mapping of a function, or None."""
    prefix = f"{function_logical_id}."
    return next((stats for key, stats in ctx.mapping_stats().items() if key.startswith(prefix)), None)


def _batch_stream_name(failure: Mapping[str, Any]) -> str:
    return str((failure.get("KinesisBatchInfo") or {}).get("streamArn", "")).rsplit("/", 1)[-1]


def discover_pipelines() -> list[DemoPipeline]:
    """The `PIPELINE` of every module in this package, in module-name order."""
    found: list[DemoPipeline] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        pipeline = getattr(module, "PIPELINE", None)
        if isinstance(pipeline, DemoPipeline):
            found.append(pipeline)
    return found


def __getattr__(name: str) -> Any:
    # Discovered lazily so a plug-in importing DemoSection from here never meets a half-built package.
    if name == "PIPELINES":
        return discover_pipelines()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
