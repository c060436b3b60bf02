"""The order lake's Firehose transform: contract, typing of every column, nulls, removes, failures, size."""

import base64
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import FakeLambdaContext, item_image, load_event, load_handler_module

from tributary_shared.orders.images import (
    ORDER_LAKE_COLUMNS,
    PARTITION_COLUMN,
    LakeColumn,
    coerce,
    deserialize_image,
)
from tributary_shared.orders.lake_rows import transform_order_changes

TABLE = "OrderTransactions"
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024
EVENT_FILES = [
    "firehose-insert.json",
    "firehose-modify.json",
    "firehose-remove.json",
    "firehose-other-table.json",
    "firehose-malformed.json",
]
SEQUENCE = "49614321947518637821345678901234567890123456789012340"


@pytest.fixture(scope="module")
def app() -> Any:
    return load_handler_module("firehose_transform", SOURCE_TABLE_NAME=TABLE)


def handle(app: Any, event: dict[str, Any]) -> dict[str, Any]:
    return app.lambda_handler(event, FakeLambdaContext(function_name="FirehoseTransform"))


def rows_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(base64.b64decode(r["data"])) for r in response["records"] if r["result"] == "Ok"]




def change_record(
    event_name: str = "INSERT",
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    table: str = TABLE,
    created_ms: int = 1599041700123,
    sequence: str = SEQUENCE,
    record_id: str = "r-1",
) -> dict[str, Any]:
    stream_record: dict[str, Any] = {
        "ApproximateCreationDateTime": created_ms,
        "ApproximateCreationDateTimePrecision": "MILLISECOND",
        "Keys": {"order_id": {"S": "o-1"}, "item_id": {"S": "i-1"}},
        "SizeBytes": 100,
    }
    if new is not None:
        stream_record["NewImage"] = new
    if old is not None:
        stream_record["OldImage"] = old
    change = {
        "eventName": event_name,
        "tableName": table,
        "eventSource": "aws:dynamodb",
        "recordFormat": "application/json",
        "dynamodb": stream_record,
    }
    return {
        "recordId": record_id,
        "approximateArrivalTimestamp": 1599041700456,
        "data": base64.b64encode(json.dumps(change).encode()).decode(),
        "kinesisRecordMetadata": {"sequenceNumber": sequence, "shardId": "shardId-000000000000"},
    }


def firehose_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"invocationId": "inv", "deliveryStreamArn": "arn:ds", "region": "us-east-1", "records": list(records)}


def test_insert_event_becomes_one_row_with_exactly_the_glue_columns(app: Any) -> None:
    event = load_event("firehose-insert.json")
    response = handle(app, event)
    [entry] = response["records"]
    assert entry["result"] == "Ok"
    assert entry["metadata"] == {"partitionKeys": {"transaction_date": "2020-09-02"}}
    [row] = rows_of(response)
    assert row == {
        "order_id": "3801",
        "item_id": "23",
        "customer_id": "C-1001",
        "product": "Kindle",
        "amount": 12.5,
        "currency": "USD",
        "time_stamp": "2020-09-02T10:15:00.000Z",
        "change_type": "INSERT",
        "change_time": "2020-09-02T10:15:00.123Z",
        "change_sequence": event["records"][0]["kinesisRecordMetadata"]["sequenceNumber"],
    }
    assert list(row) == [column.name for column in ORDER_LAKE_COLUMNS]


def test_modify_event_carries_the_new_image(app: Any) -> None:
    [row] = rows_of(handle(app, load_event("firehose-modify.json")))
    assert (row["change_type"], row["product"], row["amount"]) == ("MODIFY", "Kindle Paperwhite", 15.0)
    assert row["change_time"] == "2020-09-02T11:15:00.789Z"


def test_remove_event_keeps_the_last_state_from_the_old_image(app: Any) -> None:
    response = handle(app, load_event("firehose-remove.json"))
    [entry] = response["records"]
    assert entry["metadata"]["partitionKeys"]["transaction_date"] == "2020-09-02"
    [row] = rows_of(response)
    assert (row["change_type"], row["order_id"], row["item_id"], row["amount"]) == ("REMOVE", "3801", "23", 15.0)


def test_other_tables_are_dropped(app: Any) -> None:
    event = load_event("firehose-other-table.json")
    response = handle(app, event)
    assert [(r["recordId"], r["result"]) for r in response["records"]] == [(event["records"][0]["recordId"], "Dropped")]


def test_malformed_records_fail_individually_with_their_original_data(app: Any) -> None:
    event = load_event("firehose-malformed.json")
    response = handle(app, event)
    assert [r["recordId"] for r in response["records"]] == [r["recordId"] for r in event["records"]]
    assert {r["result"] for r in response["records"]} == {"ProcessingFailed"}
    assert [r["data"] for r in response["records"]] == [r["data"] for r in event["records"]]
    assert all(set(r) == {"recordId", "result", "data"} for r in response["records"])


