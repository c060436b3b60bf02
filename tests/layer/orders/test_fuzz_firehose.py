"""Fuzzing the order lake's Firehose transform: every recordId answered once, whatever the records hold.

Inputs: random bytes and random JSON (with deep nesting, over-limit integers and NaN spliced in as
raw text) as a record's data, the sample events' change records with values replaced anywhere in
them, envelopes with wrong types, and well-formed changes whose typed images hold hostile values
(malformed typed values, numbers past DynamoDB's 38 digits or range, lone surrogates, deep maps).
Beside them, valid images with 38-digit numbers and binary attributes must come out exactly.
"""

import base64
import binascii
import copy
import json
import re
from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import EVENTS_DIR, item_image

from tributary_shared.orders.images import ORDER_LAKE_COLUMNS, PARTITION_COLUMN
from tributary_shared.orders.lake_rows import DROPPED, FAILED, OK, transform_order_changes

TABLE = "OrderTransactions"
SEQUENCE = "49614321947518637821345678901234567890123456789012340"
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
MAX_REASON_CHARS = 300
DYNAMODB_MAX_DEPTH = 32
PLACEHOLDER = "\x00raw\x00"


def decoded(data: str) -> Any:
    try:
        return json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return None


SAMPLE_RECORDS = [
    record for path in sorted(EVENTS_DIR.glob("firehose-*.json")) for record in json.loads(path.read_text())["records"]
]
SAMPLE_CHANGES = [change for record in SAMPLE_RECORDS if isinstance(change := decoded(record["data"]), dict)]

# JSON text json.dumps never writes, spliced in where a placeholder string stands.
raw_fragments = st.one_of(
    st.integers(1, 12_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 6_000).map(lambda depth: '{"M":' * depth + "{}" + "}" * depth),
    st.integers(4_200, 5_000).map(lambda digits: "7" * digits),
    st.sampled_from(["NaN", "-Infinity", "1e999999999", "-0", '"\\ud800"', '"a\\udfff"']),
)
any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**38, max_value=10**300),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
    st.just(PLACEHOLDER),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=10,
)


def render(document: Any, fragments: list[str]) -> bytes:
    """JSON bytes of `document`, each placeholder replaced by the next raw fragment; lone surrogates kept escaped."""
    pieces = json.dumps(document).split(json.dumps(PLACEHOLDER))
    spliced = pieces[0] + "".join(fragments[n % len(fragments)] + piece for n, piece in enumerate(pieces[1:]))
    return spliced.encode()


# --- typed values -----------------------------------------------------------------------------------

DIGITS = "0123456789"


@st.composite
def dynamodb_numbers(draw: st.DrawFn) -> str:
    """A non-zero number DynamoDB can hold: up to 38 significant digits, magnitude 1E-130 to 9.99..E+125."""
    digits = draw(st.text(DIGITS, min_size=1, max_size=38).filter(lambda text: text[0] != "0"))
    exponent = draw(st.integers(-130 - (len(digits) - 1), 125 - (len(digits) - 1)))  # 10^-130 <= |n| < 10^126
    sign = draw(st.sampled_from(["", "-"]))
    return draw(st.sampled_from([f"{sign}{digits}E{exponent:+d}", str(Decimal(f"{sign}{digits}E{exponent}"))]))


hostile_numbers = st.one_of(
    st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "sNaN", "1E+126", "1E-131", "1e999999999", "1_000", "\u0661\u0662", " 1", ""]
    ),
    st.text(DIGITS, min_size=39, max_size=45).filter(lambda text: text.strip("0") and len(text.strip("0")) > 38),
    st.text(max_size=8),
)
base64_bytes = st.binary(max_size=40).map(lambda data: base64.b64encode(data).decode())
valid_text = st.text(max_size=20)


