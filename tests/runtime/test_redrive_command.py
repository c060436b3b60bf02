"""`tributary redrive` against a running runtime (as against `tributary up`): start, wait, print the summary."""

import io
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tributary.commands import main
from tributary.runtime.app import Runtime, RuntimeOptions

ROOT = Path(__file__).parents[2]


@pytest.fixture
def runtime(aws: object) -> Iterator[Runtime]:  # `aws` first: moto state is process-wide
    options = RuntimeOptions(ROOT / "template.yaml", parameter_overrides={"BatchingWindowSeconds": "0"},
                             function_log=io.StringIO(), retry_delay_s=0.1, idle_read_interval_s=0.1)  # fmt: skip
    with Runtime(options) as running:
        boto3.client("kinesis").put_record(StreamName="payments", PartitionKey="bad", Data=b"\xff not a payment")
        running.drain(60)
        yield running
        running.aws.reset()


@pytest.mark.slow
def test_a_dry_run_then_a_redrive_print_their_summaries(runtime, capsys):
    port = str(runtime.aws.port)
    assert main(["redrive", "--port", port, "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert "dry run: nothing re-applied, nothing deleted" in planned
    assert "would re-apply 1 records" in planned and "1 planned" in planned

    assert main(["redrive", "--port", port, "--pipeline", "payment-processor"]) == 0
    done = capsys.readouterr().out
    assert "SUCCEEDED" in done and "1 quarantined" in done and "1 settled" in done
    assert "quarantine: s3://" in done and "/quarantine/payment-processor/" in done
    assert runtime.on_failure_records() == []


@pytest.mark.slow
def test_an_unknown_pipeline_fails_the_execution_at_its_start(runtime, capsys):
    assert main(["redrive", "--port", str(runtime.aws.port), "--pipeline", "nope"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "pipeline 'nope' is not one of" in out
    assert len(runtime.on_failure_records()) == 1


def test_without_a_running_runtime_to_talk_to_it_says_so(capsys):
    assert main(["redrive"]) == 2
    assert "--port" in capsys.readouterr().err


def test_a_state_machine_that_is_not_there_is_named(aws, capsys):
    assert main(["redrive", "--endpoint-url", aws.endpoint_url]) == 2
    assert "no state machine 'tributary-redrive'" in capsys.readouterr().err