def test_every_record_id_answered_once_in_order_in_a_mixed_batch(app: Any) -> None:
    records = [
        change_record(new=item_image(), record_id="ok"),
        change_record(new=item_image(), table="Payments", record_id="other"),
        {"recordId": "garbage", "data": "%%%"},
        change_record("REMOVE", old=item_image(), record_id="removed"),
    ]
    response = handle(app, firehose_event(*records))
    assert [(r["recordId"], r["result"]) for r in response["records"]] == [
        ("ok", "Ok"),
        ("other", "Dropped"),
        ("garbage", "ProcessingFailed"),
        ("removed", "Ok"),
    ]


def test_absent_and_null_attributes_become_nulls_and_undeclared_ones_are_dropped() -> None:
    image = item_image(customer_id=None, product={"NULL": True}, loyalty_tier={"S": "gold"}, tags={"SS": ["a"]})
    response, _ = transform_order_changes(firehose_event(change_record(new=image)), TABLE)
    [row] = rows_of(response)
    assert row["customer_id"] is None and row["product"] is None
    assert "loyalty_tier" not in row and "tags" not in row and "transaction_date" not in row


def test_remove_with_keys_only_still_needs_a_partition() -> None:
    response, summary = transform_order_changes(firehose_event(change_record("REMOVE")), TABLE)
    assert response["records"][0]["result"] == "ProcessingFailed"
    assert "transaction_date" in summary.failed["r-1"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"amount": {"N": "1.005"}}, "more than 2 decimal places"),
        ({"amount": {"N": "10000000000"}}, "does not fit decimal(12,2)"),
        ({"amount": {"S": "twelve"}}, "column amount"),
        ({"amount": {"SS": ["1"]}}, "cannot be stored"),
        ({"time_stamp": {"S": "yesterday"}}, "column time_stamp"),
        ({"transaction_date": {"S": "2020-02-30"}}, "not a YYYY-MM-DD date"),
        ({"transaction_date": {"N": "20200902"}}, "not a YYYY-MM-DD date"),
        ({"amount": {"Q": "1"}}, "not a valid DynamoDB typed value"),
    ],
)
def test_values_that_do_not_fit_the_glue_schema_fail_with_the_column_named(
    overrides: dict[str, Any], reason: str
) -> None:
    response, summary = transform_order_changes(firehose_event(change_record(new=item_image(**overrides))), TABLE)
    assert response["records"][0]["result"] == "ProcessingFailed"
    assert reason in summary.failed["r-1"]


def test_every_attribute_type_the_schema_uses_is_coerced() -> None:
    image = item_image(
        customer_id={"N": "1001"},
        product={"BOOL": True},
        amount={"S": "7.25"},
        time_stamp={"N": "1599041700123"},
    )
    [row] = rows_of(transform_order_changes(firehose_event(change_record(new=image)), TABLE)[0])
    assert (row["customer_id"], row["product"], row["amount"]) == ("1001", "true", 7.25)
    assert row["time_stamp"] == "2020-09-02T10:15:00.123Z"


def test_microsecond_precision_change_time() -> None:
    record = change_record(new=item_image(), created_ms=1599041700123456)
    change = json.loads(base64.b64decode(record["data"]))
    change["dynamodb"]["ApproximateCreationDateTimePrecision"] = "MICROSECOND"
    record["data"] = base64.b64encode(json.dumps(change).encode()).decode()
    [row] = rows_of(transform_order_changes(firehose_event(record), TABLE)[0])
    assert row["change_time"] == "2020-09-02T10:15:00.123Z"


def with_change_times(record: dict[str, Any], created: Any, precision: Any, arrival: Any) -> dict[str, Any]:
    change = json.loads(base64.b64decode(record["data"]))
    change["dynamodb"]["ApproximateCreationDateTime"] = created
    change["dynamodb"]["ApproximateCreationDateTimePrecision"] = precision
    record["data"] = base64.b64encode(json.dumps(change).encode()).decode()
    return {**record, "approximateArrivalTimestamp": arrival}


TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@pytest.mark.parametrize(
    ("created", "named"),
    [
        (1e20, "ApproximateCreationDateTime"),
        (1e18, "ApproximateCreationDateTime"),
        (-1e15, "ApproximateCreationDateTime"),
        (10**400, "ApproximateCreationDateTime"),
        (float("nan"), "NaN is not a number"),
        (float("inf"), "Infinity is not a number"),
        (-float("inf"), "-Infinity is not a number"),
    ],
)
def test_an_impossible_change_time_fails_only_its_own_record(created: Any, named: str) -> None:
    records = [
        change_record(new=item_image(), record_id="before"),
        with_change_times(change_record(new=item_image(), record_id="bad"), created, "MILLISECOND", 1599041700456),
        change_record(new=item_image(), record_id="after"),
    ]
    response, summary = transform_order_changes(firehose_event(*records), TABLE)
    assert [(r["recordId"], r["result"]) for r in response["records"]] == [
        ("before", "Ok"),
        ("bad", "ProcessingFailed"),
        ("after", "Ok"),
    ]
    assert named in summary.failed["bad"] and len(summary.failed["bad"]) < 200


