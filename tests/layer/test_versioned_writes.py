"""Version-guarded writes: whatever order, subset or repetition records arrive in, no key goes back in time.

The oracle is the table's own DynamoDB stream (moto records every applied write in order), not the
writer's report.
"""

import random
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FakeClock, assert_never_back_in_time, table_stream_images

from tributary_shared.dynamo_writer import WRITE_RETRY, BatchWriter, PendingItem
from tributary_shared.kinesis_batch import record_version

TABLE = "Payments"
KEYS = ("paymentId",)
VERSION = "recordVersion"


def create_table() -> str:
    description = boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "paymentId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "paymentId", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return description["TableDescription"]["LatestStreamArn"]


def applied_writes(stream_arn: str) -> list[tuple[str, int]]:
    """Every write DynamoDB applied, in order: (key, the record's sequence number)."""
    return [(image["paymentId"]["S"], int(image["seq"]["N"])) for image in table_stream_images(stream_arn)]


def payment(key: str, sequence: int) -> PendingItem:
    version = record_version(str(sequence))
    return PendingItem(ref=str(sequence), item={"paymentId": key, "seq": sequence, "status": f"s{sequence}"},
                       version=version)


def guarded_writer(client: Any = None, clock: FakeClock | None = None) -> BatchWriter:
    clock = clock or FakeClock()
    retry = replace(WRITE_RETRY, clock=clock, sleep=clock.sleep)
    return BatchWriter(TABLE, KEYS, client or boto3.client("dynamodb"), retry=retry, version_attribute=VERSION)


def final_items() -> dict[str, dict]:
    return {item["paymentId"]: item for item in boto3.resource("dynamodb").Table(TABLE).scan()["Items"]}




@pytest.fixture
def stream_arn(aws):
    return create_table()


def test_versions_sort_as_stream_positions_of_any_length():
    positions = [(5, 0), (9, 0), (10, 0), (10, 1), (10, 12), (99, 999_999), (10**55, 0), (10**56, 0), (10**128, 3)]
    versions = [record_version(str(sequence), sub) for sequence, sub in positions]
    assert versions == sorted(versions)
    assert record_version("49590338271490256608559692538361571095921575989136588898") == (
        "056:49590338271490256608559692538361571095921575989136588898:000000"
    )


def test_thousand_guarded_items_cost_ten_requests(stream_arn):
    report = guarded_writer().write([payment(f"p{i}", 100 + i) for i in range(1000)], deadline=60)
    assert report.requests == 10 and len(report.written) == 1000 and not report.failed
    assert final_items()["p7"][VERSION] == record_version("107")


def test_an_older_record_never_replaces_a_newer_item(stream_arn):
    writer = guarded_writer()
    writer.write([payment("k", 30)], deadline=60)
    report = writer.write([payment("k", 10), payment("other", 11)], deadline=60)
    assert report.superseded == ["10"] and report.written == ["11"] and not report.failed
    assert final_items()["k"]["seq"] == 30
    assert_never_back_in_time(applied_writes(stream_arn))


def test_a_repeated_write_is_settled_without_writing_again(stream_arn):
    writer = guarded_writer()
    writer.write([payment("k", 30)], deadline=60)
    report = writer.write([payment("k", 30)], deadline=60)
    assert report.superseded == ["30"] and not report.failed
    assert applied_writes(stream_arn) == [("k", 30)]


def test_items_written_before_versions_existed_are_replaced(stream_arn):
    boto3.client("dynamodb").put_item(TableName=TABLE, Item={"paymentId": {"S": "k"}, "seq": {"N": "999"}})
    report = guarded_writer().write([payment("k", 5)], deadline=60)
    assert report.written == ["5"] and final_items()["k"]["seq"] == 5


class LosesResponses:
    """Applies the first `lost` transactions and then raises as if the response never came back."""

    def __init__(self, real: Any, lost: int) -> None:
        self.real, self.lost, self.calls = real, lost, 0
        self.meta = real.meta  # the writer's hooks go on the real client, which sends the requests

    def transact_write_items(self, **kwargs: Any) -> dict:
        self.calls += 1
        response = self.real.transact_write_items(**kwargs)
        if self.lost > 0:
            self.lost -= 1
            raise ReadTimeoutError(endpoint_url="http://127.0.0.1")
        return response


def test_a_lost_response_is_retried_and_the_guard_settles_it(stream_arn):
    client = LosesResponses(boto3.client("dynamodb"), lost=1)
    report = guarded_writer(client).write([payment("a", 1), payment("b", 2)], deadline=60)
    assert client.calls == 2 and sorted(report.superseded) == ["1", "2"] and not report.failed
    assert applied_writes(stream_arn) == [("a", 1), ("b", 2)]


