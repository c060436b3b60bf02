"""The runtime's wiring: event source mappings from SAM events and AWS::Lambda::EventSourceMapping."""

import os
from pathlib import Path

import boto3
import pytest

from tributary.runtime.app import Runtime, RuntimeOptions, mapping_config
from tributary.runtime.functions import load_functions
from tributary.runtime.template import Template

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def pipeline():
    with Runtime(RuntimeOptions(template_path=FIXTURES / "pipeline.yaml")) as runtime:
        yield runtime
        runtime.aws.reset()  # moto's backends are process-wide: leave nothing for the next test


def test_mapping_config_carries_every_event_source_mapping_setting():
    function = load_functions(Template.load(FIXTURES / "pipeline.yaml"))["WriterFunction"]
    properties = {
        "BatchSize": "25",
        "MaximumBatchingWindowInSeconds": 2,
        "StartingPosition": "AT_TIMESTAMP",
        "StartingPositionTimestamp": 1700000000,
        "MaximumRetryAttempts": 3,
        "MaximumRecordAgeInSeconds": 120,
        "BisectBatchOnFunctionError": "true",
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ParallelizationFactor": 4,
        "TumblingWindowInSeconds": 30,
        "FilterCriteria": {"Filters": [{"Pattern": '{"data": {"kind": ["order"]}}'}]},
        "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:failed"}},
        "Enabled": False,
    }
    config = mapping_config(function, properties, "arn:aws:kinesis:us-east-1:123456789012:stream/s")
    assert (config.batch_size, config.maximum_batching_window_s, config.starting_position) == (25, 2.0, "AT_TIMESTAMP")
    assert (config.maximum_retry_attempts, config.maximum_record_age_s) == (3, 120)
    assert config.bisect_on_function_error and config.report_batch_item_failures
    assert (config.parallelization_factor, config.tumbling_window_s) == (4, 30)
    assert config.filter_patterns == ({"data": {"kind": ["order"]}},)
    assert config.on_failure_destination_arn == "arn:aws:sqs:us-east-1:123456789012:failed"
    assert config.enabled is False
    assert config.function_arn == function.config.arn


def test_mapping_defaults_are_lambdas():
    function = load_functions(Template.load(FIXTURES / "pipeline.yaml"))["WriterFunction"]
    config = mapping_config(function, {}, "arn:aws:kinesis:us-east-1:123456789012:stream/s")
    assert (config.batch_size, config.maximum_retry_attempts, config.maximum_record_age_s) == (100, -1, -1)
    assert not config.bisect_on_function_error and not config.report_batch_item_failures


def test_every_stream_event_becomes_a_mapping_and_other_events_are_named(pipeline):
    assert sorted(pipeline.mappings) == ["ChangesMapping", "RecorderFunction.ItemChanges", "WriterFunction.Input"]
    assert pipeline.mappings["RecorderFunction.ItemChanges"].config.source_arn.startswith(
        "arn:aws:dynamodb:us-east-1:123456789012:table/t-items/stream/"
    )
    assert pipeline.unmapped_events == ["RecorderFunction.Nightly (Schedule)"]


def test_table_changes_reach_functions_through_the_table_stream_and_the_kinesis_destination(pipeline):
    boto3.client("dynamodb").put_item(TableName="t-items", Item={"id": {"S": "k1"}})
    pipeline.drain(30)
    seen = boto3.client("dynamodb").scan(TableName=pipeline.template.physical_name("SeenTable"))["Items"]
    assert sorted(item["id"]["S"] for item in seen) == ["dynamodb-stream:INSERT:k1", "kinesis:INSERT:k1"]
    counters = pipeline.counters()["mappings"]
    assert counters["ChangesMapping"]["invocations"] == 1
    assert counters["RecorderFunction.ItemChanges"]["records_in"] == 1


def test_a_failed_start_stops_the_emulator_and_restores_the_environment(monkeypatch):
    before = dict(os.environ)
    runtime = Runtime(RuntimeOptions(template_path=FIXTURES / "pipeline.yaml"))
    stopped = []
    stop_server = runtime.aws.stop
    monkeypatch.setattr(runtime.aws, "stop", lambda: stopped.append(True) or stop_server())

    def broken_deploy(*arguments):
        raise RuntimeError("deployment broke")

    monkeypatch.setattr("tributary.runtime.app.deploy", broken_deploy)
    with pytest.raises(RuntimeError, match="deployment broke"), runtime:
        pass

    assert stopped == [True]
    assert dict(os.environ) == before


def test_live_counters_show_why_a_mapping_is_stuck(pipeline):
    boto3.client("kinesis").put_record(StreamName="t-input", Data=b"not json", PartitionKey="k")
    pipeline.step()

    counters = pipeline.counters()["mappings"]["WriterFunction.Input"]

    assert counters["last_error"].startswith("JSONDecodeError")
    [reason] = counters["stuck"]
    assert "1 records" in reason and "failed 1 times, last error: JSONDecodeError" in reason