numbers = dynamodb_numbers()
# Typed values DynamoDB itself would send (nesting kept shallow; the 32-level limit is fuzzed apart).
valid_typed_values = st.recursive(
    st.one_of(
        valid_text.map(lambda text: {"S": text}),
        numbers.map(lambda number: {"N": number}),
        base64_bytes.map(lambda data: {"B": data}),
        st.booleans().map(lambda flag: {"BOOL": flag}),
        st.just({"NULL": True}),
        st.lists(valid_text, min_size=1, max_size=3, unique=True).map(lambda texts: {"SS": texts}),
        st.lists(numbers, min_size=1, max_size=3, unique=True).map(lambda items: {"NS": items}),
        st.lists(base64_bytes, min_size=1, max_size=3, unique=True).map(lambda data: {"BS": data}),
    ),
    lambda children: st.lists(children, max_size=3).map(lambda items: {"L": items})
    | st.dictionaries(valid_text, children, max_size=3).map(lambda members: {"M": members}),
    max_leaves=6,
)


def nested_maps(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "bottom"}
    for _ in range(depth):
        value = {"M": {"m": value}}
    return value


hostile_typed_values = st.one_of(
    json_values,
    st.builds(lambda payload: {"S": payload}, json_values),
    st.builds(lambda text: {"S": text}, st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)),
    st.builds(lambda number: {"N": number}, hostile_numbers | json_values),
    st.builds(lambda payload: {"B": payload}, st.text(max_size=6) | json_values),
    st.builds(lambda payload: {"BOOL": payload}, json_values),
    st.builds(lambda payload: {"NULL": payload}, json_values),
    st.builds(lambda kind, payload: {kind: payload}, st.sampled_from(["SS", "NS", "BS", "L", "M"]), json_values),
    st.builds(lambda first, second: first | second, valid_typed_values, valid_typed_values),
    st.builds(lambda kind, payload: {kind: payload}, any_text, json_values),
    st.integers(DYNAMODB_MAX_DEPTH, DYNAMODB_MAX_DEPTH + 8).map(nested_maps),
    st.builds(lambda name: {"M": {name: {"S": "x"}}}, st.text(st.characters(categories=["Cs"]), min_size=1)),
)

# --- change records -----------------------------------------------------------------------------------


def base_image() -> dict[str, Any]:
    return item_image()


def change(event_name: str, image: dict[str, Any], keys: Any = None) -> dict[str, Any]:
    image_name = "OldImage" if event_name == "REMOVE" else "NewImage"
    return {
        "eventName": event_name,
        "tableName": TABLE,
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "ApproximateCreationDateTime": 1599041700123,
            "ApproximateCreationDateTimePrecision": "MILLISECOND",
            "Keys": keys if keys is not None else {"order_id": {"S": "o-1"}, "item_id": {"S": "i-1"}},
            image_name: image,
        },
    }


attribute_names = st.lists(st.sampled_from([*base_image(), "extra", "\ud800", ""]), min_size=1, max_size=3)
image_values = hostile_typed_values | valid_typed_values
hostile_keys = st.none() | json_values
event_names = st.sampled_from(["INSERT", "MODIFY", "REMOVE"])
fragment_lists = st.lists(raw_fragments, min_size=1, max_size=2)