epoch_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)


@given(
    st.lists(
        st.tuples(epoch_values, st.sampled_from(["MILLISECOND", "MICROSECOND", None, 7]), epoch_values),
        min_size=1,
        max_size=8,
    )
)
def test_any_change_times_answer_every_record_id_exactly_once(times: list[tuple[Any, Any, Any]]) -> None:
    records = [
        with_change_times(change_record(new=item_image(), record_id=f"r-{n}"), created, precision, arrival)
        for n, (created, precision, arrival) in enumerate(times)
    ]
    response, summary = transform_order_changes(firehose_event(*records), TABLE)
    assert [r["recordId"] for r in response["records"]] == [r["recordId"] for r in records]
    assert {r["result"] for r in response["records"]} <= {"Ok", "ProcessingFailed"}
    assert summary.ok + len(summary.failed) == len(records)
    assert all(TIMESTAMP.fullmatch(row["change_time"]) for row in rows_of(response))


def test_an_event_without_records_is_an_invocation_error_not_a_malformed_response() -> None:
    with pytest.raises(ValueError, match="recordId"):
        transform_order_changes({"records": [{"data": "e30="}]}, TABLE)


def test_a_maximal_request_gets_a_response_smaller_than_itself() -> None:
    big_product = {"S": "x" * 300_000}
    records = [
        change_record(new=item_image(product=big_product), record_id=f"r-{n}", sequence=str(n + 1)) for n in range(14)
    ]
    request = firehose_event(*records)
    assert len(json.dumps(request)) < LAMBDA_PAYLOAD_LIMIT
    response, summary = transform_order_changes(request, TABLE)
    assert summary.ok == 14
    assert len(json.dumps(response)) < len(json.dumps(request))


@pytest.mark.parametrize("name", EVENT_FILES)
def test_each_response_is_smaller_than_its_request(app: Any, name: str) -> None:
    event = load_event(name)
    assert len(json.dumps(handle(app, event))) < len(json.dumps(event))


@given(st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2))
def test_amounts_survive_the_json_number_exactly(amount: Decimal) -> None:
    rendered = coerce(
        deserialize_image({"amount": {"N": str(amount)}})["amount"], LakeColumn("amount", "decimal(12,2)")
    )
    assert Decimal(json.dumps(rendered)).quantize(Decimal("0.01")) == amount


def template_resources() -> dict[str, Any]:
    from support import REPO_ROOT

    from tributary.runtime.template import load_yaml

    return load_yaml((REPO_ROOT / "template.yaml").read_text())["Resources"]


def test_the_transform_writes_exactly_the_glue_table_declared_in_the_template() -> None:
    table_input = template_resources()["OrderChangesTable"]["Properties"]["TableInput"]
    declared = [(column["Name"], column["Type"]) for column in table_input["StorageDescriptor"]["Columns"]]
    assert declared == [(column.name, column.type) for column in ORDER_LAKE_COLUMNS]
    assert table_input["PartitionKeys"] == [{"Name": PARTITION_COLUMN.name, "Type": PARTITION_COLUMN.type}]


def test_the_delivery_stream_partitions_by_the_key_the_transform_returns() -> None:
    destination = template_resources()["OrdersDeliveryStream"]["Properties"]["ExtendedS3DestinationConfiguration"]
    assert "transaction_date=!{partitionKeyFromLambda:transaction_date}/" in destination["Prefix"]
    assert destination["DynamicPartitioningConfiguration"]["Enabled"] is True
    processor = destination["ProcessingConfiguration"]["Processors"][0]
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in processor["Parameters"]}
    assert processor["Type"] == "Lambda" and float(parameters["BufferSizeInMBs"]) <= 3


DIGITS_38 = "12345678901234567890123456789012345678"


