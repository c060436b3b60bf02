"""`tributary run | up | query | demo` on the fixture templates."""

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tributary.commands.runtime_commands import main
from tributary.user_errors import UserError
from tributary_shared.errors import RecordError
from tributary_shared.kinesis_batch import record_version

# Tests taking `aws` get moto reset afterwards: `main` starts its own server, but moto's state is process-wide.
FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[2]


@pytest.mark.slow
def test_run_puts_records_drains_and_reports_on_failure_deliveries(aws, tmp_path, capsys):
    trace = tmp_path / "trace.jsonl"
    status = main(
        "run",
        [
            "--template", str(FIXTURES / "pipeline.yaml"),
            "--records", f"InputStream={FIXTURES / 'input.jsonl'}",
            "--until-drained",
            "--trace", str(trace),
        ],
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert "put 4 records" in out and "drained" in out
    assert "on-failure: RetryAttemptsExhausted t-input" in out
    assert "skipped SomethingExotic: AWS::Exotic::Thing is not supported by the local runtime" in out
    items = boto3.client("dynamodb", endpoint_url=aws.endpoint_url).scan(TableName="t-items")["Items"]
    assert sorted(item["id"]["S"] for item in items) == ["a1", "a2", "a3"]
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert {line["type"] for line in lines} == {"invocation", "delivery"}


@pytest.mark.slow
def test_run_takes_stream_names_parameter_overrides_and_partition_key_fields(aws, capsys):
    status = main(
        "run",
        [
            "--template", str(FIXTURES / "pipeline.yaml"),
            "--parameter-overrides", "Prefix=u-",
            "--records", f"u-input={FIXTURES / 'input.jsonl'}",
            "--partition-key", "id",
            "--until-drained",
        ],
    )  # fmt: skip
    assert status == 0
    assert "put 4 records from" in capsys.readouterr().out
    dynamodb = boto3.client("dynamodb", endpoint_url=aws.endpoint_url)  # moto's state outlives `run`'s server
    assert len(dynamodb.scan(TableName="u-items")["Items"]) == 3


@pytest.mark.slow
def test_run_names_a_missing_partition_key_field(aws):
    arguments = ["--template", str(FIXTURES / "pipeline.yaml"), "--until-drained", "--partition-key", "nope"]
    with pytest.raises(UserError, match="no field 'nope'"):
        main("run", [*arguments, "--records", f"InputStream={FIXTURES / 'input.jsonl'}"])


def test_bad_template_and_overrides_are_user_errors():
    with pytest.raises(UserError, match=r"cannot read template /nonexistent/template\.yaml.*pass --template"):
        main("run", ["--template", "/nonexistent/template.yaml", "--until-drained"])
    with pytest.raises(UserError, match="Stage='qa'"):
        main("run", ["--template", str(FIXTURES / "pipeline.yaml"), "--parameter-overrides", "Stage=qa"])


def test_demo_fails_when_no_pipeline_can_run_on_the_template(aws, capsys):
    assert main("demo", ["--template", str(FIXTURES / "lake.yaml")]) == 1
    out = capsys.readouterr().out
    assert "skipped: the template lacks" in out
    assert "demo FAILED" in out


class Tail:
    """The lines of a subprocess's stdout, waited for without blocking forever."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in process.stdout], daemon=True).start()

    def until(self, predicate, limit_s: float = 90) -> str:
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError("expected output did not appear:\n" + "".join(self.seen[-80:]))


@contextlib.contextmanager
def running_cli(*arguments: str) -> Iterator[tuple[subprocess.Popen, Tail]]:
    """`tributary <arguments>` in a child process, its output tailed; killed if a test leaves it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tributary.cli", *arguments],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        yield process, Tail(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture
def up_lake():
    with running_cli("up", "--template", str(FIXTURES / "lake.yaml")) as (process, tail):
        endpoint = tail.until(lambda line: line.startswith("emulator:")).split()[1]
        tail.until(lambda line: line.startswith("running"))
        yield process, tail, endpoint


@pytest.mark.slow
def test_up_runs_until_interrupted_and_query_reads_its_lake(up_lake):
    process, tail, endpoint = up_lake
    kinesis = boto3.client("kinesis", endpoint_url=endpoint)
    for order in ({"id": "o1", "amount": 2.5, "quantity": 1, "tags": [], "day": "2026-11-20"},
                  {"id": "o2", "amount": 4, "quantity": 2, "tags": ["x"], "day": "2026-11-20"}):  # fmt: skip
        kinesis.put_record(StreamName="orders", Data=json.dumps(order).encode(), PartitionKey=order["id"])
    tail.until(lambda line: "firehose:orders-to-lake" in line and "delivered=2" in line)

    port = endpoint.rsplit(":", 1)[1]
    query = subprocess.run(
        [sys.executable, "-m", "tributary.cli", "query", "--port", port, "total-by-day"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    assert query.stdout.splitlines()[:2] == ["day\ttotal\torders", "2026-11-20\t6.50\t2"]

    process.send_signal(signal.SIGINT)
    tail.until(lambda line: line.strip() == "interrupted", limit_s=60)  # the one line after the stop notice
    assert process.wait(timeout=30) == 130


class FakeDemoContext:
    """Just enough of a DemoContext over the session's moto for the stream processor demo's report."""

    def __init__(self, failures):
        self.failures = failures

    def client(self, service):
        return boto3.client(service)

    def physical_name(self, logical_id):
        return {"WildrydesStream": "wildrydes", "UnicornSensorDataTable": "UnicornSensorData",
                "PaymentsStream": "payments", "PaymentsTable": "Payments",
                "SchemaRegistry": "arn:aws:glue:us-east-1:123456789012:registry/tributary"}[logical_id]  # fmt: skip

    def arn(self, logical_id):
        return f"arn:aws:lambda:us-east-1:123456789012:function:{logical_id}"

    def on_failure_records(self):
        return self.failures

    def mapping_stats(self):
        return {}


def failure_of(shard: str, sequence: str) -> dict:
    """An on-failure invocation record of PaymentProcessorFunction for one record."""
    return {
        "requestContext": {
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
            "functionArn": FakeDemoContext([]).arn("PaymentProcessorFunction"),
        },
        "KinesisBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": sequence,
            "endSequenceNumber": sequence,
            "batchSize": 1,
            "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/payments",
        },
    }


def test_stream_processor_demo_reports_records_neither_written_nor_on_failure_or_stale(aws):
    from tributary.demos.stream_processor import StreamProcessorDemo, record_decoder

    kinesis, dynamodb = boto3.client("kinesis"), boto3.client("dynamodb")
    boto3.client("glue").create_registry(RegistryName="tributary")
    for stream, table, keys in (("wildrydes", "UnicornSensorData", ("Name", "StatusTime")),
                                ("payments", "Payments", ("paymentId",))):  # fmt: skip
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
            KeySchema=[{"AttributeName": key, "KeyType": "RANGE" if key == "StatusTime" else "HASH"} for key in keys],
        )  # fmt: skip
    demo = StreamProcessorDemo()
    demo.produce(FakeDemoContext([]))
    # Nothing processed them: every record is unaccounted for, and the report must say so.
    section = demo.report(FakeDemoContext([]))
    assert not section.accounted
    assert any("records neither written nor on-failure" in problem for problem in section.problems)

    # Write every valid payment in order (Avro v1, then v2), and put each poison pill in an on-failure batch.
    decode = record_decoder(FakeDemoContext([]))
    shard = kinesis.list_shards(StreamName="payments")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="payments", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    failures, versions = [], {}
    for record in kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]:
        version = record_version(record["SequenceNumber"])
        try:
            payment = decode(record["Data"])
            item = {"paymentId": {"S": payment["paymentId"]}, "status": {"S": payment["status"]},
                    "recordVersion": {"S": version}}
        except (RecordError, ValueError, KeyError):
            failures.append(failure_of(shard, record["SequenceNumber"]))
            continue
        dynamodb.put_item(TableName="Payments", Item=item)
        versions.setdefault(payment["paymentId"], []).append(version)
    section = demo.report(FakeDemoContext(failures))
    assert [problem for problem in section.problems if problem.startswith(("payments", "Payments"))] == []
    assert "  accounted for: 40 applied + 2 on-failure (in dead-lettered batches) of 42 user records, 0 lost" in (
        section.lines)
    assert "  40 records are Glue-framed Avro (20 zlib-compressed)" in section.lines

    # A payment whose item went back to an older record is reported, though its key is in the table.
    payment_id, (first, *_) = next((key, held) for key, held in versions.items() if len(held) > 1)
    dynamodb.put_item(TableName="Payments", Item={"paymentId": {"S": payment_id}, "status": {"S": "OLD"},
                                                  "recordVersion": {"S": first}})
    section = demo.report(FakeDemoContext(failures))
    assert (f"Payments: 1 items are older than their key's newest record that was not dead-lettered "
            f"(order went back): ['{payment_id}']") in section.problems


