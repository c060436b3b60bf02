"""--faults: AWS faults injected into the functions' own requests and invocations, never the runtime's."""

import json
import textwrap
import uuid
from collections import Counter
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from tributary.commands import main as tributary
from tributary.runtime import faults
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.faults import FAULTS, FaultInjector, FaultPlan, FaultSpecError, injecting, parse_faults
from tributary.runtime.functions import load_functions
from tributary.runtime.template import Template
from tributary.runtime.trace import TraceWriter
from tributary_shared import aws_clients

FIXTURES = Path(__file__).parent / "fixtures"
TABLE = "faulted"


def injector(spec: str, seed: int = 7, trace: TraceWriter | None = None) -> FaultInjector:
    return FaultInjector(parse_faults(spec, seed), trace)


def function_client(service: str, fault_injector: FaultInjector) -> object:
    """A client as a function under test has it: one attempt per call (the layer's), faulted."""
    client = aws_clients.client(service)
    fault_injector.attach(client, "under-test")
    return client


@pytest.fixture
def table(aws):
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    return dynamodb  # the test's own client: never faulted


def stored_ids(dynamodb) -> set[str]:
    return {item["id"]["S"] for item in dynamodb.scan(TableName=TABLE)["Items"]}


def item(identifier: str) -> dict:
    return {"id": {"S": identifier}}


# ---------------------------------------------------------------- the --faults value


def test_a_fault_spec_gives_each_kind_its_probability_and_a_seed():
    plan = parse_faults("dynamodb.throttle=0.1, lambda.crash=1,glue.unavailable=0", seed=42)
    assert plan == FaultPlan({"dynamodb.throttle": 0.1, "lambda.crash": 1.0, "glue.unavailable": 0.0}, 42)
    assert "--fault-seed 42" in plan.describe()
    assert parse_faults("kinesis.put-failure=0.5").seed > 0  # a random seed, printed so a run can be repeated


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("dynamodb.throtle=0.1", "unknown fault 'dynamodb.throtle'"),
        ("dynamodb.throttle=1.5", "dynamodb.throttle=1.5: the probability must be between 0 and 1"),
        ("dynamodb.throttle=-0.1", "the probability must be between 0 and 1"),
        ("dynamodb.throttle=nan", "the probability must be between 0 and 1"),
        ("dynamodb.throttle=often", "dynamodb.throttle=often: the probability is not a number"),
        ("dynamodb.throttle", "'dynamodb.throttle' is not FAULT=PROBABILITY"),
        ("dynamodb.throttle=0.1,", "'' is not FAULT=PROBABILITY"),
        ("", "'' is not FAULT=PROBABILITY"),
        ("lambda.crash=0.1,lambda.crash=0.2", "lambda.crash is given twice"),
    ],
)
def test_a_bad_fault_spec_is_refused_in_one_line_naming_the_known_faults(spec, problem):
    with pytest.raises(FaultSpecError) as refused:
        parse_faults(spec)
    message = str(refused.value)
    assert problem in message and "\n" not in message
    assert message.endswith(f"known faults: {', '.join(FAULTS)}")


