"""The Lambda emulation through a real boto3 Lambda client: Invoke (Event, RequestResponse), retries, destinations."""

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tributary.runtime.emulations.lambda_invoke_api import response_payload
from tributary.runtime.emulations.lambda_service import ENDPOINT_VARIABLE, AsyncConfig, LambdaEmulation
from tributary.runtime.functions import FunctionConfig, LocalFunction, invocation_slot_if_free
from tributary.runtime.invocation import InvocationResult

FUNCTION_CODE = '''
def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event, "function": context.function_name}
'''
NAME = "t-echo"
ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{NAME}"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def echo(tmp_path: Path) -> LocalFunction:
    (tmp_path / "app.py").write_text(FUNCTION_CODE)
    return LocalFunction(FunctionConfig(NAME, NAME, ARN, tmp_path, "app.handler", 5.0, 128, {}))


def emulation_for(function: LocalFunction, configs: dict | None = None, **options) -> LambdaEmulation:
    def lookup(name_or_arn: str) -> LocalFunction | None:
        name = name_or_arn.rsplit(":function:", 1)[-1].split(":")[0]
        return function if name == function.config.name else None

    return LambdaEmulation(lookup, configs, **options)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(aws: object, echo: LocalFunction, clock: FakeClock) -> Iterator[LambdaEmulation]:
    with emulation_for(echo, retry_delays_s=(60.0, 120.0), clock=clock) as running:
        yield running


def test_the_endpoint_variable_is_the_one_botocore_reads_for_lambda(service: LambdaEmulation) -> None:
    assert ENDPOINT_VARIABLE == "AWS_ENDPOINT_URL_LAMBDA"
    assert boto3.client("lambda").meta.endpoint_url == service.endpoint_url


def test_request_response_runs_the_function_and_returns_its_payload(service: LambdaEmulation) -> None:
    response = boto3.client("lambda").invoke(FunctionName=NAME, Payload=json.dumps({"n": 1}).encode())
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"echo": {"n": 1}, "function": NAME}


def test_a_failing_request_response_carries_the_function_error_header(service: LambdaEmulation) -> None:
    response = boto3.client("lambda").invoke(FunctionName=ARN, Payload=b'{"fail": true}')
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "asked to fail")


def test_event_is_accepted_at_once_and_runs_when_the_runtime_polls(
    service: LambdaEmulation, echo: LocalFunction
) -> None:
    response = boto3.client("lambda").invoke(FunctionName=ARN, InvocationType="Event", Payload=b'{"n": 2}')
    assert response["StatusCode"] == 202
    assert echo.invocations == 0 and not service.is_drained()
    assert service.poll()
    assert echo.invocations == 1 and service.is_drained()
    assert service.counters()["invocations"] == 1 and service.counters()["errors"] == 0


def test_dry_run_and_a_qualified_name(service: LambdaEmulation) -> None:
    client = boto3.client("lambda")
    assert client.invoke(FunctionName=NAME, InvocationType="DryRun")["StatusCode"] == 204
    assert client.invoke(FunctionName=NAME, Qualifier="$LATEST", Payload=b"{}")["StatusCode"] == 200


@pytest.mark.parametrize(
    "function_name",
    [
        "t-missing",
        "arn:aws:lambda:us-east-1:123456789012:function:t-missing",
        "arn:aws:lambda:eu-west-1:123456789012:function:t-echo",  # another region
        "t-echo:live",  # an alias: only $LATEST exists locally
    ],
)
def test_an_unknown_function_is_resource_not_found(service: LambdaEmulation, function_name: str) -> None:
    with pytest.raises(ClientError) as raised:
        boto3.client("lambda").invoke(FunctionName=function_name, InvocationType="Event", Payload=b"{}")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert "Function not found: arn:aws:lambda:" in error["Error"]["Message"]


def test_a_payload_that_is_not_json_is_refused(service: LambdaEmulation) -> None:
    with pytest.raises(ClientError) as raised:
        boto3.client("lambda").invoke(FunctionName=NAME, Payload=b"{not json")
    assert raised.value.response["Error"]["Code"] == "InvalidRequestContentException"