@pytest.mark.slow
def test_run_carries_on_past_functions_it_cannot_run_and_says_why_it_is_not_drained(aws, tmp_path, monkeypatch,
                                                                                    capsys):
    monkeypatch.chdir(tmp_path)  # the default function log goes under ./.tributary/
    trace = tmp_path / "trace.jsonl"
    status = main(
        "run",
        [
            "--template", str(FIXTURES / "mixed.yaml"),
            "--records", f"InputStream={FIXTURES / 'input.jsonl'}",
            "--until-drained", "--timeout", "2", "--trace", str(trace), "--verbose",
        ],
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 1
    out, err = captured.out, captured.err
    assert "function not run: InlineFunction: InlineCode is not run locally" in out
    assert "function not run: NodeFunction: Runtime nodejs20.x is not run locally" in out
    assert "event not emulated: InlineFunction.Input (Kinesis): InlineCode" in out
    assert "warning: FailingFunction.Input: MaximumRetryAttempts -1 and MaximumRecordAgeInSeconds -1" in out
    assert "  InputStream: mixed-input  arn:aws:kinesis:us-east-1:123456789012:stream/mixed-input" in out
    assert re.search(r"not drained after 2\.0 s: .*4 records \d+\.\.\d+ failed [1-3] times, "
                     r"last error: ValueError: cannot handle 4 records", err), err
    # A second apart, not back to back: a handful of attempts, not thousands.
    assert 1 <= sum(json.loads(line)["type"] == "invocation" for line in trace.read_text().splitlines()) <= 3
    [log] = (tmp_path / ".tributary" / "logs").glob("run-*.log")
    assert f"function output: {log.relative_to(tmp_path)}" in out
    assert "Traceback" in log.read_text() and "ValueError: cannot handle 4 records" in log.read_text()


class WindowedRuntime:
    def longest_tumbling_window_s(self) -> int:
        return 900


def test_the_default_drain_timeout_outlasts_the_longest_tumbling_window():
    from argparse import Namespace

    from tributary.commands.session import WINDOW_TIMEOUT_MARGIN_S, drain_timeout

    assert drain_timeout(Namespace(timeout=None), WindowedRuntime()) == 900 + WINDOW_TIMEOUT_MARGIN_S
    assert drain_timeout(Namespace(timeout=12.5), WindowedRuntime()) == 12.5


@pytest.mark.slow
def test_run_without_until_drained_keeps_running_until_sigterm(tmp_path):
    records = f"InputStream={FIXTURES / 'input.jsonl'}"
    template, logs = str(FIXTURES / "pipeline.yaml"), str(tmp_path / "functions.log")
    with running_cli("run", "--template", template, "--records", records, "--logs", logs) as (process, tail):
        tail.until(lambda line: line.startswith("put 4 records"))
        tail.until(lambda line: re.search(r"WriterFunction\.Input .* in=4 ", line) is not None)
        assert process.poll() is None  # still running once everything is processed, until told to stop
        process.send_signal(signal.SIGTERM)
        tail.until(lambda line: line.startswith("stopped"), limit_s=60)
        assert process.wait(timeout=30) == 0


@pytest.mark.slow
def test_a_shutdown_that_hangs_prints_every_threads_stack_and_exits_1():
    # A non-daemon thread that never ends: the interpreter would wait for it at exit forever.
    code = (
        "import threading, tributary.commands.session as session\n"
        "session.SLOW_SHUTDOWN_REPORT_S = 0.5\n"
        "def never_ends(): threading.Event().wait()\n"
        "threading.Thread(target=never_ends, name='stuck').start()\n"
        "session.report_a_slow_shutdown()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "in never_ends" in run.stderr


def test_a_second_ctrl_c_mid_step_still_arms_the_slow_shutdown_report(monkeypatch, capsys):
    from tributary.commands import session

    class InterruptedTwiceInAStep:
        def step(self) -> bool:
            os.kill(os.getpid(), signal.SIGINT)  # asks for a stop
            os.kill(os.getpid(), signal.SIGINT)  # and at once: KeyboardInterrupt, mid-step
            time.sleep(5)
            raise AssertionError("the second Ctrl-C did not interrupt the step")

        def counters(self) -> dict:
            return {}

    armed = []
    monkeypatch.setattr(session, "report_a_slow_shutdown", lambda: armed.append(True))
    assert session.serve_until_stopped(InterruptedTwiceInAStep()) is True  # the command then exits 130
    assert armed == [True]
