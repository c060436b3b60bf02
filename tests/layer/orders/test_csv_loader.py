"""The CSV loader: exact table contents, idempotent re-runs, bad rows, bounded memory, continuation."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FakeLambdaContext, load_event, load_handler_module

from tributary.demos.data_lake import change_rows, csv_bytes, csv_lines, expected_state, order_rows
from tributary_shared.dynamo_writer import PendingItem, WriteReport
from tributary_shared.orders.csv_rows import ORDER_COLUMNS, Line, RejectedRow, iter_lines, parse_row
from tributary_shared.orders.load_request import LoadFailed, LoadRequest
from tributary_shared.orders.loader import MAX_STALLED_SEGMENTS, OrderCsvLoader, group_into_requests, order_table_writer

TABLE = "OrderTransactions"
BUCKET = "tributary-orders-source-123456789012-us-east-1"
DAY = date(2020, 9, 2)


@pytest.fixture
def app(aws: Any) -> Any:
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "order_id", "AttributeType": "S"},
            {"AttributeName": "item_id", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "order_id", "KeyType": "HASH"},
            {"AttributeName": "item_id", "KeyType": "RANGE"},
        ],
    )
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return load_handler_module(
        "csv_loader", TABLE_NAME=TABLE, ROWS_PER_WRITE="100", WRITE_THREADS="4", CONTINUATION_MARGIN_MS="15000"
    )


def upload(key: str, body: bytes) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)


def table_contents() -> dict[tuple[str, str], dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(TABLE)
    response = table.scan()
    items = response["Items"]
    while "LastEvaluatedKey" in response:
        response = table.scan(ExclusiveStartKey=response["LastEvaluatedKey"])
        items += response["Items"]
    return {(item["order_id"], item["item_id"]): item for item in items}


def as_item(row: dict[str, str]) -> dict[str, Any]:
    return {**row, "amount": Decimal(row["amount"]), "time_stamp": row["time_stamp"].replace("Z", ".000Z")}


def read_object(key: str) -> dict[str, Any]:
    return json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def object_exists(key: str) -> bool:
    return boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0


def test_a_generated_day_loads_into_exactly_the_expected_table(app: Any) -> None:
    rows = list(order_rows(DAY, 400))
    upload("day.csv", csv_bytes(rows))
    result = app.lambda_handler({"bucket": BUCKET, "key": "day.csv"}, FakeLambdaContext())
    assert (result["rows_loaded"], result["rows_rejected"], result["continued"]) == (len(rows), 0, 0)
    assert table_contents() == {key: as_item(row) for key, row in expected_state(rows).items()}
    assert not object_exists("day.csv.rejects.json")


def test_loading_the_same_file_twice_leaves_the_same_table(app: Any) -> None:
    rows = list(order_rows(DAY, 150))
    upload("day.csv", csv_bytes(rows))
    app.lambda_handler({"bucket": BUCKET, "key": "day.csv"}, FakeLambdaContext())
    first = table_contents()
    second_result = app.lambda_handler({"bucket": BUCKET, "key": "day.csv"}, FakeLambdaContext())
    assert second_result["rows_loaded"] == len(rows)
    assert table_contents() == first


def test_a_changes_file_updates_the_lines_it_names(app: Any) -> None:
    rows = list(order_rows(DAY, 300))
    changes = list(change_rows(rows))
    upload("day.csv", csv_bytes(rows))
    upload("changes.csv", csv_bytes(changes))
    for key in ("day.csv", "changes.csv"):
        app.lambda_handler({"bucket": BUCKET, "key": key}, FakeLambdaContext())
    assert changes
    assert table_contents() == {key: as_item(row) for key, row in expected_state(rows, changes).items()}


def test_parallel_writes_keep_the_last_row_of_a_key_repeated_within_one_batch(app: Any) -> None:
    rows = list(order_rows(DAY, 150))
    repeated = [{**rows[0], "amount": f"{n}.00"} for n in range(1, 31)]
    upload("repeats.csv", csv_bytes(rows[:40] + repeated + rows[40:]))
    result = app.lambda_handler({"bucket": BUCKET, "key": "repeats.csv"}, FakeLambdaContext())
    assert (result["rows_loaded"], result["rows_rejected"]) == (len(rows) + len(repeated), 0)
    assert table_contents()[(rows[0]["order_id"], rows[0]["item_id"])]["amount"] == Decimal("30")
    assert table_contents() == {key: as_item(row) for key, row in expected_state(rows, repeated).items()}


def key_of(row: PendingItem) -> tuple[str, str]:
    return row.item["order_id"], row.item["item_id"]


@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from("12")), max_size=300))
def test_a_batch_is_grouped_into_whole_requests_each_holding_every_row_of_its_keys(keys: list[tuple[int, str]]) -> None:
    rows = [PendingItem(str(n), {"order_id": str(order), "item_id": item}) for n, (order, item) in enumerate(keys)]
    groups = group_into_requests(rows)
    assert sorted(int(row.ref) for group in groups for row in group) == list(range(len(rows)))
    keys_of_group = [{key_of(row) for row in group} for group in groups]
    distinct = len({key_of(row) for row in rows})
    # Whole requests: 25 distinct keys in every group but the last, and no key in two groups.
    assert [len(found) for found in keys_of_group] == [min(25, distinct - start) for start in range(0, distinct, 25)]
    assert len(set().union(*keys_of_group)) == distinct
    # Each key's rows in file order (BatchWriter keeps the last), keys in the order of their last rows.
    refs_of_key: dict[tuple[str, str], list[int]] = {}
    for row in (row for group in groups for row in group):
        refs_of_key.setdefault(key_of(row), []).append(int(row.ref))
    assert all(refs == sorted(refs) for refs in refs_of_key.values())
    last_rows = [refs[-1] for refs in refs_of_key.values()]
    assert last_rows == sorted(last_rows)


def counted_loader(rows_per_write: int, write_threads: int) -> tuple[OrderCsvLoader, list[list[dict[str, Any]]]]:
    """The loader as the function builds it, and the BatchWriteItem requests it sends, as they leave."""
    writer = order_table_writer(TABLE)
    sent: list[list[dict[str, Any]]] = []
    writer.client.meta.events.register(
        "before-send.dynamodb.BatchWriteItem",
        lambda request, **_: sent.append(json.loads(request.body)["RequestItems"][TABLE]),
    )
    loader = OrderCsvLoader(boto3.client("s3"), writer, rows_per_write=rows_per_write, write_threads=write_threads)
    return loader, sent


def load_file(loader: OrderCsvLoader, key: str) -> Any:
    return loader.load(LoadRequest(BUCKET, key), lambda: 900.0, 30.0)


@pytest.mark.slow
def test_four_threads_send_40_full_requests_per_1000_rows(app: Any) -> None:
    rows = list(order_rows(DAY, 700))[:1000]
    assert len(rows) == len(expected_state(rows)) == 1000
    upload("thousand.csv", csv_bytes(rows))
    loader, sent = counted_loader(rows_per_write=500, write_threads=4)  # as deployed
    result = load_file(loader, "thousand.csv")
    assert (result.rows_loaded, result.rows_rejected) == (1000, 0)
    assert [len(request) for request in sent] == [25] * 40
    assert table_contents() == {key: as_item(row) for key, row in expected_state(rows).items()}


def batch_requests(rows: list[dict[str, str]], rows_per_write: int) -> int:
    """Requests to write `rows` 25 distinct keys at a time within each batch of `rows_per_write`."""
    batches = [rows[start : start + rows_per_write] for start in range(0, len(rows), rows_per_write)]
    return sum(-(-len(expected_state(batch)) // 25) for batch in batches)


@pytest.mark.slow
def test_repeated_keys_cost_four_threads_no_more_requests_than_one(app: Any) -> None:
    rows = list(order_rows(DAY, 200))[:300]
    # Every 20 rows, a revision of every second of them: 30 lines naming 20 keys.
    mixed = [
        line
        for start in range(0, len(rows), 20)
        for line in rows[start : start + 20] + [{**row, "amount": "1.00"} for row in rows[start : start + 20 : 2]]
    ]
    upload("mixed.csv", csv_bytes(mixed))
    expected_requests = batch_requests(mixed, 100)
    assert expected_requests < len(mixed) / 25  # the file repeats keys within batches
    for threads in (1, 4):
        loader, sent = counted_loader(rows_per_write=100, write_threads=threads)
        result = load_file(loader, "mixed.csv")
        assert (result.rows_loaded, result.rows_rejected, len(sent)) == (len(mixed), 0, expected_requests)
        assert table_contents() == {key: as_item(row) for key, row in expected_state(mixed).items()}


def test_the_last_row_of_a_key_wins_across_requests_and_batches_even_when_older_ones_are_slow(app: Any) -> None:
    rows = list(order_rows(DAY, 200))[:300]
    first, second = [(row["order_id"], row["item_id"]) for row in rows[:2]]
    # Batches of 100 lines: the first key three times in the first batch (in different stretches of
    # 25 lines), the second key at the end of the first batch and again early in the second.
    versions = [(5, rows[0], "1"), (30, rows[0], "2"), (60, rows[0], "3"), (95, rows[1], "7"), (105, rows[1], "8")]
    lines = list(rows)
    for position, row, amount in versions:
        lines.insert(position, {**row, "amount": f"{amount}.00"})
    stale = {(first, Decimal(1)), (first, Decimal(2)), (second, Decimal(7))}
    loader, _ = counted_loader(rows_per_write=100, write_threads=4)
    delayed: list[Decimal] = []

    def delay_older_versions(request: Any, **_: Any) -> None:
        # An older version still travelling while a newer one is written would land last.
        for put in json.loads(request.body)["RequestItems"][TABLE]:
            item = put["PutRequest"]["Item"]
            version = (item["order_id"]["S"], item["item_id"]["S"]), Decimal(item["amount"]["N"])
            if version in stale:
                delayed.append(version[1])
                time.sleep(0.3)

    loader.writer.client.meta.events.register("before-send.dynamodb.BatchWriteItem", delay_older_versions)
    upload("versions.csv", csv_bytes(lines))
    result = load_file(loader, "versions.csv")
    assert (result.rows_loaded, result.rows_rejected) == (len(lines), 0)
    contents = table_contents()
    assert (contents[first]["amount"], contents[second]["amount"]) == (Decimal("3"), Decimal("8"))
    assert contents == {key: as_item(row) for key, row in expected_state(lines).items()}
    assert delayed == [7]  # the first batch's version of the second key; the first key's older ones are collapsed


class WriterFailingOneRequest:
    """A writer that raises for the request holding `ref` and takes a while over every other one."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.finished: list[str] = []

    def write(self, items: list[PendingItem], deadline: float) -> WriteReport:
        refs = [item.ref for item in items]
        if self.ref in refs:
            raise RuntimeError("the writer failed")
        time.sleep(0.2)
        self.finished += refs
        return WriteReport(written=refs)