def change_data(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`record` with top-level fields of its change record replaced (None removes one)."""
    change = json.loads(base64.b64decode(record["data"])) | changes
    change = {name: value for name, value in change.items() if value is not None}
    return {**record, "data": base64.b64encode(json.dumps(change).encode()).decode()}


def with_stream_record(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    change = json.loads(base64.b64decode(record["data"]))
    return change_data(record, dynamodb=change["dynamodb"] | fields)


def raw_data(data: bytes, record_id: str = "r-1") -> dict[str, Any]:
    return {**change_record(new=item_image(), record_id=record_id), "data": base64.b64encode(data).decode()}


def nested_maps(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "x"}
    for _ in range(depth):
        value = {"M": {"m": value}}
    return value


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (raw_data(b'{"a":' * 10_000 + b"1" + b"}" * 10_000), "change record is JSON nested too deeply to parse"),
        (raw_data(b'{"eventSource":"aws:dynamodb","n":' + b"9" * 5000 + b"}"), "Exceeds the limit (4300 digits)"),
        (raw_data(b'{"eventSource":"aws:dynamodb","eventName":"\\ud800"}'), "lone UTF-16 surrogate"),
        (change_data(change_record(new=item_image()), eventName={}), "eventName {} is not one of"),
        (change_data(change_record(new=item_image()), eventName=["INSERT"]), "eventName ['INSERT'] is not one of"),
        (with_stream_record(change_record(new=item_image()), Keys=[]), "Keys is a list, not a map"),
        (with_stream_record(change_record(new=item_image()), NewImage="x"), "NewImage is a str, not a map"),
        (change_record(new=item_image(product={"S": 5})), "'product' is not a valid DynamoDB typed value: S holds"),
        (change_record(new=item_image(amount={"N": "abc"})), "N 'abc' is not a number"),
        (change_record(new=item_image(amount={"N": []})), "N [] is not a number"),
        (change_record(new=item_image(amount={"N": "NaN"})), "N 'NaN' is not a number"),
        (change_record(new=item_image(amount={"N": "1" + DIGITS_38})), "39 significant digits, more than"),
        (change_record(new=item_image(amount={"N": "1E+126"})), "outside DynamoDB's range"),
        (change_record(new=item_image(amount={"N": "1", "S": "1"})), "exactly one type key"),
        (change_record(new=item_image(amount={})), "exactly one type key"),
        (change_record(new=item_image(product={"B": "not base64!"})), "B holds 'not base64!', not base64"),
        (change_record(new=item_image(flags={"BOOL": "yes"})), "BOOL holds 'yes'"),
        (change_record(new=item_image(gone={"NULL": False})), "NULL holds False"),
        (change_record(new=item_image(tags={"SS": [1]})), "'tags[0]' is not a valid DynamoDB typed value: S holds"),
        (change_record(new=item_image(doc=nested_maps(40))), "nested more than DynamoDB's 32 levels"),
        (change_record(new=item_image(time_stamp={"B": "AAEC"})), "binary value can only be stored in a string column"),
    ],
)
def test_hostile_change_records_fail_alone_with_a_reason_naming_the_problem(
    app: Any, record: dict[str, Any], reason: str
) -> None:
    records = [
        change_record(new=item_image(), record_id="before"),
        {**record, "recordId": "bad"},
        change_record(new=item_image(), record_id="after"),
    ]
    response = handle(app, firehose_event(*records))
    assert [(r["recordId"], r["result"]) for r in response["records"]] == [
        ("before", "Ok"),
        ("bad", "ProcessingFailed"),
        ("after", "Ok"),
    ]
    _, summary = transform_order_changes(firehose_event(records[1]), TABLE)
    assert reason in summary.failed["bad"] and len(summary.failed["bad"]) <= 300


def test_38_digit_numbers_reach_string_columns_exactly() -> None:
    image = item_image(customer_id={"N": DIGITS_38}, product={"N": "-0.00000000000000000000000000000000000001"})
    [row] = rows_of(transform_order_changes(firehose_event(change_record(new=image)), TABLE)[0])
    assert row["customer_id"] == DIGITS_38
    assert row["product"] == "-0.00000000000000000000000000000000000001"


def test_binary_attributes_are_carried_as_base64_text_or_dropped_when_undeclared() -> None:
    image = item_image(product={"B": "S2luZGxl"}, picture={"B": "AAEC"}, thumbnails={"BS": ["AA==", "AQ=="]})
    response, summary = transform_order_changes(firehose_event(change_record(new=image)), TABLE)
    assert summary.failed == {}
    [row] = rows_of(response)
    assert base64.b64decode(row["product"]) == b"Kindle"
    assert "picture" not in row and "thumbnails" not in row


def test_a_row_keeps_non_ascii_text_unescaped_so_it_never_outgrows_its_record() -> None:
    record = change_record(new=item_image(product={"S": "\u00e9" * 1000}))
    utf8 = json.dumps(json.loads(base64.b64decode(record["data"])), ensure_ascii=False).encode()
    record["data"] = base64.b64encode(utf8).decode()  # as DynamoDB writes it: UTF-8, not \u escapes
    response, _ = transform_order_changes(firehose_event(record), TABLE)
    [entry] = response["records"]
    assert len(entry["data"]) < len(record["data"])
    assert json.loads(base64.b64decode(entry["data"]))["product"] == "\u00e9" * 1000