@pytest.mark.parametrize("command", ["run", "up", "demo"])
def test_the_commands_refuse_a_bad_fault_spec_before_starting_anything(command, capsys):
    assert tributary([command, "--faults", "dynamodb.throttle=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tributary {command}: --faults: dynamodb.throttle=2: the probability must be between 0")
    assert len(err.splitlines()) == 1 and "known faults: dynamodb.throttle" in err
    assert tributary([command, "--fault-seed", "3"]) == 2
    assert capsys.readouterr().err.strip() == f"tributary {command}: --fault-seed needs --faults"


# ---------------------------------------------------------------- each fault as AWS presents it


def test_throttling_is_refused_unapplied_with_aws_error(table):
    client = function_client("dynamodb", injector("dynamodb.throttle=1"))
    with pytest.raises(ClientError) as refused:
        client.put_item(TableName=TABLE, Item=item("a"))
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert stored_ids(table) == set()


def test_an_internal_server_error_is_a_500_and_nothing_is_applied(table):
    client = function_client("dynamodb", injector("dynamodb.error500=1"))
    with pytest.raises(ClientError) as refused:
        client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": item("a")}}]})
    assert refused.value.response["Error"]["Code"] == "InternalServerError"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert stored_ids(table) == set()


def test_a_lost_response_leaves_the_write_applied_and_the_client_timed_out(table):
    client = function_client("dynamodb", injector("dynamodb.lost-response=1"))
    with pytest.raises(ReadTimeoutError):
        client.put_item(TableName=TABLE, Item=item("a"))
    with pytest.raises(ReadTimeoutError):
        client.transact_write_items(TransactItems=[{"Put": {"TableName": TABLE, "Item": item("b")}}])
    assert stored_ids(table) == {"a", "b"}


def test_unprocessed_items_are_exactly_the_ones_not_written(table):
    fault_injector = injector("dynamodb.unprocessed=1")
    client = function_client("dynamodb", fault_injector)
    for attempt in range(5):
        ids = {f"{attempt}-{n}" for n in range(25)}
        response = client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": item(i)}} for i in ids]})
        unprocessed = {entry["PutRequest"]["Item"]["id"]["S"] for entry in response["UnprocessedItems"][TABLE]}
        assert unprocessed and unprocessed <= ids
        assert stored_ids(table) & ids == ids - unprocessed
    assert fault_injector.injected == Counter({"dynamodb.unprocessed": 5})


def test_an_unprocessed_transaction_is_cancelled_with_throttling_reasons_and_writes_nothing(table):
    client = function_client("dynamodb", injector("dynamodb.unprocessed=1"))
    puts = [{"Put": {"TableName": TABLE, "Item": item(str(n))}} for n in range(10)]
    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(TransactItems=puts)
    response = cancelled.value.response
    assert response["Error"]["Code"] == "TransactionCanceledException"
    codes = [reason["Code"] for reason in response["CancellationReasons"]]
    assert len(codes) == 10 and "ThrottlingError" in codes and set(codes) <= {"ThrottlingError", "None"}
    assert f"[{', '.join(codes)}]" in response["Error"]["Message"]
    assert stored_ids(table) == set()


def test_an_unavailable_registry_answers_500_503_or_not_at_all(aws):
    fault_injector = injector("glue.unavailable=1")
    glue = function_client("glue", fault_injector)
    seen = set()
    for _ in range(30):
        with pytest.raises((ClientError, EndpointConnectionError)) as failed:
            glue.get_schema_version(SchemaVersionId=str(uuid.uuid4()))
        error = failed.value
        seen.add(error.response["Error"]["Code"] if isinstance(error, ClientError) else "connection")
    assert seen == {"InternalServiceException", "ServiceUnavailable", "connection"}
    assert fault_injector.injected["glue.unavailable"] == 30


def test_put_records_fails_a_subset_of_entries_that_never_reach_the_stream(aws):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="out", ShardCount=1)
    client = function_client("kinesis", injector("kinesis.put-failure=1"))
    entries = [{"Data": f"record-{n}".encode(), "PartitionKey": "k"} for n in range(20)]
    response = client.put_records(StreamName="out", Records=entries)
    failed = [n for n, result in enumerate(response["Records"]) if "ErrorCode" in result]
    assert failed and response["FailedRecordCount"] == len(failed)
    assert {response["Records"][n]["ErrorCode"] for n in failed} == {"ProvisionedThroughputExceededException"}
    with pytest.raises(ClientError, match="ProvisionedThroughputExceededException"):
        client.put_record(StreamName="out", Data=b"single", PartitionKey="k")
    shard = kinesis.list_shards(StreamName="out")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="out", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    on_stream = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    written = [result["SequenceNumber"] for result in response["Records"] if "SequenceNumber" in result]
    assert [record["SequenceNumber"] for record in on_stream] == written
    assert [record["Data"] for record in on_stream] == [
        entry["Data"] for n, entry in enumerate(entries) if n not in failed
    ]


def test_a_request_meets_at_most_one_fault_and_table_management_none(table):
    client = function_client("dynamodb", injector("dynamodb.throttle=1,dynamodb.error500=1"))
    assert client.describe_table(TableName=TABLE)["Table"]["TableName"] == TABLE
    with pytest.raises(ClientError, match="ProvisionedThroughputExceededException"):
        client.get_item(TableName=TABLE, Key=item("a"))


def test_the_same_seed_repeats_the_same_faults(table):
    def outcomes(spec: str) -> list[str]:
        client = function_client("dynamodb", injector(spec, seed=1234))
        results = []
        for n in range(40):
            try:
                client.put_item(TableName=TABLE, Item=item(str(n)))
                results.append("ok")
            except ClientError as error:
                results.append(error.response["Error"]["Code"])
        return results

    first = outcomes("dynamodb.throttle=0.3,dynamodb.error500=0.3")
    assert set(first) == {"ok", "ProvisionedThroughputExceededException", "InternalServerError"}
    assert outcomes("dynamodb.throttle=0.3,dynamodb.error500=0.3") == first
    # A kind at 0 takes no draws: it cannot shift the others.
    assert outcomes("dynamodb.throttle=0.3,dynamodb.unprocessed=0,dynamodb.error500=0.3") == first


def test_every_injected_fault_is_traced_with_its_function(table, tmp_path):
    trace_path = tmp_path / "trace.jsonl"
    trace = TraceWriter(trace_path)
    client = function_client("dynamodb", injector("dynamodb.throttle=1", trace=trace))
    with pytest.raises(ClientError):
        client.put_item(TableName=TABLE, Item=item("a"))
    trace.close()
    [line] = [json.loads(text) for text in trace_path.read_text().splitlines()]
    assert line["type"] == "fault" and line["fault"] == "dynamodb.throttle"
    assert (line["function"], line["operation"]) == ("under-test", "PutItem")


# ---------------------------------------------------------------- only the functions' clients