def test_a_failed_request_surfaces_only_after_the_rest_of_its_batch_has_ended(app: Any) -> None:
    upload("failing.csv", csv_bytes(list(order_rows(DAY, 100))[:100]))
    writer = WriterFailingOneRequest(ref="2")  # the first row, on line 2
    loader = OrderCsvLoader(boto3.client("s3"), writer, rows_per_write=100, write_threads=4)
    with pytest.raises(RuntimeError, match="the writer failed"):
        load_file(loader, "failing.csv")
    # Nothing is still in flight when the invocation fails: a retry cannot be overtaken by it.
    assert sorted(writer.finished, key=int) == [str(line) for line in range(27, 102)]


ORDER_KEYS = st.tuples(st.integers(0, 29).map(str), st.sampled_from("123"))
FILE_LINES = st.lists(
    st.one_of(
        st.tuples(st.just("row"), ORDER_KEYS, st.integers(1, 99_999)),
        st.tuples(st.just("bad"), ORDER_KEYS, st.just(0)),
        st.tuples(st.just("blank"), st.just(("", "")), st.just(0)),
    ),
    max_size=250,
)


def order_line(kind: str, key: tuple[str, str], cents: int) -> bytes:
    if kind == "blank":
        return b""
    amount = f"{cents // 100}.{cents % 100:02d}" if kind == "row" else "oops"
    return f"{key[0]},{key[1]},C-1,Kindle,{amount},USD,2020-09-02T10:00:00Z,2020-09-02".encode()