class CancelsWith:
    """Cancels the first transaction with the given per-item reason codes, then behaves."""

    def __init__(self, real: Any, codes: list[str]) -> None:
        self.real, self.codes, self.calls = real, codes, 0
        self.meta = real.meta  # the writer's hooks go on the real client, which sends the requests

    def transact_write_items(self, TransactItems: Any) -> dict:
        self.calls += 1
        if self.calls == 1:
            reasons = [{"Code": code, "Message": code} for code in self.codes]
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                               "CancellationReasons": reasons}, "TransactWriteItems")
        return self.real.transact_write_items(TransactItems=TransactItems)


def test_a_throttled_transaction_is_retried_whole(stream_arn):
    client = CancelsWith(boto3.client("dynamodb"), ["None", "ThrottlingError", "None"])
    report = guarded_writer(client).write([payment("a", 1), payment("b", 2), payment("c", 3)], deadline=60)
    assert client.calls == 2 and sorted(report.written) == ["1", "2", "3"]


def test_an_invalid_item_fails_alone_and_the_rest_is_written(stream_arn):
    client = CancelsWith(boto3.client("dynamodb"), ["None", "ValidationError", "None"])
    report = guarded_writer(client).write([payment("a", 1), payment("b", 2), payment("c", 3)], deadline=60)
    assert report.permanent == {"2": "ValidationError: ValidationError"}
    assert sorted(report.written) == ["1", "3"]


def test_an_item_dynamodb_refuses_is_isolated_by_halving(stream_arn):
    items = [payment(f"p{i}", i) for i in range(1, 9)]
    items[5] = PendingItem(ref="6", item={"paymentId": "", "seq": 6}, version=record_version("6"))  # empty key
    report = guarded_writer().write(items, deadline=60)
    assert set(report.permanent) == {"6"} and len(report.written) == 7


def test_numbers_dynamodb_cannot_hold_are_named(stream_arn):
    item = PendingItem(ref="1", item={"paymentId": "a", "amount": int("9" * 39)}, version=record_version("1"))
    report = guarded_writer().write([item], deadline=60)
    assert "more than 38 significant digits" in report.permanent["1"]


deliveries = st.lists(st.tuples(st.sampled_from("abcd"), st.integers(1, 60)), min_size=1, max_size=60)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(deliveries, min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_any_delivery_order_leaves_each_key_at_its_newest_record(aws_server, batches, seed):
    """Batches arrive as a mapping might deliver them after bisects, redeliveries and replays."""
    aws_server.reset()
    stream_arn = create_table()
    rng = random.Random(seed)
    writer = guarded_writer()
    newest: dict[str, int] = {}
    for batch in batches:
        unique = {sequence: key for key, sequence in batch}  # a record has one key
        items = [payment(key, sequence) for sequence, key in sorted(unique.items())]
        rng.shuffle(items)
        items.sort(key=lambda pending: int(pending.ref))  # each batch is in stream order, as Lambda sends it
        report = writer.write(items, deadline=10**9)
        assert not report.failed
        assert sorted([*report.written, *report.superseded], key=int) == [p.ref for p in items]
        for pending in items:
            key = pending.item["paymentId"]
            newest[key] = max(newest.get(key, 0), int(pending.ref))
    assert {key: int(item["seq"]) for key, item in final_items().items()} == newest
    assert_never_back_in_time(applied_writes(stream_arn))


def test_when_dynamodb_refuses_the_newest_record_of_a_key_the_one_before_it_is_written(stream_arn):
    too_big = PendingItem(ref="2", item={"paymentId": "k", "seq": 2, "blob": "x" * 410_000},
                          version=record_version("2"))
    report = guarded_writer().write([payment("k", 1), too_big, payment("other", 3)], deadline=60)
    assert set(report.permanent) == {"2"} and sorted(report.written) == ["1", "3"]
    assert final_items()["k"]["seq"] == 1


def test_an_item_whose_version_attribute_is_not_text_is_replaced(stream_arn):
    boto3.client("dynamodb").put_item(TableName=TABLE, Item={"paymentId": {"S": "k"}, VERSION: {"N": "99"}})
    report = guarded_writer().write([payment("k", 5)], deadline=60)
    assert report.written == ["5"] and final_items()["k"]["seq"] == 5


def test_a_cancellation_reason_without_a_code_counts_as_no_error(stream_arn):
    client = CancelsWith(boto3.client("dynamodb"), ["ConditionalCheckFailed", None])
    clock = FakeClock()
    boto3.client("dynamodb").put_item(TableName=TABLE, Item={"paymentId": {"S": "a"}, VERSION: {"S": "~"}})
    report = guarded_writer(client, clock).write([payment("a", 1), payment("b", 2)], deadline=60)
    assert report.superseded == ["1"] and report.written == ["2"] and clock.now == 0  # no back-off