FUNCTION_CODE = """
import os

import boto3
from botocore.config import Config

INVOCATIONS_SINCE_INIT = 0


def handler(event, context):
    global INVOCATIONS_SINCE_INIT
    INVOCATIONS_SINCE_INIT += 1
    client = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
    client.put_item(TableName=os.environ["TABLE"], Item={"id": {"S": event["id"]}})
    return {"invocations_since_init": INVOCATIONS_SINCE_INIT}
"""


@pytest.fixture
def one_function(tmp_path):
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(FUNCTION_CODE)
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(f"""
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Writer:
            Type: AWS::Serverless::Function
            Properties:
              FunctionName: writer
              Runtime: python3.13
              CodeUri: fn
              Handler: app.handler
              Timeout: 5
              Environment:
                Variables:
                  TABLE: {TABLE}
    """)
    )
    return Template.load(tmp_path / "template.yaml")


def test_only_clients_that_function_code_creates_are_faulted(table, one_function):
    fault_injector = injector("dynamodb.throttle=1")
    with injecting(fault_injector):
        writer = load_functions(one_function, fault_injector)["Writer"]
        table.put_item(TableName=TABLE, Item=item("created-before"))  # a client made before: never faulted
        boto3.client("dynamodb").put_item(TableName=TABLE, Item=item("runtime"))  # made by the runtime now
        result = writer.invoke({"id": "function"})
    assert result.function_error == "Unhandled"
    assert "ProvisionedThroughputExceededException" in result.error_message
    assert stored_ids(table) == {"created-before", "runtime"}
    assert fault_injector.injected == Counter({"dynamodb.throttle": 1})
    assert botocore.session.Session.create_client is faults._original_create_client  # nothing left behind


def test_a_crash_after_the_handler_keeps_its_writes_and_fails_the_invocation(table, one_function):
    fault_injector = injector("lambda.crash=1")
    writer = load_functions(one_function, fault_injector)["Writer"]
    result = writer.invoke({"id": "a"})
    assert result.function_error == "Unhandled"
    assert result.error_message.startswith("Runtime.ExitError: ")
    assert stored_ids(table) == {"a"}
    assert (writer.invocations, writer.errors) == (1, 1)


def test_a_timeout_after_the_handler_is_reported_as_lambda_reports_one(table, one_function):
    writer = load_functions(one_function, injector("lambda.timeout=1"))["Writer"]
    result = writer.invoke({"id": "a"})
    assert (result.function_error, result.error_message) == ("Unhandled", "Task timed out after 5.00 seconds")
    assert stored_ids(table) == {"a"}


def test_a_cold_start_runs_the_function_initialisation_again(table, one_function):
    warm = load_functions(one_function)["Writer"]
    assert [warm.invoke({"id": str(n)}).response["invocations_since_init"] for n in range(3)] == [1, 2, 3]
    fault_injector = injector("lambda.cold-start=1")
    cold = load_functions(one_function, fault_injector)["Writer"]
    assert [cold.invoke({"id": str(n)}).response["invocations_since_init"] for n in range(3)] == [1, 1, 1]
    assert fault_injector.injected == Counter({"lambda.cold-start": 3})


def test_the_runtime_faults_its_functions_and_never_its_own_plumbing(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the fixture function's client: no botocore retries to wait for
    trace_path = tmp_path / "trace.jsonl"
    options = RuntimeOptions(
        template_path=FIXTURES / "pipeline.yaml",
        trace_path=trace_path,
        retry_delay_s=0,
        idle_read_interval_s=0,
        faults=parse_faults("dynamodb.throttle=1,kinesis.put-failure=1", seed=5),
    )
    with Runtime(options) as runtime:
        kinesis, dynamodb = boto3.client("kinesis"), boto3.client("dynamodb")
        entries = [{"Data": json.dumps({"id": f"a{n}"}).encode(), "PartitionKey": "k"} for n in range(4)]
        assert kinesis.put_records(StreamName="t-input", Records=entries)["FailedRecordCount"] == 0
        runtime.drain(30, sleep=lambda _: None)
        assert dynamodb.scan(TableName="t-items")["Items"] == []  # the runtime's own reads: never faulted
        dead_lettered = runtime.on_failure_records()
        counters = runtime.counters()
        writer_name = runtime.functions["WriterFunction"].config.name
        runtime.aws.reset()
    assert sum(record["KinesisBatchInfo"]["batchSize"] for record in dead_lettered) == 4
    writer_stats = counters["mappings"]["WriterFunction.Input"]
    assert counters["faults"] == {"dynamodb.throttle": writer_stats["invocations"]}
    faults_traced = [line for line in map(json.loads, trace_path.read_text().splitlines()) if line["type"] == "fault"]
    assert len(faults_traced) == writer_stats["invocations"]
    assert {(line["function"], line["operation"]) for line in faults_traced} == {(writer_name, "PutItem")}
    assert botocore.session.Session.create_client is faults._original_create_client


def test_one_injector_at_a_time():
    first, second = injector("lambda.crash=0.5"), injector("lambda.crash=0.5")
    with injecting(first), pytest.raises(RuntimeError, match="already active"), injecting(second):
        pass