def fresh_table() -> None:
    dynamodb = boto3.client("dynamodb")
    dynamodb.delete_table(TableName=TABLE)
    dynamodb.get_waiter("table_not_exists").wait(TableName=TABLE, WaiterConfig={"Delay": 0.05})
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("order_id", "item_id")],
        KeySchema=[{"AttributeName": "order_id", "KeyType": "HASH"}, {"AttributeName": "item_id", "KeyType": "RANGE"}],
    )


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(FILE_LINES, st.sampled_from([25, 60, 120]))
def test_any_file_with_repeated_keys_leaves_the_last_good_row_of_each_key_and_accounts_for_every_line(
    app: Any, lines: list[tuple[str, tuple[str, str], int]], rows_per_write: int
) -> None:
    fresh_table()
    upload("fuzz.csv", csv_bytes([]) + b"\n".join(order_line(*line) for line in lines))
    loader, sent = counted_loader(rows_per_write=rows_per_write, write_threads=4)
    result = load_file(loader, "fuzz.csv")
    bad_lines = [number for number, (kind, _, _) in enumerate(lines, start=2) if kind == "bad"]
    good = [(key, cents) for kind, key, cents in lines if kind == "row"]
    assert (result.rows_loaded, result.rows_rejected) == (len(good), len(bad_lines))
    assert [row.line for row in result.rejects] == bad_lines
    assert {key: row["amount"] for key, row in table_contents().items()} == {
        key: Decimal(cents) / 100 for key, cents in good
    }
    assert all(len(request) <= 25 for request in sent)


