"""Helpers for the event-source-mapping engine tests: streams in moto, recording invokers, fake clocks."""

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3

from tributary.runtime.esm import EventSourceMapping, MappingConfig, drain
from tributary.runtime.invocation import InvocationResult

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:under-test"


def create_stream(name: str = "events", shards: int = 1) -> str:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def put_numbers(numbers: range | list[int], *, stream: str = "events", key: str = "k",
                extra: dict[str, Any] | None = None) -> dict[int, str]:
    """Put {"n": n} for each number, in order, on one partition key; returns n -> sequence number."""
    kinesis = boto3.client("kinesis")
    sequence_numbers = {}
    for n in numbers:
        data = json.dumps({"n": n, **(extra or {})}).encode()
        sequence_numbers[n] = kinesis.put_record(StreamName=stream, Data=data, PartitionKey=key)["SequenceNumber"]
    return sequence_numbers


def numbers_of(event: dict[str, Any]) -> list[int]:
    return [json.loads(base64.b64decode(record["kinesis"]["data"]))["n"] for record in event["Records"]]


def sequence_of(event: dict[str, Any], n: int) -> str:
    for record in event["Records"]:
        if json.loads(base64.b64decode(record["kinesis"]["data"]))["n"] == n:
            return record["kinesis"]["sequenceNumber"]
    raise KeyError(n)


Behaviour = Callable[[dict[str, Any], list[int]], InvocationResult]


def succeed(event: dict[str, Any], numbers: list[int]) -> InvocationResult:
    return InvocationResult(response=None)


def raise_on(poison: int) -> Behaviour:
    def behaviour(event: dict[str, Any], numbers: list[int]) -> InvocationResult:
        if poison in numbers:
            return InvocationResult(function_error="Unhandled", error_message=f"poison record {poison}")
        return InvocationResult(response=None)

    return behaviour


def report_failure_of(*poisons: int) -> Behaviour:
    def behaviour(event: dict[str, Any], numbers: list[int]) -> InvocationResult:
        failures = [{"itemIdentifier": sequence_of(event, n)} for n in poisons if n in numbers]
        return InvocationResult(response={"batchItemFailures": failures})

    return behaviour


@dataclass
class Recorder:
    """An invoker that remembers every event and the record numbers of every batch."""

    behaviour: Behaviour = succeed
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> InvocationResult:
        self.events.append(event)
        return self.behaviour(event, numbers_of(event))

    @property
    def batches(self) -> list[list[int]]:
        return [numbers_of(event) for event in self.events]


@dataclass
class FakeClock:
    now: float = 1_800_000_000.0  # a multiple of 60 and of 3600: window edges are easy to read

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC).replace(tzinfo=None)


def mapping(stream_arn: str, invoker: Callable[[dict], InvocationResult], **settings: Any) -> EventSourceMapping:
    """A mapping under test; retries and re-reads are immediate unless `retry_delay_s` / `idle_read_interval_s` say."""
    clock = settings.pop("clock", None)
    trace = settings.pop("trace", None)
    delays = {"retry_delay_s": settings.pop("retry_delay_s", 0.0),
              "idle_read_interval_s": settings.pop("idle_read_interval_s", 0.0)}
    settings.setdefault("starting_position", "TRIM_HORIZON")
    config = MappingConfig(function_name="under-test", function_arn=FUNCTION_ARN, source_arn=stream_arn, **settings)
    if clock is None:
        return EventSourceMapping(config, invoker, trace=trace, **delays)
    return EventSourceMapping(config, invoker, trace=trace, clock=clock, **delays)


def run_until_drained(*mappings: EventSourceMapping) -> None:
    drain(mappings, timeout_s=20, sleep=lambda _: None)


def queue_messages(name: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        bodies += [json.loads(message["Body"]) for message in messages]
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def create_queue(name: str = "failed-records") -> str:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def arrivals_follow(monkeypatch: Any, clock: FakeClock) -> None:
    """Make moto stamp Kinesis records with `clock` (moto's server runs in this process)."""
    import moto.kinesis.models

    monkeypatch.setattr(moto.kinesis.models, "utcnow", clock.utc)
