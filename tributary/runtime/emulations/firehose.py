"""EMULATION of Amazon Data Firehose delivering from a Kinesis data stream to Amazon S3.

Follows the Firehose developer guide as far as a local run needs it:
- reads the source stream from LATEST (as Firehose does), buffering records;
- flushes when the buffer reaches `BufferingHints.SizeInMBs`, or as soon as the source is idle.
  The second rule is this emulation's shortcut: it replaces `IntervalInSeconds` so local runs end
  quickly instead of waiting up to 900 s;
- data transformation: invokes the processor Lambda with Firehose's event (streaming.md §4) in
  chunks of the processor's `BufferSizeInMBs` (default 1 MB), retries a failed invocation
  `NumberOfRetries` times (default 3), checks that every recordId comes back exactly once with a
  valid result; `Dropped` records vanish, `ProcessingFailed` (and records of failed invocations)
  go under `ErrorOutputPrefix` with `!{firehose:error-output-type}` = processing-failed;
- record format conversion (firehose_parquet.py): `Ok` records are JSON objects converted to Parquet
  with the schema of the Glue table named in `SchemaConfiguration` (OpenX JSON SerDe matching: column
  names are case-insensitive); records that do not convert go to format-conversion-failed;
- dynamic partitioning (firehose_prefixes.py): `metadata.partitionKeys` from the Lambda fill
  `!{partitionKeyFromLambda:k}`; `!{timestamp:...}` and `!{firehose:random-string}` are evaluated
  too. A prefix with no expression gets Firehose's default `YYYY/MM/dd/HH/` after it.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from tributary.runtime.emulations.firehose_parquet import parquet_compression, parquet_schema, row_for_schema
from tributary.runtime.emulations.firehose_prefixes import evaluate_prefix
from tributary.runtime.functions import FunctionLookup, LocalFunction
from tributary.runtime.template import REGION

DEFAULT_BUFFER_MB = 5
DEFAULT_PROCESSOR_BUFFER_MB = 1
DEFAULT_PROCESSOR_RETRIES = 3
VALID_RESULTS = {"Ok", "Dropped", "ProcessingFailed"}


@dataclass
class SourceRecord:
    record_id: str
    data: bytes
    arrival_ms: int
    shard_id: str
    partition_key: str
    sequence_number: str


@dataclass
class Delivered:
    source: SourceRecord
    data: bytes
    partition_keys: dict[str, str] = field(default_factory=dict)


@dataclass
class Failed:
    record: SourceRecord
    error_code: str
    error_message: str
    attempts: int = 1


class FirehoseFromKinesis:
    """EMULATION of one Kinesis-sourced Firehose delivery stream with an extended S3 destination."""

    def __init__(self, name: str, properties: dict, lookup: FunctionLookup) -> None:
        self.name = f"firehose:{name}"
        self.stream_name = name
        source_arn = properties["KinesisStreamSourceConfiguration"]["KinesisStreamARN"]
        self.source_arn = source_arn
        self.arn = f"arn:aws:firehose:{REGION}:123456789012:deliverystream/{name}"
        destination = (
            properties.get("ExtendedS3DestinationConfiguration") or properties.get("S3DestinationConfiguration") or {}
        )
        self.bucket = destination["BucketARN"].rsplit(":", 1)[-1]
        self.prefix = destination.get("Prefix", "")
        self.error_prefix = destination.get("ErrorOutputPrefix", "")
        self.compression = destination.get("CompressionFormat", "UNCOMPRESSED")
        self.buffer_bytes = int((destination.get("BufferingHints") or {}).get("SizeInMBs", DEFAULT_BUFFER_MB)) << 20
        self.processor = _processor(destination.get("ProcessingConfiguration") or {}, lookup)
        self.append_newline = _has_processor(
            destination.get("ProcessingConfiguration") or {}, "AppendDelimiterToRecord"
        )
        self.parquet_schema = parquet_schema(destination.get("DataFormatConversionConfiguration") or {})
        self.parquet_compression = parquet_compression(destination.get("DataFormatConversionConfiguration") or {})
        self._kinesis = boto3.client("kinesis")
        self._s3 = boto3.client("s3")
        self._iterators = self._latest_iterators()
        self._buffer: list[SourceRecord] = []
        self._buffered_bytes = 0
        self.stats = {"records_in": 0, "delivered": 0, "dropped": 0, "failed": 0, "objects": 0, "invocations": 0}

    # ------------------------------------------------------------ source

    def _latest_iterators(self) -> dict[str, str | None]:
        shards = self._kinesis.list_shards(StreamARN=self.source_arn)["Shards"]
        return {
            shard["ShardId"]: self._kinesis.get_shard_iterator(
                StreamARN=self.source_arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]
            for shard in shards
        }

    def poll(self) -> bool:
        read = self._read_source()
        if self._buffer and (not read or self._buffered_bytes >= self.buffer_bytes):
            self._flush()
            return True
        return read > 0

    def _read_source(self) -> int:
        read = 0
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            response = self._kinesis.get_records(ShardIterator=iterator, StreamARN=self.source_arn)
            self._iterators[shard_id] = response.get("NextShardIterator")
            for record in response["Records"]:
                arrival = record["ApproximateArrivalTimestamp"]
                self._buffer.append(
                    SourceRecord(
                        record_id=f"{record['SequenceNumber']}{len(self._buffer):08d}",
                        data=record["Data"],
                        arrival_ms=int(arrival.timestamp() * 1000),
                        shard_id=shard_id,
                        partition_key=record["PartitionKey"],
                        sequence_number=record["SequenceNumber"],
                    )
                )
                self._buffered_bytes += len(record["Data"])
                read += 1
        self.stats["records_in"] += read
        return read

    def __repr__(self) -> str:
        return self.name

    def is_drained(self) -> bool:
        return not self._buffer

    def counters(self) -> dict[str, int]:
        return dict(self.stats)

    # ------------------------------------------------------------ delivery

    def _flush(self) -> None:
        records, self._buffer, self._buffered_bytes = self._buffer, [], 0
        delivered, failed = (
            self._transform(records) if self.processor else ([Delivered(record, record.data) for record in records], [])
        )
        if self.parquet_schema is not None:
            delivered, conversion_failures = self._convert(delivered)
            failed += conversion_failures
        self._write_delivered(delivered, failed)
        self._write_failed(failed)

    def _transform(self, records: list[SourceRecord]) -> tuple[list[Delivered], list[Failed]]:
        delivered: list[Delivered] = []
        failed: list[Failed] = []
        for chunk in _chunks(records, self.processor.buffer_bytes):
            chunk_delivered, chunk_failed = self._invoke_processor(chunk)
            delivered += chunk_delivered
            failed += chunk_failed
        return delivered, failed

    def _invoke_processor(self, chunk: list[SourceRecord]) -> tuple[list[Delivered], list[Failed]]:
        event = self._processor_event(chunk)
        error_code, error_message = "Lambda.FunctionError", ""
        attempts = 0
        for attempts in range(1, self.processor.retries + 2):  # noqa: B007 - attempts is reported
            self.stats["invocations"] += 1
            result = self.processor.function.invoke(event)
            if result.function_error is not None:
                error_message = result.error_message or "function error"
                continue
            problem = _response_problem(result.response, chunk)
            if problem is None:
                return self._results(result.response["records"], chunk)
            error_code, error_message = problem
        return [], [Failed(record, error_code, error_message, attempts) for record in chunk]

    def _processor_event(self, chunk: list[SourceRecord]) -> dict:
        return {
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": self.arn,
            "sourceKinesisStreamArn": self.source_arn,
            "region": REGION,
            "records": [
                {
                    "recordId": record.record_id,
                    "approximateArrivalTimestamp": record.arrival_ms,
                    "data": base64.b64encode(record.data).decode(),
                    "kinesisRecordMetadata": {
                        "shardId": record.shard_id,
                        "partitionKey": record.partition_key,
                        "approximateArrivalTimestamp": record.arrival_ms,
                        "sequenceNumber": record.sequence_number,
                        "subsequenceNumber": 0,
                    },
                }
                for record in chunk
            ],
        }

    def _results(self, results: list[dict], chunk: list[SourceRecord]) -> tuple[list[Delivered], list[Failed]]:
        by_id = {record.record_id: record for record in chunk}
        delivered: list[Delivered] = []
        failed: list[Failed] = []
        for result in results:
            if result["result"] == "Ok":
                data = base64.b64decode(result.get("data") or "")
                keys = {
                    key: str(value)
                    for key, value in ((result.get("metadata") or {}).get("partitionKeys") or {}).items()
                }
                delivered.append(Delivered(by_id[result["recordId"]], data, keys))
            elif result["result"] == "ProcessingFailed":
                failed.append(
                    Failed(by_id[result["recordId"]], "Lambda.ProcessingFailed", "record marked ProcessingFailed")
                )
            else:
                self.stats["dropped"] += 1
        return delivered, failed

    def _convert(self, delivered: list[Delivered]) -> tuple[list[Delivered], list[Failed]]:
        """Parse each Ok record as JSON for Parquet; the unparseable go to format-conversion-failed."""
        converted: list[Delivered] = []
        failed: list[Failed] = []
        for item in delivered:
            try:
                row = json.loads(item.data)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                row_for_schema(row, self.parquet_schema)
            except (ValueError, TypeError, ArithmeticError) as error:
                failed.append(Failed(item.source, "DataFormatConversion.MalformedData", str(error)))
                continue
            converted.append(item)
        return converted, failed

    def _write_delivered(self, delivered: list[Delivered], failed: list[Failed]) -> None:
        groups: dict[str, list[Delivered]] = {}
        for item in delivered:
            try:
                prefix = evaluate_prefix(self.prefix, item.partition_keys, error_output_type=None)
            except KeyError as missing:
                failed.append(
                    Failed(item.source, "DynamicPartitioning.MissingPartitionKey", f"no partition key {missing}")
                )
                continue
            groups.setdefault(prefix, []).append(item)
        for prefix, items in groups.items():
            self._put(prefix, self._encode(items))
            self.stats["delivered"] += len(items)

    def _encode(self, items: list[Delivered]) -> bytes:
        if self.parquet_schema is not None:
            rows = [row_for_schema(json.loads(item.data), self.parquet_schema) for item in items]
            table = pa.Table.from_pylist(rows, schema=self.parquet_schema)
            sink = io.BytesIO()
            pq.write_table(table, sink, compression=self.parquet_compression)
            return sink.getvalue()
        body = b"".join(item.data + (b"\n" if self.append_newline else b"") for item in items)
        return gzip.compress(body) if self.compression == "GZIP" else body

    def _write_failed(self, failed: list[Failed]) -> None:
        groups: dict[str, list[Failed]] = {}
        for item in failed:
            error_type = "format-conversion-failed" if item.error_code.startswith("DataFormat") else "processing-failed"
            groups.setdefault(error_type, []).append(item)
        for error_type, items in groups.items():
            prefix = evaluate_prefix(self.error_prefix or "", {}, error_output_type=error_type, keys_optional=True)
            lines = [json.dumps(_error_line(item)) for item in items]
            self._put(prefix, ("\n".join(lines) + "\n").encode())
            self.stats["failed"] += len(items)

    def _put(self, prefix: str, body: bytes) -> None:
        now = dt.datetime.now(dt.UTC)
        key = f"{prefix}{self.stream_name}-1-{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
        if self.parquet_schema is None and self.compression == "GZIP":
            key += ".gz"
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        self.stats["objects"] += 1


# ---------------------------------------------------------------- transformation helpers


@dataclass
class _Processor:
    function: LocalFunction
    buffer_bytes: int
    retries: int


def _processor_parameters(configuration: dict, processor_type: str) -> dict[str, str] | None:
    if str(configuration.get("Enabled", "false")).lower() != "true":
        return None
    for processor in configuration.get("Processors") or []:
        if processor.get("Type") == processor_type:
            return {item["ParameterName"]: str(item["ParameterValue"]) for item in processor.get("Parameters") or []}
    return None


def _has_processor(configuration: dict, processor_type: str) -> bool:
    return _processor_parameters(configuration, processor_type) is not None


def _processor(configuration: dict, lookup: FunctionLookup) -> _Processor | None:
    parameters = _processor_parameters(configuration, "Lambda")
    if parameters is None:
        return None
    function = lookup(parameters["LambdaArn"])
    if function is None:
        raise ValueError(f"Firehose processor {parameters['LambdaArn']} is not a function of the template")
    return _Processor(
        function=function,
        buffer_bytes=int(float(parameters.get("BufferSizeInMBs", DEFAULT_PROCESSOR_BUFFER_MB)) * (1 << 20)),
        retries=int(parameters.get("NumberOfRetries", DEFAULT_PROCESSOR_RETRIES)),
    )


def _chunks(records: list[SourceRecord], limit_bytes: int) -> list[list[SourceRecord]]:
    chunks: list[list[SourceRecord]] = [[]]
    size = 0
    for record in records:
        encoded = len(record.data) * 4 // 3 + 200
        if chunks[-1] and size + encoded > limit_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += encoded
    return [chunk for chunk in chunks if chunk]


def _response_problem(response: Any, chunk: list[SourceRecord]) -> tuple[str, str] | None:
    if not isinstance(response, dict) or not isinstance(response.get("records"), list):
        return "Lambda.InvalidReturnValue", "response has no records list"
    expected = {record.record_id for record in chunk}
    returned = [item.get("recordId") for item in response["records"] if isinstance(item, dict)]
    if len(returned) != len(response["records"]) or set(returned) - expected:
        return "Lambda.DuplicatedRecordId", "response names a recordId that was not sent"
    if len(returned) != len(set(returned)):
        return "Lambda.DuplicatedRecordId", "response repeats a recordId"
    if set(returned) != expected:
        return "Lambda.MissingRecordId", "response lacks a recordId that was sent"
    if any(item.get("result") not in VALID_RESULTS for item in response["records"]):
        return "Lambda.InvalidReturnValue", "result must be Ok, Dropped or ProcessingFailed"
    return None


def _error_line(item: Failed) -> dict:
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return {
        "attemptsMade": item.attempts,
        "arrivalTimestamp": item.record.arrival_ms,
        "errorCode": item.error_code,
        "errorMessage": item.error_message,
        "attemptEndingTimestamp": now_ms,
        "rawData": base64.b64encode(item.record.data).decode(),
    }