BAD_FILE = (
    b"order_id,item_id,customer_id,product,amount,currency,time_stamp,transaction_date\r\n"
    b"1,1,C-1,Kindle,10.00,USD,2020-09-02T10:00:00Z,2020-09-02\r\n"
    b"2,1,C-2,Kindle,ten,USD,2020-09-02T10:00:00Z,2020-09-02\r\n"
    b"3,1,C-3,Kindle,10.00,USD,2020-09-02T10:00:00Z\r\n"
    b",1,C-4,Kindle,10.00,USD,2020-09-02T10:00:00Z,2020-09-02\r\n"
    b"\r\n"
    b'5,1,,"Echo, 4th gen",1.5,USD,2020-09-02 10:00:00+02:00,2020-09-02\r\n'
    b"6,1,C-6,Kindle,10.001,USD,2020-09-02T10:00:00Z,2020-09-02\r\n"
    b"7,1,C-7,Kindle,10.00,usd,2020-09-02T10:00:00Z,2020-09-02\r\n"
    b"8,1,C-8,Kindle,10.00,USD,noon,2020-09-02\r\n"
    b"9,1,C-9,Kindle,10.00,USD,2020-09-02T10:00:00Z,2020-09-31\r\n"
    b'10,1,C-10,"Kindle,10.00,USD,2020-09-02T10:00:00Z,2020-09-02\r\n'
    b"11,,C-11,Kindle,10.00,USD,2020-09-02T10:00:00Z,2020-09-02"
)
BAD_LINES = {
    3: "amount 'ten' is not a number",
    4: "expected 8 fields, found 7",
    5: "missing key order_id",
    8: "amount '10.001' has more than 2 decimal places",
    9: "currency 'usd' is not a three-letter ISO 4217 code",
    10: "time_stamp 'noon' is not an ISO 8601 date-time",
    11: "transaction_date '2020-09-31' is not a YYYY-MM-DD date",
    12: "broken quoting",
    13: "missing key item_id",
}


def test_bad_rows_are_reported_by_line_and_reason_and_good_rows_load(app: Any) -> None:
    upload("mixed.csv", BAD_FILE)
    result = app.lambda_handler({"bucket": BUCKET, "key": "mixed.csv"}, FakeLambdaContext())
    [file_result] = result["files"]
    assert (result["rows_loaded"], result["rows_rejected"]) == (2, len(BAD_LINES))
    assert file_result["rejects_key"] == "mixed.csv.rejects.json"
    reported = {
        row["line"]: row["reason"] for row in file_result["rejects"] + read_object("mixed.csv.rejects.json")["rows"]
    }
    assert sorted(reported) == sorted(BAD_LINES)
    assert all(reported[line].startswith(BAD_LINES[line]) for line in BAD_LINES)
    rejects = read_object("mixed.csv.rejects.json")
    assert (rejects["source"], rejects["rows_rejected"]) == (f"s3://{BUCKET}/mixed.csv", len(BAD_LINES))
    assert rejects["rows"][0]["text"] == "2,1,C-2,Kindle,ten,USD,2020-09-02T10:00:00Z,2020-09-02"
    assert table_contents() == {
        ("1", "1"): {
            "order_id": "1",
            "item_id": "1",
            "customer_id": "C-1",
            "product": "Kindle",
            "amount": Decimal("10"),
            "currency": "USD",
            "time_stamp": "2020-09-02T10:00:00.000Z",
            "transaction_date": "2020-09-02",
        },
        ("5", "1"): {
            "order_id": "5",
            "item_id": "1",
            "product": "Echo, 4th gen",
            "amount": Decimal("1.5"),
            "currency": "USD",
            "time_stamp": "2020-09-02T08:00:00.000Z",
            "transaction_date": "2020-09-02",
        },
    }


def test_a_clean_rerun_removes_the_stale_rejects_object(app: Any) -> None:
    upload("fixed.csv", BAD_FILE)
    app.lambda_handler({"bucket": BUCKET, "key": "fixed.csv"}, FakeLambdaContext())
    assert object_exists("fixed.csv.rejects.json")
    upload("fixed.csv", csv_bytes(order_rows(DAY, 3)))
    app.lambda_handler({"bucket": BUCKET, "key": "fixed.csv"}, FakeLambdaContext())
    assert not object_exists("fixed.csv.rejects.json")


