"""The TransactWriteItems fix gives moto's own results, in O(items touched) instead of O(table)."""

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto.dynamodb.models import DynamoDBBackend

from tributary import moto_dynamodb_patch
from tributary.moto_patches import source_sha256

KEYS = ["a", "b", "c", "d"]


def run(server, operations: list[list[tuple[str, str, int, str]]], patched: bool) -> tuple[list, list, list]:
    """The same transactions on the embedded server (in this process), with moto's method or the fix."""
    method = moto_dynamodb_patch.transact_write_items if patched else moto_dynamodb_patch.MOTO_TRANSACT_WRITE_ITEMS
    original = DynamoDBBackend.__dict__["transact_write_items"]
    DynamoDBBackend.transact_write_items = method
    server.reset()
    try:
        client = boto3.client("dynamodb")
        stream_arn = client.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]["LatestStreamArn"]
        outcomes = [_transact(client, transaction) for transaction in operations]
        items = sorted(client.scan(TableName="t")["Items"], key=lambda item: item["k"]["S"])
        return outcomes, items, _stream(stream_arn)
    finally:
        DynamoDBBackend.transact_write_items = original


def _transact(client, transaction: list[tuple[str, str, int, str]]) -> object:
    actions = []
    for op, key, version, value in transaction:
        guard = {
            "ConditionExpression": "attribute_not_exists(v) OR v < :v",
            "ExpressionAttributeValues": {":v": {"N": str(version)}},
        }
        if op == "put":
            actions.append({"Put": {"TableName": "t", "Item": {"k": {"S": key}, "v": {"N": str(version)},
                                                                "x": {"S": value}}, **guard}})
        elif op == "delete":
            actions.append({"Delete": {"TableName": "t", "Key": {"k": {"S": key}}, **guard}})
        elif op == "update":
            actions.append({"Update": {"TableName": "t", "Key": {"k": {"S": key}}, "UpdateExpression": "SET x = :x",
                                       "ConditionExpression": guard["ConditionExpression"],
                                       "ExpressionAttributeValues": {":v": {"N": str(version)}, ":x": {"S": value}}}})
        else:
            actions.append({"ConditionCheck": {"TableName": "t", "Key": {"k": {"S": key}}, **guard}})
    try:
        client.transact_write_items(TransactItems=actions)
    except ClientError as error:
        return error.response["Error"]["Code"], error.response.get("CancellationReasons")
    return "ok"


def _stream(stream_arn: str) -> list:
    streams = boto3.client("dynamodbstreams")
    (shard,) = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return [(r["eventName"], r["dynamodb"].get("OldImage"), r["dynamodb"].get("NewImage"))
            for r in streams.get_records(ShardIterator=iterator)["Records"]]


operation = st.tuples(st.sampled_from(["put", "put", "delete", "update", "check"]), st.sampled_from(KEYS),
                      st.integers(0, 6), st.text("xyz", max_size=3))
transactions = st.lists(st.lists(operation, min_size=1, max_size=5), min_size=1, max_size=8)


@pytest.mark.slow
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=transactions)
def test_patched_transactions_match_motos_own(aws, operations):
    assert run(aws, operations, patched=True) == run(aws, operations, patched=False)


def test_the_fix_is_applied_to_the_pinned_moto():
    pinned = moto_dynamodb_patch.TRANSACT_WRITE_ITEMS_SHA256
    assert source_sha256(moto_dynamodb_patch.MOTO_TRANSACT_WRITE_ITEMS) == pinned, (
        "moto's TransactWriteItems changed: re-check the fix against it, then update its pinned hash"
    )
    assert moto_dynamodb_patch.apply()


def test_a_cancelled_transaction_leaves_items_and_stream_as_they_were(aws):
    outcomes, items, stream = run(aws, [[("put", "a", 5, "x")], [("put", "b", 1, "z"), ("put", "c", 1, "z"),
                                                                 ("check", "a", 1, "")]], patched=True)
    assert outcomes[1][0] == "TransactionCanceledException"
    assert [item["x"]["S"] for item in items] == ["x"] and len(stream) == 1