@st.composite
def hostile_images(draw: st.DrawFn) -> bytes:
    """A well-formed change whose image (declared columns, keys or extra attributes) holds hostile values."""
    image = base_image()
    for name in draw(attribute_names):
        image[name] = draw(image_values)
    keys = image if draw(st.booleans()) else draw(hostile_keys)
    return render(change(draw(event_names), image, keys), draw(fragment_lists))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in children:
        found += paths(inner, (*prefix, key))
    return found


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """A sample change with one to three values replaced (or keys removed), anywhere in it."""
    document = copy.deepcopy(draw(st.sampled_from(SAMPLE_CHANGES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(document)))
        if not path:
            document = draw(json_values)
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(replacements)
    return render(document, draw(fragment_lists))


replacements = json_values | hostile_typed_values
record_data = st.one_of(
    st.binary(max_size=100),
    st.builds(render, json_values, fragment_lists),
    mutated_samples(),
    hostile_images(),
).map(lambda data: base64.b64encode(data).decode())
arrival_times = st.just(1599041700456) | json_values
kinesis_metadata = st.just({"sequenceNumber": SEQUENCE}) | json_values
# Usually base64; now and then anything at all where the base64 belongs.
data_fields = st.one_of(record_data, record_data, record_data, record_data, json_values, st.text(max_size=10))


@st.composite
def firehose_events(draw: st.DrawFn) -> dict[str, Any]:
    records = [
        {
            "recordId": f"{index}-{draw(valid_text)}",  # Firehose's own ids: never hostile, always unique
            "approximateArrivalTimestamp": draw(arrival_times),
            "data": draw(data_fields),
            "kinesisRecordMetadata": draw(kinesis_metadata),
        }
        for index in range(draw(st.integers(1, 4)))
    ]
    return {"invocationId": "fuzz", "records": records}


# --- properties -----------------------------------------------------------------------------------


def assert_lake_row(entry: dict[str, Any]) -> None:
    row = json.loads(base64.b64decode(entry["data"], validate=True))
    assert list(row) == [column.name for column in ORDER_LAKE_COLUMNS]
    for column in ORDER_LAKE_COLUMNS:
        value = row[column.name]
        if column.type == "string":
            assert value is None or isinstance(value, str)
        elif column.type == "timestamp":
            assert value is None or TIMESTAMP.fullmatch(value)
        else:
            assert value is None or isinstance(value, int | float)
    partition = entry["metadata"]["partitionKeys"][PARTITION_COLUMN.name]
    assert date.fromisoformat(partition).isoformat() == partition


@settings(max_examples=400)
@given(event=firehose_events())
def test_every_record_id_is_answered_exactly_once_whatever_the_records_hold(event: dict[str, Any]) -> None:
    response, summary = transform_order_changes(event, TABLE)
    records = event["records"]
    assert [entry["recordId"] for entry in response["records"]] == [record["recordId"] for record in records]
    assert summary.ok + summary.dropped + len(summary.failed) == len(records)
    for record, entry in zip(records, response["records"], strict=True):
        assert entry["result"] in {OK, DROPPED, FAILED}
        if entry["result"] == OK:
            assert_lake_row(entry)
        else:
            echoed = isinstance(record["data"], str) and record["data"].isascii()
            assert entry["data"] == (record["data"] if echoed else "")
    for reason in summary.failed.values():
        assert reason and len(reason) <= MAX_REASON_CHARS, reason
        reason.encode("utf-8")  # logged as UTF-8: no lone surrogate may reach the log line
    # Lambda returns the response as UTF-8 JSON: every part of it must encode.
    json.dumps(response, ensure_ascii=False).encode("utf-8")


def envelope(data: bytes, record_id: str = "r-1") -> dict[str, Any]:
    return {
        "recordId": record_id,
        "approximateArrivalTimestamp": 1599041700456,
        "data": base64.b64encode(data).decode(),
        "kinesisRecordMetadata": {"sequenceNumber": SEQUENCE},
    }


@settings(max_examples=250)
@given(
    product=valid_text.map(lambda text: {"S": text})
    | numbers.map(lambda number: {"N": number})
    | base64_bytes.map(lambda data: {"B": data}),
    customer_id=numbers,
    extra=st.dictionaries(st.text(min_size=1, max_size=8), valid_typed_values, max_size=4),
    event_name=st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
)
@example(
    product={"N": "12345678901234567890123456789012345678"},
    customer_id="9.9999999999999999999999999999999999999E+125",
    extra={"picture": {"B": "AAEC"}, "thumbnails": {"BS": ["AA==", "AQ=="]}},
    event_name="INSERT",
)
def test_valid_images_come_out_exactly_binary_and_38_digit_numbers_included(
    product: dict[str, Any], customer_id: str, extra: dict[str, Any], event_name: str
) -> None:
    image = {**extra, **base_image(), "product": product, "customer_id": {"N": customer_id}}
    response, summary = transform_order_changes(
        {"records": [envelope(json.dumps(change(event_name, image)).encode())]}, TABLE
    )
    assert summary.failed == {} and summary.ok == 1
    [entry] = response["records"]
    row = json.loads(base64.b64decode(entry["data"]))
    assert Decimal(row["customer_id"]) == Decimal(customer_id)  # exact: no float, no 28-digit rounding
    [(kind, value)] = product.items()
    if kind == "S":
        assert row["product"] == value
    elif kind == "N":
        assert Decimal(row["product"]) == Decimal(value)
    else:
        assert base64.b64decode(row["product"]) == base64.b64decode(value)