def delete_markers(key: str) -> list[dict[str, Any]]:
    return boto3.client("s3").list_object_versions(Bucket=BUCKET, Prefix=key).get("DeleteMarkers", [])


def test_a_clean_load_into_a_versioned_bucket_adds_no_delete_marker(app: Any) -> None:
    # Real S3 adds a delete marker for every DELETE in a versioned bucket, even of a key that is not
    # there; moto adds none for a missing key, so the DELETE requests themselves are counted too.
    deletes: list[str] = []
    app.csv_loader.loader.s3.meta.events.register(
        "before-call.s3.DeleteObject", lambda params, **_: deletes.append(params["url_path"])
    )
    boto3.client("s3").put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    upload("clean.csv", csv_bytes(order_rows(DAY, 3)))
    for _ in range(2):
        app.lambda_handler({"bucket": BUCKET, "key": "clean.csv"}, FakeLambdaContext())
    assert (deletes, delete_markers("clean.csv.rejects.json")) == ([], [])
    upload("clean.csv", BAD_FILE)
    app.lambda_handler({"bucket": BUCKET, "key": "clean.csv"}, FakeLambdaContext())
    upload("clean.csv", csv_bytes(order_rows(DAY, 3)))
    app.lambda_handler({"bucket": BUCKET, "key": "clean.csv"}, FakeLambdaContext())
    assert len(deletes) == len(delete_markers("clean.csv.rejects.json")) == 1  # the stale rejects object only


def test_a_file_without_the_order_header_is_rejected_at_line_one(app: Any) -> None:
    upload("wrong.csv", b"id,amount\n1,2\n")
    result = app.lambda_handler({"bucket": BUCKET, "key": "wrong.csv"}, FakeLambdaContext())
    assert (result["rows_loaded"], result["rows_rejected"]) == (0, 1)
    [reject] = read_object("wrong.csv.rejects.json")["rows"]
    assert reject["line"] == 1 and "missing" in reject["reason"]
    assert table_contents() == {}


def test_the_s3_put_event_loads_its_url_encoded_key_and_ignores_other_keys(app: Any) -> None:
    event = load_event("s3-put-orders-csv.json")
    rows = list(order_rows(DAY, 10))
    upload("incoming/orders 2020-09-02.csv", csv_bytes(rows))
    other = json.loads(json.dumps(event["Records"][0]))
    other["s3"]["object"]["key"] = "incoming/orders.csv.rejects.json"
    event["Records"].append(other)
    result = app.lambda_handler(event, FakeLambdaContext())
    assert result["rows_loaded"] == len(rows)
    assert result["files"][0]["key"] == "incoming/orders 2020-09-02.csv"
    assert result["skipped"] == [f"s3://{BUCKET}/incoming/orders.csv.rejects.json"]
    assert len(table_contents()) == len(rows)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"bucket": BUCKET},
        {"bucket": BUCKET, "key": "a.csv", "start_byte": -1},
        {"bucket": BUCKET, "key": "a.csv", "start_byte": 10},
    ],
)
def test_invalid_requests_are_refused_with_the_problem_named(app: Any, payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"bucket|start_byte|columns"):
        app.lambda_handler(payload, FakeLambdaContext())


def test_a_missing_object_on_a_first_segment_is_reported_not_retried(app: Any) -> None:
    result = app.lambda_handler({"bucket": BUCKET, "key": "gone.csv"}, FakeLambdaContext())
    [file_result] = result["files"]
    assert "does not exist" in file_result["error"]
    assert (file_result["rows_loaded"], file_result["continued"]) == (0, False)


def first_segment_handing_over(app: Any, key: str, rows: int) -> dict[str, Any]:
    """Upload `rows` orders as `key`, load a short first segment, and return the continuation it hands over."""
    upload(key, csv_bytes(order_rows(DAY, rows)))
    handed_over: list[LoadRequest] = []
    app.csv_loader.continue_load = lambda request, _: handed_over.append(request)
    app.lambda_handler({"bucket": BUCKET, "key": key}, ShortLivedContext(checks=2))
    [continuation] = handed_over
    return json.loads(json.dumps(continuation.to_payload()))


def test_a_continuation_of_a_replaced_object_fails_the_invocation_naming_the_resume_point(app: Any) -> None:
    payload = first_segment_handing_over(app, "moving.csv", 100)
    upload("moving.csv", csv_bytes(order_rows(DAY, 5)))
    with pytest.raises(LoadFailed, match=r"moving\.csv was replaced after line \d+") as failure:
        app.lambda_handler(payload, FakeLambdaContext())
    assert f"resume at byte {payload['start_byte']}, line {payload['start_line']}" in str(failure.value)
    assert failure.value.request.start_byte == payload["start_byte"]