def test_request_response_while_another_invocation_runs_is_throttled(service: LambdaEmulation) -> None:
    with invocation_slot_if_free() as free, pytest.raises(ClientError) as raised:
        assert free
        boto3.client("lambda", config=NO_RETRIES).invoke(FunctionName=NAME, Payload=b"{}")
    assert raised.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def failed_records_queue() -> tuple[str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="failed-async")["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_a_failing_event_is_retried_after_the_delays_then_recorded_on_failure(
    aws: object, echo: LocalFunction, clock: FakeClock
) -> None:
    url, queue_arn = failed_records_queue()
    configs = {NAME: AsyncConfig(maximum_retry_attempts=2, on_failure=queue_arn)}
    with emulation_for(echo, configs, retry_delays_s=(60.0, 120.0), clock=clock) as service:
        boto3.client("lambda").invoke(FunctionName=NAME, InvocationType="Event", Payload=b'{"fail": "yes"}')
        assert service.poll() and echo.invocations == 1
        clock.now += 59
        assert not service.poll() and not service.is_drained()  # the first retry waits a minute
        clock.now += 1
        assert service.poll() and echo.invocations == 2
        clock.now += 119
        assert not service.poll()
        clock.now += 1
        assert service.poll() and echo.invocations == 3
        assert service.is_drained()

    messages = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    record = json.loads(messages[0]["Body"])
    assert record["version"] == "1.0"
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"] == f"{ARN}:$LATEST"
    assert record["requestPayload"] == {"fail": "yes"}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorMessage"] == "asked to fail"
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert service.counters() == {
        "queued": 0, "invocations": 3, "errors": 3, "retries": 2, "on-failure": 1, "discarded": 0
    }


def test_without_retries_or_destination_a_failure_is_counted_as_discarded(
    aws: object, echo: LocalFunction, clock: FakeClock
) -> None:
    service = emulation_for(echo, {NAME: AsyncConfig(maximum_retry_attempts=0)}, clock=clock)
    service.invoke_async(echo, {"fail": True})
    assert service.poll() and service.is_drained()
    assert service.counters()["discarded"] == 1 and service.counters()["retries"] == 0


def test_an_event_older_than_the_maximum_age_is_not_retried(aws: object, echo: LocalFunction, clock: FakeClock) -> None:
    url, queue_arn = failed_records_queue()
    configs = {NAME: AsyncConfig(maximum_event_age_s=90, on_failure=queue_arn)}
    service = emulation_for(echo, configs, retry_delays_s=(60.0, 120.0), clock=clock)
    service.invoke_async(echo, {"fail": True})
    service.poll()
    clock.now += 60
    service.poll()  # the second retry would start 180 s after queueing: past the 90 s maximum age
    assert service.is_drained() and echo.invocations == 2
    body = boto3.client("sqs").receive_message(QueueUrl=url)["Messages"][0]["Body"]
    assert json.loads(body)["requestContext"]["condition"] == "EventAgeExceeded"


def test_records_to_s3_use_the_async_key_and_carry_the_request_payload(
    aws: object, echo: LocalFunction, clock: FakeClock
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="failed-async")
    configs = {NAME: AsyncConfig(maximum_retry_attempts=0, on_failure="arn:aws:s3:::failed-async")}
    service = emulation_for(echo, configs, clock=clock)
    service.invoke_async(echo, {"fail": True})
    service.poll()
    [item] = s3.list_objects_v2(Bucket="failed-async")["Contents"]
    assert item["Key"].startswith(f"aws/lambda/async/{NAME}/")
    record = json.loads(s3.get_object(Bucket="failed-async", Key=item["Key"])["Body"].read())
    assert record["requestPayload"] == {"fail": True} and "payload" not in record


def test_a_timeout_is_reported_as_lambda_reports_it() -> None:
    result = InvocationResult(function_error="Unhandled", error_message="Task timed out after 3.00 seconds")
    assert response_payload(result, "r-1") == {
        "errorMessage": "r-1 Task timed out after 3.00 seconds",
        "errorType": "Sandbox.Timedout",
    }
