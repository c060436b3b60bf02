"""put_records: batching limits, resending only failed entries, oversize records, against moto and fakes."""

from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tributary_shared.kinesis_put import (
    MAX_BYTES_PER_REQUEST,
    MAX_RECORD_BYTES,
    MAX_RECORDS_PER_REQUEST,
    PUT_RETRY,
    PutReport,
    put_records,
)
from tributary_shared.retries import CALL_BUDGET_S, RetryPolicy


class FakeKinesis:
    """Records every PutRecords request; fails the entries `fail(attempt, key)` picks."""

    def __init__(self, fail: Any = None, error: ClientError | None = None) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.fail = fail or (lambda attempt, key: None)
        self.error = error

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.requests.append(Records)
        if self.error:
            raise self.error
        attempt = len(self.requests)
        results = []
        for record in Records:
            code = self.fail(attempt, record["PartitionKey"])
            if code:
                results.append({"ErrorCode": code, "ErrorMessage": f"{code} for {record['PartitionKey']}"})
            else:
                results.append({"SequenceNumber": str(attempt), "ShardId": "shardId-000000000000"})
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedRecordCount": failed, "Records": results}


def no_sleep(_: float) -> None:
    pass


NO_WAIT = replace(PUT_RETRY, sleep=no_sleep)


def entries(count: int, size: int = 10) -> list[tuple[str, bytes]]:
    return [(f"key-{i}", bytes(size)) for i in range(count)]


def test_batches_respect_the_record_count_limit():
    client = FakeKinesis()
    report = put_records(client, "s", entries(1201), retry=NO_WAIT)
    assert [len(r) for r in client.requests] == [500, 500, 201]
    assert (report.sent, report.retried, report.failed, report.requests) == (1201, 0, 0, 3)


def test_batches_respect_the_request_byte_limit():
    client = FakeKinesis()
    report = put_records(client, "s", entries(12, size=MAX_RECORD_BYTES - 10), retry=NO_WAIT)
    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"]) for r in request) for request in client.requests]
    assert all(size <= MAX_BYTES_PER_REQUEST for size in sizes)
    assert [len(r) for r in client.requests] == [5, 5, 2]
    assert report.sent == 12


def test_only_the_failed_entries_are_resent_until_they_succeed():
    throttled_once = {"key-3", "key-7"}

    def fail(attempt: int, key: str) -> str | None:
        return "ProvisionedThroughputExceededException" if attempt == 1 and key in throttled_once else None

    client = FakeKinesis(fail)
    delays: list[float] = []
    report = put_records(client, "s", entries(10), retry=replace(PUT_RETRY, sleep=delays.append))
    assert [r["PartitionKey"] for r in client.requests[1]] == ["key-3", "key-7"]
    assert (report.sent, report.retried, report.failed) == (10, 2, 0)
    assert len(delays) == 1 and 0 <= delays[0] <= 0.2


def test_entries_failing_every_attempt_are_reported_with_their_error():
    def fail(attempt: int, key: str) -> str | None:
        return "InternalFailure" if key == "key-1" else None

    client = FakeKinesis(fail)
    report = put_records(client, "s", entries(3), retry=replace(NO_WAIT, max_attempts=4))
    assert len(client.requests) == 4
    assert (report.sent, report.retried, report.failed) == (2, 3, 1)
    failed = report.failed_entries[0]
    assert (failed.partition_key, failed.data, failed.error_code) == ("key-1", bytes(10), "InternalFailure")


def test_non_retryable_record_errors_are_not_resent():
    def fail(attempt: int, key: str) -> str | None:
        return "KMSDisabledException" if key == "key-0" else None

    client = FakeKinesis(fail)
    report = put_records(client, "s", entries(2), retry=NO_WAIT)
    assert len(client.requests) == 1
    assert report.failed_entries[0].error_code == "KMSDisabledException"


def test_backoff_grows_exponentially_with_full_jitter():
    client = FakeKinesis(lambda attempt, key: "ProvisionedThroughputExceededException")
    delays: list[float] = []
    put_records(client, "s", entries(1), retry=RetryPolicy(base_s=2.0, cap_s=3.0, max_attempts=5, sleep=delays.append))
    caps = [2.0, 3.0, 3.0, 3.0]
    assert len(delays) == 4
    assert all(0 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))


def test_oversize_records_and_bad_keys_are_rejected_before_sending():
    client = FakeKinesis()
    big = ("big", bytes(MAX_RECORD_BYTES))
    report = put_records(client, "s", [("ok", b"1"), big, ("", b"x"), ("k" * 257, b"x")], retry=NO_WAIT)
    assert [r["PartitionKey"] for r in client.requests[0]] == ["ok"]
    codes = [(f.partition_key[:3], f.error_code) for f in report.failed_entries]
    assert codes == [("big", "RecordTooLarge"), ("", "InvalidPartitionKey"), ("kkk", "InvalidPartitionKey")]
    assert "1048579 bytes" in report.failed_entries[0].error_message


def test_throttled_requests_are_retried_as_a_whole_then_reported():
    error = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutRecords")
    client = FakeKinesis(error=error)
    report = put_records(client, "s", entries(3), retry=replace(NO_WAIT, max_attempts=2))
    assert len(client.requests) == 2
    assert (report.sent, report.failed) == (0, 3)


def test_a_missing_stream_is_an_error_not_a_retry():
    error = ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "PutRecords")
    with pytest.raises(ClientError):
        put_records(FakeKinesis(error=error), "s", entries(1), retry=NO_WAIT)