def test_a_continuation_of_a_deleted_object_fails_the_invocation(app: Any) -> None:
    payload = first_segment_handing_over(app, "deleted.csv", 100)
    boto3.client("s3").delete_object(Bucket=BUCKET, Key="deleted.csv")
    with pytest.raises(LoadFailed, match=r"deleted\.csv was deleted after line \d+.*resume at byte"):
        app.lambda_handler(payload, FakeLambdaContext())


class ThrottledWriter:
    """DynamoDB refusing every write for now (throughput exceeded): nothing is ever committed."""

    def write(self, items: list[PendingItem], deadline: float) -> WriteReport:
        return WriteReport(transient={item.ref: "ProvisionedThroughputExceededException" for item in items})


def test_a_load_that_makes_no_progress_fails_the_invocation_instead_of_giving_up_quietly(app: Any) -> None:
    upload("throttled.csv", csv_bytes(order_rows(DAY, 50)))
    app.csv_loader.loader.writer = ThrottledWriter()
    handed_over: list[dict[str, Any]] = []
    app.csv_loader.continue_load = lambda request, _: handed_over.append(json.loads(json.dumps(request.to_payload())))
    app.lambda_handler({"bucket": BUCKET, "key": "throttled.csv"}, FakeLambdaContext())
    for _ in range(MAX_STALLED_SEGMENTS):
        app.lambda_handler(handed_over[-1], FakeLambdaContext())
    last_payload = handed_over[-1]
    with pytest.raises(LoadFailed, match=r"throttled\.csv: no progress in \d+ consecutive segments") as failure:
        app.lambda_handler(last_payload, FakeLambdaContext())
    # Lambda retries and then dead-letters exactly this payload: it still resumes where the load stopped.
    assert failure.value.request.start_byte == last_payload["start_byte"] > 0
    assert len(handed_over) == MAX_STALLED_SEGMENTS + 1
    assert table_contents() == {}


class ShortLivedContext(FakeLambdaContext):
    """A context whose time runs low after `checks` looks at the clock: a fake short deadline."""

    def __init__(self, checks: int) -> None:
        super().__init__(function_name="CsvLoader")
        self.checks = checks

    def get_remaining_time_in_millis(self) -> int:
        self.checks -= 1
        return 60_000 if self.checks > 0 else 1_000


def test_a_file_too_big_for_one_invocation_continues_where_it_stopped(app: Any, monkeypatch: Any) -> None:
    rows = list(order_rows(DAY, 500))
    header, *lines = csv_bytes(rows).splitlines(keepends=True)
    bad = b"x,1,C,P,oops,USD,2020-09-02T00:00:00Z,2020-09-02\n"
    upload("big.csv", b"".join([header, bad, *lines, bad]))
    handed_over: list[dict[str, Any]] = []
    monkeypatch.setattr(app.csv_loader, "continue_load", lambda request, _: handed_over.append(request.to_payload()))
    results = [app.lambda_handler({"bucket": BUCKET, "key": "big.csv"}, ShortLivedContext(checks=5))]
    while handed_over:
        payload = json.loads(json.dumps(handed_over.pop()))  # as Lambda would deliver it
        results.append(app.lambda_handler(payload, ShortLivedContext(checks=5)))
    assert len(results) > 3
    assert [r["files"][0]["continued"] for r in results] == [True] * (len(results) - 1) + [False]
    assert [r["files"][0]["segment"] for r in results] == list(range(1, len(results) + 1))
    last = results[-1]
    assert (last["rows_loaded"], last["rows_rejected"]) == (len(rows), 2)
    assert [row["line"] for row in read_object("big.csv.rejects.json")["rows"]] == [2, len(rows) + 3]
    assert table_contents() == {key: as_item(row) for key, row in expected_state(rows).items()}


