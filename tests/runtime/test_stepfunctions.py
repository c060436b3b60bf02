"""State machines under the local runtime: moto's ASL interpreter, its tasks wired to the runtime's functions.

The fixture's Map runs each value through RelayFunction, which invokes EchoFunction synchronously (a
call that must run nested in the relay's invocation, not be refused as a second concurrent one) with
a ClientContext, then an SDK task puts the answer on a queue in the embedded AWS.
"""

import base64
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import moto
import pytest

from tributary.runtime import invocation_slot
from tributary.runtime.app import Runtime, RuntimeOptions
from tributary.runtime.emulations import stepfunctions
from tributary.runtime.executions import run_execution, state_machine_arn

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def runtime(aws: object) -> Iterator[Runtime]:  # `aws` first: moto state is process-wide
    with Runtime(RuntimeOptions(FIXTURES / "state_machine.yaml", function_log=io.StringIO())) as running:
        yield running
        running.aws.reset()


def queued_bodies(queue: str) -> list[dict]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(message["Body"]) for message in messages]
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_an_execution_runs_its_lambda_tasks_in_the_runtime_and_its_sdk_tasks_in_the_embedded_aws(runtime):
    sfn = boto3.client("stepfunctions")
    arn = state_machine_arn(sfn, "fixture-machine")
    assert arn == runtime.template.ref("Machine")

    result = run_execution(sfn, arn, {"values": ["a", "b", "c"]}, timeout_s=60)

    assert result.status == "SUCCEEDED", (result.error, result.cause)
    echoed = {"custom": {"asked_by": "fixture-relay"}, "function_name": "fixture-echo"}
    expected = [{"answer": {"event": {"value": value}, **echoed}, "function_error": None} for value in "abc"]
    assert result.output == expected  # the relay's synchronous call ran nested, with its ClientContext
    assert sorted(queued_bodies("fixture-results"), key=lambda body: body["answer"]["event"]["value"]) == expected
    assert runtime.functions["EchoFunction"].invocations == 3
    assert invocation_slot.running() == []


def test_a_synchronous_invoke_hands_its_client_context_to_the_handler(runtime):
    client_context = base64.b64encode(json.dumps({"custom": {"recordReport": True}, "env": {}}).encode()).decode()
    response = boto3.client("lambda").invoke(FunctionName="fixture-echo", Payload=b"{}", ClientContext=client_context)
    assert json.loads(response["Payload"].read())["custom"] == {"recordReport": True}
    plain = boto3.client("lambda").invoke(FunctionName="fixture-echo", Payload=b"{}")
    assert json.loads(plain["Payload"].read())["custom"] is None


def test_a_client_context_that_is_not_base64_json_is_refused(runtime):
    with pytest.raises(boto3.client("lambda").exceptions.InvalidRequestContentException):
        boto3.client("lambda").invoke(FunctionName="fixture-echo", Payload=b"{}", ClientContext="not base64!")


def test_the_runtime_puts_moto_back_as_it_found_it(aws):
    from moto.core.config import default_user_config
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    before = lambda_eval_utils.boto_client_for
    with Runtime(RuntimeOptions(FIXTURES / "state_machine.yaml", function_log=io.StringIO())):
        assert lambda_eval_utils.boto_client_for is not before
        assert default_user_config["stepfunctions"]["execute_state_machine"] is True
    assert lambda_eval_utils.boto_client_for is before
    assert default_user_config["stepfunctions"].get("execute_state_machine", False) is False
    aws.reset()


def test_another_moto_is_refused_and_named(aws, monkeypatch):
    monkeypatch.setattr(moto, "__version__", "9.9.9")
    assert "moto is 9.9.9" in (stepfunctions.refusal() or "")
    with Runtime(RuntimeOptions(FIXTURES / "state_machine.yaml", function_log=io.StringIO())) as running:
        assert not running.runs_state_machines
        assert any("executions not run: moto is 9.9.9" in note for note in running.deployment.notes)
    aws.reset()


def test_a_call_is_nested_only_in_the_innermost_running_invocation():
    entered = threading.Event()
    release = threading.Event()

    def outer() -> None:
        with invocation_slot.top_level("outer"):
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=outer)
    worker.start()
    assert entered.wait(5)
    with invocation_slot.nested_in("outer", "inner") as admitted:
        assert admitted
        assert invocation_slot.running() == ["outer", "inner"]
        with invocation_slot.nested_in("outer", "second") as refused:
            assert not refused  # "outer" waits for "inner", not for this one
    with invocation_slot.nested_in("someone-else", "inner") as refused, invocation_slot.slot_if_free() as free:
        assert not refused and not free
    release.set()
    worker.join(5)
    assert invocation_slot.running() == []