def test_progress_is_reported_after_every_request_and_reports_add_up():
    client = FakeKinesis()
    seen: list[int] = []
    batch = entries(MAX_RECORDS_PER_REQUEST + 1)
    report = put_records(client, "s", batch, on_progress=lambda r: seen.append(r.sent))
    assert seen == [500, 501]
    total = PutReport()
    total.add(report)
    total.add(report)
    assert (total.sent, total.requests) == (1002, 4)


def moto_stream(name: str) -> Any:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    return kinesis


def read_shard(kinesis: Any, stream: str, expected: int) -> list[bytes]:
    """The stream's records in arrival order; gives up after a bounded number of reads."""
    shard_id = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    received: list[bytes] = []
    for _ in range(20):
        response = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        received += [record["Data"] for record in response["Records"]]
        iterator = response["NextShardIterator"]
        if len(received) >= expected:
            break
    return received


def test_records_land_on_a_moto_stream_in_order(aws):
    kinesis = moto_stream("wildrydes")
    sent = [(f"unicorn-{i % 310}", f"record-{i}".encode()) for i in range(620)]
    report = put_records(kinesis, "wildrydes", iter(sent))
    assert (report.sent, report.failed, report.requests) == (620, 0, 2)
    assert read_shard(kinesis, "wildrydes", len(sent)) == [data for _, data in sent]


def test_a_request_carries_one_record_per_partition_key():
    client = FakeKinesis()
    sent = [("a", b"1"), ("b", b"1"), ("a", b"2"), ("c", b"1"), ("a", b"3"), ("b", b"2")]
    report = put_records(client, "s", sent, retry=NO_WAIT)
    keys_and_data = [[(r["PartitionKey"], r["Data"]) for r in request] for request in client.requests]
    assert keys_and_data == [
        [("a", b"1"), ("b", b"1"), ("c", b"1")],
        [("a", b"2"), ("b", b"2")],
        [("a", b"3")],
    ]
    assert report.sent == 6


def test_one_busy_key_does_not_make_put_records_read_everything_ahead():
    pulled = [0]

    def one_key() -> Any:
        for number in range(5000):
            pulled[0] = number + 1
            yield "only-key", str(number).encode()

    pulled_at_each_request: list[int] = []

    class Watching(FakeKinesis):
        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            pulled_at_each_request.append(pulled[0])
            return super().put_records(StreamName, Records)

    client = Watching()
    report = put_records(client, "s", one_key(), retry=NO_WAIT)
    assert report.sent == 5000 and all(len(request) == 1 for request in client.requests)
    assert [int(request[0]["Data"]) for request in client.requests] == list(range(5000))
    assert max(count - index for index, count in enumerate(pulled_at_each_request)) <= MAX_RECORDS_PER_REQUEST + 1


class FirstRecordThrottledOnce:
    """A real (moto) Kinesis client whose first PutRecords call fails its first record."""

    def __init__(self, kinesis: Any) -> None:
        self.kinesis = kinesis
        self.calls = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        if self.calls > 1:
            return self.kinesis.put_records(StreamName=StreamName, Records=Records)
        rest = self.kinesis.put_records(StreamName=StreamName, Records=Records[1:]) if Records[1:] else None
        throttled = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
        return {"FailedRecordCount": 1, "Records": [throttled, *(rest["Records"] if rest else [])]}


def test_a_resent_record_still_lands_before_the_next_record_of_its_key(aws):
    kinesis = moto_stream("ordered")
    sent = [("Shadowfax", b"first"), ("Shadowfax", b"second"), ("Rocinante", b"other")]
    report = put_records(FirstRecordThrottledOnce(kinesis), "ordered", sent, retry=NO_WAIT)
    assert (report.sent, report.retried, report.failed) == (3, 1, 0)
    arrived = read_shard(kinesis, "ordered", len(sent))
    assert sorted(arrived) == sorted(data for _, data in sent)
    assert [data for data in arrived if data in (b"first", b"second")] == [b"first", b"second"]


def test_a_put_stopped_midway_counts_what_it_took_but_did_not_send_as_failed():
    class StopsOnSecondRequest(FakeKinesis):
        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            if self.requests:
                self.requests.append(Records)
                raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutRecords")
            return super().put_records(StreamName, Records)

    total = PutReport(sent=7)
    client = StopsOnSecondRequest()
    sent = [(f"key-{i % 300}", str(i).encode()) for i in range(1000)]
    with pytest.raises(ClientError):
        put_records(client, "s", sent, retry=NO_WAIT, into=total)
    assert total.sent == 7 + 300
    # The failed request's 300 and the 400 read ahead for later requests.
    assert total.failed == 700 and {entry.error_code for entry in total.failed_entries} == {"NotSent"}
    assert sorted(data for _, data in sent[300:]) == sorted(entry.data for entry in total.failed_entries)


def test_no_request_starts_that_could_end_after_the_deadline():
    """In a function, the deadline bounds the put: what cannot be sent in time fails, never outlives it."""
    now = [0.0]

    def advance(seconds: float) -> None:
        now[0] += seconds

    client = FakeKinesis(lambda attempt, key: "ProvisionedThroughputExceededException" if key == "key-1" else None)
    retry = replace(PUT_RETRY, max_attempts=None, clock=lambda: now[0], sleep=advance)
    report = put_records(client, "s", entries(3), retry=retry, deadline=CALL_BUDGET_S + 1.0)
    assert now[0] + CALL_BUDGET_S <= CALL_BUDGET_S + 1.0
    assert (report.sent, report.failed_entries[0].partition_key) == (2, "key-1")
    late = put_records(FakeKinesis(), "s", entries(MAX_RECORDS_PER_REQUEST + 2), retry=retry, deadline=now[0])
    assert (late.sent, late.requests, late.failed) == (0, 0, MAX_RECORDS_PER_REQUEST + 2)
    assert {failure.error_code for failure in late.failed_entries} == {"NotSent"}