class GeneratedObject:
    """A raw stream producing a large CSV on the fly, so the test itself holds no whole file."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._pending = b""
        self.size = 0

    def read(self, amount: int | None = None) -> bytes:
        while amount is None or len(self._pending) < amount:
            line = next(self._lines, None)
            if line is None:
                break
            self._pending += line
        chunk, self._pending = (
            self._pending[: amount or len(self._pending)],
            self._pending[amount or len(self._pending) :],
        )
        self.size += len(chunk)
        return chunk

    def close(self) -> None:
        self._lines = iter(())


class GeneratedS3:
    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.objects: list[GeneratedObject] = []

    def get_object(self, **_: Any) -> dict[str, Any]:
        raw = GeneratedObject(csv_lines(order_rows(DAY, self.rows)))
        self.objects.append(raw)
        return {"Body": StreamingBody(raw, None), "ContentLength": 10**12, "ETag": '"generated"'}

    def head_object(self, **_: Any) -> None:
        raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")

    def delete_object(self, **_: Any) -> None:
        raise AssertionError("a clean load must not delete a rejects object that does not exist")


class CountingWriter:
    def __init__(self) -> None:
        self.items = 0

    def write(self, items: list[PendingItem], deadline: float) -> WriteReport:
        self.items += len(items)
        return WriteReport(written=[item.ref for item in items])


# Measured in a fresh interpreter: tracemalloc counts every thread's allocations, and this process
# runs moto's server (and whatever earlier tests left running) beside the loader.
MEASURE_LOAD = """
import json, sys, tracemalloc
sys.path[:0] = [{here!r}, {tests!r}]
from test_csv_loader import CountingWriter, GeneratedS3
from tributary_shared.orders.loader import LoadRequest, OrderCsvLoader
s3, writer = GeneratedS3(rows={orders}), CountingWriter()
loader = OrderCsvLoader(s3, writer, rows_per_write=500)
tracemalloc.start()
result = loader.load(LoadRequest("bucket", "big.csv"), lambda: 600.0, 15.0)
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"peak": peak, "size": s3.objects[0].size, "loaded": result.rows_loaded, "written": writer.items}}))
"""


@pytest.mark.slow
def test_a_large_file_streams_through_in_bounded_memory() -> None:
    code = MEASURE_LOAD.format(here=str(Path(__file__).parent), tests=str(Path(__file__).parents[2]), orders=100_000)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    measured = json.loads(run.stdout.splitlines()[-1])
    assert measured["written"] == measured["loaded"] > 190_000
    assert measured["size"] > 15_000_000
    # The loader holds one read chunk and one write batch at a time, whatever the file's size.
    assert measured["peak"] < 2_000_000 < measured["size"] / 8, measured


@pytest.mark.parametrize(
    ("time_stamp", "expected"),
    [
        ("0001-01-01T00:00:00+01:00", "outside the years 1 to 9999"),
        ("9999-12-31T23:59:59-01:00", "outside the years 1 to 9999"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
    ],
)
def test_time_stamps_at_the_edges_of_the_calendar_are_typed_or_rejected(time_stamp: str, expected: str) -> None:
    text = f"1,1,C-1,Kindle,10.00,USD,{time_stamp},2020-09-02".encode()
    parsed = parse_row(Line(2, 0, len(text), text), ORDER_COLUMNS)
    outcome = parsed.reason if isinstance(parsed, RejectedRow) else parsed["time_stamp"]
    assert expected in outcome


def test_lines_keep_their_numbers_and_offsets_across_chunk_boundaries() -> None:
    data = b"a,b\r\nccc\n\nlast"
    chunks = [data[i : i + 3] for i in range(0, len(data), 3)]
    lines = list(iter_lines(chunks, start_byte=100, start_line=7))
    assert [(ln.number, ln.start_byte, ln.end_byte, ln.text) for ln in lines] == [
        (7, 100, 105, b"a,b\r"),
        (8, 105, 109, b"ccc"),
        (9, 109, 110, b""),
        (10, 110, 114, b"last"),
    ]


def test_an_overlong_line_is_cut_and_flagged_without_buffering_it() -> None:
    from tributary_shared.orders.csv_rows import MAX_LINE_BYTES

    data = [b"x" * 50_000] * 4 + [b"\nok\n"]
    long_line, short_line = list(iter_lines(data))
    assert long_line.too_long and len(long_line.text) == MAX_LINE_BYTES and long_line.end_byte == 200_001
    assert (short_line.number, short_line.start_byte, short_line.text) == (2, 200_001, b"ok")


HOSTILE_AMOUNTS = {
    "1e999999999": "is outside DynamoDB's range",
    "NaN": "is not a number",
    "-Infinity": "is not a number",
    "1" * 39: "39 significant digits",
    "1E-131": "is outside DynamoDB's range",
    "0.001": "more than 2 decimal places",
    "1_000": "is not a number",
    "\u0661\u0662": "is not a number",
}


def test_hostile_cells_are_rejected_by_line_and_every_good_row_loads(app: Any) -> None:
    rows = list(order_rows(DAY, 8))[:18]
    header, *good = csv_bytes(rows).splitlines(keepends=True)
    hostile = [
        f"h-{n},1,C,P,{amount},USD,2020-09-02T00:00:00Z,2020-09-02\n".encode()
        for n, amount in enumerate(HOSTILE_AMOUNTS)
    ]
    hostile += [
        b"h-date,1,C,P,1.00,USD,2020-09-02T00:00:00Z,2020-W36-3\n",
        ("\u00e9" * 1025 + ",1,C,P,1.00,USD,2020-09-02T00:00:00Z,2020-09-02\n").encode(),
        b"h-utf8,1,C,P\xed\xa0\x80,1.00,USD,2020-09-02T00:00:00Z,2020-09-02\n",
    ]
    negative_zero = b"z,1,C,P,-0.00,USD,2020-09-02T00:00:00Z,2020-09-02\n"
    lines = [header, good[0], hostile[0], *good[1:9], *hostile[1:], *good[9:], negative_zero]
    upload("hostile.csv", b"".join(lines))
    result = app.lambda_handler({"bucket": BUCKET, "key": "hostile.csv"}, FakeLambdaContext())
    [file_result] = result["files"]
    assert (result["rows_loaded"], result["rows_rejected"], file_result["error"]) == (len(rows) + 1, len(hostile), None)
    bad_lines = [number for number, line in enumerate(lines, start=1) if line in hostile]
    stored = read_object("hostile.csv.rejects.json")["rows"]
    assert [row["line"] for row in stored] == bad_lines
    reasons = [row["reason"] for row in stored]
    assert all(expected in reason for expected, reason in zip(HOSTILE_AMOUNTS.values(), reasons, strict=False))
    assert reasons[-3:] == [
        "transaction_date '2020-W36-3' is not a YYYY-MM-DD date",
        "order_id is longer than DynamoDB's 2048 bytes for this key",
        "line is not valid UTF-8",
    ]
    assert file_result["rejects"] == stored[:10]
    table = table_contents()
    assert table == {**{key: as_item(row) for key, row in expected_state(rows).items()}, ("z", "1"): table["z", "1"]}
    amount = table["z", "1"]["amount"]
    assert amount == 0 and not amount.is_signed()  # -0.00 is stored as zero


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (b"order_id,order_id,customer_id,product,amount,currency,time_stamp,transaction_date", "repeated: 'order_id'"),
        (b"order_id,item_id,product,amount,currency,time_stamp,transaction_date", "missing: 'customer_id'"),
        (b"order_id,item_id,customer_id,product,amount,currency,time_stamp,transaction_date,x", "unknown: 'x'"),
        (b"order_id,item_id\x00,customer_id,product,amount,currency,time_stamp,transaction_date", "'item_id\\x00'"),
        (b"\xff\xfeorder_id,item_id", "header is not valid UTF-8: invalid start byte at byte 0"),
        (b"order_id," * 10_000, "header is longer than 65536 bytes"),
        (b",".join(f"c{n}".encode() for n in range(5000)), "'c0', 'c1', 'c10', 'c100', 'c1000' and 4995 more"),
    ],
)
def test_a_hostile_header_fails_the_file_with_one_clear_error(app: Any, header: bytes, problem: str) -> None:
    upload("header.csv", header + b"\n" + csv_bytes(order_rows(DAY, 3)).split(b"\n", 1)[1])
    result = app.lambda_handler({"bucket": BUCKET, "key": "header.csv"}, FakeLambdaContext())
    [file_result] = result["files"]
    assert problem in file_result["error"] and len(file_result["error"]) < 500
    assert (result["rows_loaded"], result["rows_rejected"]) == (0, 1)
    assert [row["line"] for row in read_object("header.csv.rejects.json")["rows"]] == [1]
    assert table_contents() == {}


def test_a_byte_order_mark_before_the_header_is_not_a_column_name(app: Any) -> None:
    rows = list(order_rows(DAY, 3))
    upload("bom.csv", b"\xef\xbb\xbf" + csv_bytes(rows))
    result = app.lambda_handler({"bucket": BUCKET, "key": "bom.csv"}, FakeLambdaContext())
    assert (result["rows_loaded"], result["rows_rejected"], result["files"][0]["error"]) == (len(rows), 0, None)


@pytest.mark.parametrize(
    "event",
    [{"Records": [{"s3": []}]}, {"Records": [{"s3": {"bucket": "b", "object": {"key": 5}}}]}, {"Records": [7]}],
)
def test_a_malformed_s3_event_is_refused_with_the_problem_named(app: Any, event: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"lacks s3\.bucket\.name or s3\.object\.key"):
        app.lambda_handler(event, FakeLambdaContext())
