"""One record through a pipeline's function: the invocation Lambda's mapping would make, judged as it would."""

import base64
import io
import json

import pytest
from botocore.exceptions import ClientError

from tributary_shared.redrive.replay import (
    FunctionReplay,
    FunctionUnavailable,
    Outcome,
    ReplayOutOfTime,
)
from tributary_shared.retries import RetryPolicy

SEQUENCE = "49590338271490256608559692538361571095921575989136588898"
RECORD = {"kinesis": {"sequenceNumber": SEQUENCE, "data": "e30=", "partitionKey": "k"}, "eventSource": "aws:kinesis"}


class FakeLambda:
    """Answers each Invoke with the next of `answers`: a dict (the function's answer), ("error", payload) for a
    function error, or a ClientError to raise."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.calls: list[dict] = []

    def invoke(self, **request):
        self.calls.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, ClientError):
            raise answer
        if isinstance(answer, tuple):
            payload = io.BytesIO(json.dumps(answer[1]).encode())
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": payload}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


def no_wait(**settings) -> RetryPolicy:
    return RetryPolicy(base_s=0.0, cap_s=0.0, call_budget_s=0.0, sleep=lambda _: None, **settings)


def replay(client: FakeLambda, max_attempts: int = 3, **settings) -> FunctionReplay:
    return FunctionReplay(client, "pipeline-fn", max_attempts=max_attempts, record_retry=no_wait(),
                          invoke_retry=no_wait(max_attempts=3), **settings)  # fmt: skip


def report(superseded=(), failed=None, records=1) -> dict:
    return {"records": records, "superseded": list(superseded), "failed": failed or {}}


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Invoke")


def test_the_invocation_is_the_one_record_batch_the_mapping_sends_with_a_request_for_the_report():
    client = FakeLambda({"batchItemFailures": []})
    replay(client).apply(RECORD)
    (call,) = client.calls
    assert call["InvocationType"] == "RequestResponse" and call["FunctionName"] == "pipeline-fn"
    assert json.loads(call["Payload"]) == {"Records": [RECORD]}
    assert json.loads(base64.b64decode(call["ClientContext"])) == {"custom": {"recordReport": True}}


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"batchItemFailures": [], "recordReport": report()}, Outcome.APPLIED),
        ({"batchItemFailures": [], "recordReport": report([SEQUENCE])}, Outcome.SUPERSEDED),
        ({"batchItemFailures": []}, Outcome.APPLIED_UNREPORTED),
        (None, Outcome.APPLIED_UNREPORTED),
        ({"batchItemFailures": None, "recordReport": report()}, Outcome.APPLIED),
        # An aggregate: superseded only when every one of its user records is.
        ({"batchItemFailures": [], "recordReport": report([f"{SEQUENCE}:0", f"{SEQUENCE}:1"], records=3)},
         Outcome.APPLIED),
        ({"batchItemFailures": [], "recordReport": report([f"{SEQUENCE}:{n}" for n in range(3)], records=3)},
         Outcome.SUPERSEDED),
    ],
)  # fmt: skip
def test_a_record_done_is_applied_or_superseded_as_the_function_reports_it(answer, outcome):
    result = replay(FakeLambda(answer)).apply(RECORD)
    assert (result.outcome, result.attempts, result.reason) == (outcome, 1, None)


def test_a_permanent_failure_is_not_retried_and_keeps_the_functions_reason():
    failure = {"batchItemFailures": [{"itemIdentifier": SEQUENCE}],
               "recordReport": report(failed={SEQUENCE: {"reason": "record has no key attribute 'paymentId'",
                                                         "permanent": True}})}  # fmt: skip
    client = FakeLambda(failure)
    result = replay(client).apply(RECORD)
    assert (result.outcome, result.attempts, result.permanent) == (Outcome.FAILED, 1, True)
    assert result.reason == "record has no key attribute 'paymentId'"
    assert len(client.calls) == 1


def test_a_transient_failure_is_retried_and_may_succeed():
    transient = {"batchItemFailures": [{"itemIdentifier": SEQUENCE}],
                 "recordReport": report(failed={SEQUENCE: {"reason": "registry unreachable", "permanent": False}})}
    result = replay(FakeLambda(transient, {"batchItemFailures": [], "recordReport": report()})).apply(RECORD)
    assert (result.outcome, result.attempts) == (Outcome.APPLIED, 2)


def test_a_failure_without_a_report_is_retried_up_to_the_attempts_then_given_up_with_what_is_known():
    client = FakeLambda({"batchItemFailures": [{"itemIdentifier": SEQUENCE}]})
    result = replay(client, max_attempts=4).apply(RECORD)
    assert (result.outcome, result.attempts, result.permanent) == (Outcome.FAILED, 4, None)
    assert "reported the record failed (its response gives no reason" in (result.reason or "")
    assert len(client.calls) == 4


def test_a_failed_user_record_of_an_aggregate_is_named_in_the_reason():
    failure = {"batchItemFailures": [{"itemIdentifier": SEQUENCE}],
               "recordReport": report(records=2, failed={f"{SEQUENCE}:1": {"reason": "not JSON", "permanent": True}})}
    result = replay(FakeLambda(failure)).apply(RECORD)
    assert result.reason == f"user record {SEQUENCE}:1: not JSON"


def test_a_function_error_is_retried_then_given_up_with_the_error():
    crash = ("error", {"errorType": "Runtime.ExitError", "errorMessage": "signal: killed"})
    result = replay(FakeLambda(crash), max_attempts=2).apply(RECORD)
    assert (result.outcome, result.attempts) == (Outcome.FAILED, 2)
    assert result.reason == "pipeline-fn failed: Runtime.ExitError: signal: killed"


@pytest.mark.parametrize("failures", [[{"itemIdentifier": ""}], [{"itemIdentifier": None}], [{"id": SEQUENCE}], "x"])
def test_an_answer_the_mapping_would_read_as_a_whole_batch_failure_fails_the_record(failures):
    result = replay(FakeLambda({"batchItemFailures": failures}), max_attempts=1).apply(RECORD)
    assert result.outcome is Outcome.FAILED and "invalid batchItemFailures" in (result.reason or "")


def test_a_throttled_invoke_is_retried_and_a_missing_function_stops_the_message():
    result = replay(FakeLambda(client_error("TooManyRequestsException"), {"batchItemFailures": []})).apply(RECORD)
    assert result.outcome is Outcome.APPLIED_UNREPORTED
    with pytest.raises(FunctionUnavailable, match="ResourceNotFoundException"):
        replay(FakeLambda(client_error("ResourceNotFoundException"))).apply(RECORD)
    with pytest.raises(FunctionUnavailable, match="TooManyRequestsException"):
        replay(FakeLambda(client_error("TooManyRequestsException"))).apply(RECORD)


def test_no_attempt_starts_that_could_not_end_before_the_deadline():
    now = [0.0]
    policy = RetryPolicy(base_s=0.0, cap_s=0.0, call_budget_s=70.0, clock=lambda: now[0], sleep=lambda _: None)
    client = FakeLambda({"batchItemFailures": [{"itemIdentifier": SEQUENCE}]})
    slow = FunctionReplay(client, "pipeline-fn", max_attempts=3, record_retry=policy, deadline=60.0)
    with pytest.raises(ReplayOutOfTime):
        slow.apply(RECORD)
    assert len(client.calls) == 1


def test_an_asynchronous_request_is_sent_again_until_it_succeeds_or_the_attempts_run_out():
    answer = {"rows_loaded": 10, "continued": 0}
    result, got = replay(FakeLambda(("error", {"errorMessage": "busy"}), answer)).apply_request({"bucket": "b"})
    assert (result.outcome, result.attempts, got) == (Outcome.APPLIED, 2, answer)
    gone = ("error", {"errorType": "LoadFailed", "errorMessage": "s3://b/k was deleted"})
    result, _ = replay(FakeLambda(gone), max_attempts=2).apply_request({"bucket": "b"})
    assert (result.outcome, result.reason) == (Outcome.FAILED, "pipeline-fn failed: LoadFailed: s3://b/k was deleted")
