"""The template's alarms under the local runtime: injected faults make them fire, a clean run leaves them OK.

Records go on `wildrydes` while an outage is on (every DynamoDB request of the functions throttled, or
every invocation crashing after its handler), the runtime drains, and the alarms are evaluated over
what it observed: the stream processor's EMF metrics, Lambda's Errors, the on-failure queue's depth.
"""

import dataclasses
import io
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tributary.runtime.alarm_rules import ALARM, OK
from tributary.runtime.alarms import AlarmReport
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.faults import FaultPlan
from tributary.sample_records import unicorn_statuses

ROOT = Path(__file__).parents[2]
TRANSIENT = "tributary-unicorn-processor-transient-failures"
ERRORS = "tributary-unicorn-processor-errors"
QUEUE = "tributary-failed-records-queue"


@pytest.fixture
def runtime(aws: object) -> Iterator[Runtime]:  # `aws` first: moto state is process-wide
    options = RuntimeOptions(
        ROOT / "template.yaml", parameter_overrides={"BatchingWindowSeconds": "0", "TumblingWindowInSeconds": "1"},
        function_log=io.StringIO(), retry_delay_s=0.05, idle_read_interval_s=0.05,
        faults=FaultPlan({}, seed=1),  # nothing drawn: only the outages the tests turn on
    )  # fmt: skip
    with Runtime(options) as running:
        yield running
        running.aws.reset()


def put_unicorns(runtime: Runtime, count: int) -> None:
    stream = runtime.template.physical_name("WildrydesStream")
    readings = itertools.islice(unicorn_statuses(["Shadowfax", "Rocinante"], seed=count), count)
    records = [{"Data": json.dumps(reading).encode(), "PartitionKey": reading["Name"]} for reading in readings]
    boto3.client("kinesis").put_records(StreamName=stream, Records=records)


def step_until(runtime: Runtime, fired: str, timeout_s: float = 120) -> None:
    """Step the runtime until alarm `fired` is in ALARM; the rest of the run drains after the outage."""
    deadline = time.monotonic() + timeout_s
    while fired not in runtime.alarms.evaluate().named(ALARM):
        assert time.monotonic() < deadline, f"{fired} did not fire in {timeout_s} s"
        if not runtime.step():
            time.sleep(0.05)


def states(report: AlarmReport) -> dict[str, str]:
    return {status.spec.name: status.state for status in report.statuses}


@pytest.mark.slow
def test_a_clean_run_leaves_the_alarms_ok(runtime):
    put_unicorns(runtime, 10)
    runtime.drain(60)
    report = runtime.alarms.evaluate()
    assert report.named(ALARM) == []
    assert states(report)[TRANSIENT] == states(report)[ERRORS] == states(report)[QUEUE] == OK
    assert runtime.counters()["alarms"]["in_alarm"] == []


@pytest.mark.slow
def test_throttled_writes_fire_the_transient_failures_alarm_and_the_queue_alarm(runtime):
    transient = next(spec for spec in runtime.alarms.specs if spec.name == TRANSIENT)
    # As declared, 3 of 3 five-minute periods must breach, which a short run cannot show: over one period here.
    one_period = dataclasses.replace(transient, evaluation_periods=1, datapoints_to_alarm=1)
    runtime.alarms.specs = [one_period if spec is transient else spec for spec in runtime.alarms.specs]
    with runtime.outage("dynamodb.throttle"):
        put_unicorns(runtime, 5)
        step_until(runtime, TRANSIENT)
        assert TRANSIENT in runtime.counters()["alarms"]["in_alarm"]
    runtime.drain(120)
    report = runtime.alarms.evaluate()
    assert states(report)[TRANSIENT] == ALARM  # the period that breached is still in the range
    assert states(report)[ERRORS] == OK  # the function reported the records; it did not fail
    runtime.alarms.specs = [transient if spec is one_period else spec for spec in runtime.alarms.specs]
    declared = next(status for status in runtime.alarms.evaluate().statuses if status.spec is transient)
    assert declared.state == OK and declared.evaluation.breaching_periods >= 1


@pytest.mark.slow
def test_crashing_invocations_fire_the_errors_alarm(runtime):
    with runtime.outage("lambda.crash"):
        put_unicorns(runtime, 3)
        step_until(runtime, ERRORS)
    runtime.drain(120)
    report = runtime.alarms.evaluate()
    assert states(report)[ERRORS] == ALARM
    assert states(report)[QUEUE] == OK  # the outage ended before a batch ran out of retries
    assert states(report)[TRANSIENT] == OK
