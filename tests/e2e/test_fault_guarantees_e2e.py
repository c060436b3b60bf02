"""The Kinesis pipelines under injected faults, through the local runtime: the three guarantees hold.

Each run deploys the template (2 shards, ParallelizationFactor 2), produces the demo's records with
their poison pills (unicorns, Glue-framed Avro payments, DMS opt-in changes, a fleet for the
aggregator), injects DynamoDB, Glue, Kinesis and Lambda faults with a fixed seed, drains, and
checks against what it reads back, not against the functions' counters:

- no valid record is lost: each is in its read model (or superseded there by a newer one), or in a
  batch delivered to the on-failure destination (the demo plug-ins' reports read the streams back);
- each key's final item is its newest record that was not dead-lettered (same reports);
- per key, the writes DynamoDB applied never go back in stream order: the read models' own
  DynamoDB streams, turned on for this test, list every write in the order it was applied.
"""

import multiprocessing
from collections import Counter
from pathlib import Path

import boto3
import pytest
from support import assert_never_back_in_time, table_stream_images

from tributary.commands.demo import RuntimeDemoContext, demo_overrides, describe_faults
from tributary.demos import discover_pipelines
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.faults import parse_faults

REPO = Path(__file__).parents[2]
KINESIS_PIPELINES = ("stream processor", "fleet analytics", "opt-in updater")
READ_MODELS = ("UnicornSensorDataTable", "PaymentsTable")
FAULTS = (
    "dynamodb.throttle=0.1,dynamodb.unprocessed=0.1,dynamodb.lost-response=0.05,dynamodb.error500=0.05,"
    "glue.unavailable=0.3,kinesis.put-failure=0.1,lambda.crash=0.05,lambda.cold-start=0.05"
)


def applied_writes(table: str) -> list[tuple[str, int]]:
    """(key, sequence number of the record) of every write the table applied, in order."""
    description = boto3.client("dynamodb").describe_table(TableName=table)["Table"]
    key_names = [part["AttributeName"] for part in description["KeySchema"]]
    return [
        ("#".join(image[name]["S"] for name in key_names), int(image["recordVersion"]["S"].split(":")[1]))
        for image in table_stream_images(description["LatestStreamArn"])
    ]


def run_under_faults(seed: int) -> tuple[list, dict[str, list], Counter]:
    pipelines = [p for p in discover_pipelines() if p.name.startswith(KINESIS_PIPELINES)]
    assert len(pipelines) == len(KINESIS_PIPELINES)
    template = REPO / "template.yaml"
    overrides = demo_overrides(template, pipelines, {"ShardCount": "2", "ParallelizationFactor": "2"})
    options = RuntimeOptions(template_path=template, parameter_overrides=overrides, retry_delay_s=0.05,
                             idle_read_interval_s=0.05, faults=parse_faults(FAULTS, seed))
    with Runtime(options) as runtime:
        try:
            context = RuntimeDemoContext(runtime)
            tables = {logical_id: context.physical_name(logical_id) for logical_id in READ_MODELS}
            for table in tables.values():  # the oracle: every applied write, in order
                boto3.client("dynamodb").update_table(
                    TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
                )
            for pipeline in pipelines:
                pipeline.produce(context)
            runtime.drain(240)
            sections = [pipeline.report(context) for pipeline in pipelines]
            history = {table: applied_writes(table) for table in tables.values()}
            injected = Counter(runtime.faults.injected)
            print("\n".join(describe_faults(runtime)))  # the figures, shown when a run fails
        finally:
            runtime.aws.reset()
    return sections, history, injected


def checked_run(seed: int) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """One run's problems, writes checked per table and faults injected (picklable for a child process)."""
    sections, history, injected = run_under_faults(seed)
    problems = [f"{s.title}: {problem}" for s in sections for problem in s.problems]
    problems += [f"{s.title}: not accounted" for s in sections if not s.accounted and not s.problems]
    for table, writes in history.items():
        try:
            assert writes, f"{table}: no write reached the table"
            assert_never_back_in_time(writes)
        except AssertionError as error:
            problems.append(f"{table}: {error}")
    return problems, {table: len(writes) for table, writes in history.items()}, dict(injected)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kinesis_pipelines_keep_their_guarantees_under_faults(seed):
    # A fresh process per run, as a user's `tributary run` is: the layer's module state (clients aimed
    # at one run's emulator port, schema caches) must not carry over from another run.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        problems, writes, injected = pool.apply(checked_run, (seed,))
    assert not problems, "\n".join(problems)
    assert all(writes.values()), writes
    # The run really was hostile: several kinds of fault happened.
    assert sum(injected.values()) >= 10 and len(injected) >= 4, injected
