"""Enhanced fan-out: a Kinesis stream consumer's ARN as a mapping's source, as Lambda accepts it.

The mapping reads the consumer's stream; the records, a tumbling window's event and the on-failure
record name the stream, never the consumer.
"""

from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from esm_support import (
    Recorder,
    create_queue,
    create_stream,
    mapping,
    put_numbers,
    queue_messages,
    raise_on,
    run_until_drained,
)

from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.esm.sources import is_kinesis_consumer
from tributary.runtime.invocation import InvocationResult

FIXTURES = Path(__file__).parent / "fixtures"


def register_consumer(stream_arn: str, name: str = "reader") -> str:
    return boto3.client("kinesis").register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)["Consumer"][
        "ConsumerARN"
    ]


def test_consumer_arns_are_told_from_stream_arns():
    assert is_kinesis_consumer("arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c:1572383852")
    assert is_kinesis_consumer("arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c")  # moto's form
    assert not is_kinesis_consumer("arn:aws:kinesis:us-east-1:123456789012:stream/s")
    assert not is_kinesis_consumer("arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2024-01-01T00:00:00.000")


def test_a_consumer_arn_reads_its_stream_and_the_records_name_the_stream(aws):
    stream = create_stream()
    consumer = register_consumer(stream)
    put_numbers([1, 2, 3])
    function = Recorder()
    esm = mapping(consumer, function)

    run_until_drained(esm)

    assert function.batches == [[1, 2, 3]]
    assert {record["eventSourceARN"] for record in function.events[0]["Records"]} == {stream}


def test_the_on_failure_record_of_a_consumer_mapping_names_the_stream(aws):
    stream = create_stream()
    queue = create_queue()
    put_numbers([1])
    esm = mapping(register_consumer(stream), Recorder(raise_on(1)), maximum_retry_attempts=0,
                  on_failure_destination_arn=queue)

    run_until_drained(esm)

    [record] = queue_messages("failed-records")
    assert record["KinesisBatchInfo"]["streamArn"] == stream


def test_a_tumbling_window_read_through_a_consumer_names_the_stream(aws):
    stream = create_stream()
    put_numbers([1])
    function = Recorder(lambda event, numbers: InvocationResult(response={"state": {}}))
    esm = mapping(register_consumer(stream), function, tumbling_window_s=60)

    esm.poll()

    assert function.events[0]["eventSourceARN"] == stream


def test_a_consumer_kinesis_does_not_know_is_refused_when_the_mapping_starts(aws):
    stream = create_stream()
    esm = mapping(f"{stream}/consumer/unregistered:1572383852", Recorder())

    with pytest.raises(ClientError, match="ResourceNotFound"):
        esm.start()


@pytest.fixture
def fan_out():
    with Runtime(RuntimeOptions(template_path=FIXTURES / "fan_out.yaml")) as runtime:
        yield runtime
        runtime.aws.reset()  # moto's backends are process-wide: leave nothing for the next test


def test_a_templates_stream_consumer_is_registered_and_its_ref_and_consumer_arn_are_its_arn(fan_out):
    template = fan_out.template
    arn = template.get_att("TelemetryConsumer", "ConsumerARN")
    stream = template.get_att("TelemetryStream", "Arn")

    described = boto3.client("kinesis").describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]
    assert (described["ConsumerName"], described["StreamARN"]) == ("fan-out-reader", stream)
    assert template.ref("TelemetryConsumer") == arn and arn.startswith(f"{stream}/consumer/fan-out-reader")
    assert template.get_att("TelemetryConsumer", "StreamARN") == stream
    assert {key: mapping.config.source_arn for key, mapping in fan_out.mappings.items()} == {
        "EventFunction.Telemetry": arn,
        "TelemetryMapping": arn,
    }


def test_records_reach_both_mappings_through_the_consumer_and_name_the_stream(fan_out):
    kinesis = boto3.client("kinesis")
    sequence = kinesis.put_record(StreamName="fan-out-telemetry", Data=b"{}", PartitionKey="k")["SequenceNumber"]

    fan_out.drain(30)

    seen = boto3.client("dynamodb").scan(TableName="fan-out-seen")["Items"]
    stream = fan_out.template.get_att("TelemetryStream", "Arn")
    assert sorted((item["id"]["S"], item["eventSourceARN"]["S"]) for item in seen) == [
        (f"event:{sequence}", stream),
        (f"mapping:{sequence}", stream),
    ]
    counters = fan_out.counters()["mappings"]["TelemetryMapping"]
    assert counters["source"] == "stream/fan-out-telemetry/consumer/fan-out-reader"
