"""BatchWriter against moto: every ref ends up written or failed, with the right kind of failure."""

import json
import math
from dataclasses import replace
from decimal import Decimal
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.serialize import create_serializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import AlwaysThrottled, FakeClock

from tributary_shared.dynamo_items import normalized_key
from tributary_shared.dynamo_writer import WRITE_RETRY, BatchWriter, PendingItem
from tributary_shared.errors import PoisonRecordError
from tributary_shared.retries import CALL_BUDGET_S, RetryPolicy

TABLE = "Readings"
KEYS = ("device", "time")


def timed_by(clock: FakeClock) -> RetryPolicy:
    """The writer's retry policy on a fake clock: sleeping advances it, nothing really waits."""
    return replace(WRITE_RETRY, clock=clock, sleep=clock.sleep)


def create_table() -> None:
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in KEYS],
        KeySchema=[{"AttributeName": "device", "KeyType": "HASH"}, {"AttributeName": "time", "KeyType": "RANGE"}],
    )


def stored() -> dict[tuple[str, str], dict]:
    items = boto3.resource("dynamodb").Table(TABLE).scan()["Items"]
    return {(i["device"], i["time"]): i for i in items}


class HoldsBackItems:
    """A DynamoDB client that leaves the first `held` items of each of its first calls unprocessed."""

    def __init__(self, real: Any, calls_with_holdback: int, held: int) -> None:
        self.real, self.remaining, self.held, self.calls = real, calls_with_holdback, held, 0

    def batch_write_item(self, RequestItems: dict) -> dict:
        self.calls += 1
        (table, requests), = RequestItems.items()
        if self.remaining <= 0:
            return self.real.batch_write_item(RequestItems=RequestItems)
        self.remaining -= 1
        kept, sent = requests[: self.held], requests[self.held :]
        if sent:
            self.real.batch_write_item(RequestItems={table: sent})
        return {"UnprocessedItems": {table: kept} if kept else {}}

    def put_item(self, **kwargs: Any) -> dict:
        return self.real.put_item(**kwargs)


def reading(ref: int, device: str = "d1", value: float = 1.5) -> PendingItem:
    return PendingItem(ref=str(ref), item={"device": device, "time": f"t{ref:05d}", "value": value})


@pytest.fixture
def table(aws):
    create_table()


def test_thousand_items_cost_forty_requests(table):
    clock = FakeClock()
    writer = BatchWriter(TABLE, KEYS, boto3.client("dynamodb"), retry=timed_by(clock))
    report = writer.write([reading(i) for i in range(1000)], deadline=60)
    assert report.requests == 40
    assert len(report.written) == 1000 and not report.failed
    assert stored()[("d1", "t00007")]["value"] == Decimal("1.5")


def test_unprocessed_items_are_retried_until_written(table):
    clock = FakeClock()
    client = HoldsBackItems(boto3.client("dynamodb"), calls_with_holdback=3, held=5)
    writer = BatchWriter(TABLE, KEYS, client, retry=timed_by(clock))
    report = writer.write([reading(i) for i in range(25)], deadline=60)
    assert sorted(report.written, key=int) == [str(i) for i in range(25)]
    assert client.calls == 4 and clock.now > 0  # backed off between attempts
    assert len(stored()) == 25


def test_unprocessed_items_past_the_deadline_are_transient_failures(table):
    clock = FakeClock()
    client = HoldsBackItems(boto3.client("dynamodb"), calls_with_holdback=10_000, held=3)
    writer = BatchWriter(TABLE, KEYS, client, retry=timed_by(clock))
    report = writer.write([reading(i) for i in range(10)], deadline=CALL_BUDGET_S + 5)
    assert set(report.transient) == {"0", "1", "2"}
    assert set(report.written) == {str(i) for i in range(3, 10)}
    assert not report.permanent
    assert clock.now <= 5  # no request started later than one call's budget before the deadline


def test_throttling_is_transient_never_permanent():
    clock = FakeClock()
    client = AlwaysThrottled()
    writer = BatchWriter(TABLE, KEYS, client, retry=timed_by(clock))
    report = writer.write([reading(i) for i in range(30)], deadline=CALL_BUDGET_S + 3)
    assert set(report.transient) == {str(i) for i in range(30)}
    assert all("ProvisionedThroughputExceededException" in reason for reason in report.transient.values())
    assert client.calls > 2


def test_an_invalid_item_is_isolated_and_its_chunk_still_written(table):
    clock = FakeClock()
    items = [reading(i) for i in range(10)]
    items[4] = PendingItem(ref="4", item={"device": "d1", "time": "", "value": 1})  # empty key: invalid
    writer = BatchWriter(TABLE, KEYS, boto3.client("dynamodb"), retry=timed_by(clock))
    report = writer.write(items, deadline=60)
    assert set(report.permanent) == {"4"}
    assert "ValidationException" in report.permanent["4"]
    assert len(report.written) == 9 and len(stored()) == 9


def test_unstorable_value_is_a_permanent_failure(table):
    items = [reading(0), PendingItem(ref="1", item={"device": "d1", "time": "t1", "value": math.inf})]
    report = BatchWriter(TABLE, KEYS, boto3.client("dynamodb")).write(items, deadline=10**9)
    assert report.written == ["0"] and set(report.permanent) == {"1"}


keyed_items = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 40), st.integers(-1000, 1000)),
    max_size=120,
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=keyed_items)
def test_table_holds_the_last_write_per_key_and_every_ref_is_accounted(aws_server, rows):
    aws_server.reset()
    create_table()
    items = [
        PendingItem(ref=str(ref), item={"device": d, "time": f"t{t}", "value": v})
        for ref, (d, t, v) in enumerate(rows)
    ]
    report = BatchWriter(TABLE, KEYS, boto3.client("dynamodb")).write(items, deadline=10**9)
    expected: dict[tuple[str, str], int] = {}
    for pending in items:
        expected[(pending.item["device"], pending.item["time"])] = pending.item["value"]
    assert {key: int(item["value"]) for key, item in stored().items()} == expected
    assert sorted(report.written, key=int) == [p.ref for p in items]
    assert report.requests == math.ceil(len(expected) / 25)


class SlowClient:
    """Each request takes one second of the fake clock."""

    def __init__(self, real: Any, clock: FakeClock) -> None:
        self.real, self.clock, self.calls = real, clock, 0

    def batch_write_item(self, RequestItems: dict) -> dict:
        self.calls += 1
        self.clock.now += 1
        return self.real.batch_write_item(RequestItems=RequestItems)


class Denied:
    def __init__(self) -> None:
        self.calls = 0

    def batch_write_item(self, RequestItems: dict) -> dict:
        self.calls += 1
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "BatchWriteItem")

    put_item = batch_write_item


def test_no_request_is_started_that_could_outlive_the_deadline(table):
    clock = FakeClock()
    client = SlowClient(boto3.client("dynamodb"), clock)
    writer = BatchWriter(TABLE, KEYS, client, retry=timed_by(clock))
    report = writer.write([reading(i) for i in range(1000)], deadline=CALL_BUDGET_S + 5)
    assert client.calls == 6  # at 0, 1, ... 5 s: each started with a whole call's budget before the deadline
    assert len(report.written) == 150 and len(report.transient) == 850
    assert all("deadline" in reason for reason in report.transient.values())


def test_a_deployment_error_fails_everything_transiently_after_one_request():
    client = Denied()
    report = BatchWriter(TABLE, KEYS, client).write([reading(i) for i in range(100)], deadline=10**9)
    assert client.calls == 1 and not report.permanent and not report.written
    assert set(report.transient) == {str(i) for i in range(100)}
    assert all("AccessDeniedException" in reason for reason in report.transient.values())


def test_an_unstorable_newer_version_does_not_take_the_older_one_down(table):
    items = [reading(0, value=1.5), PendingItem(ref="1", item={"device": "d1", "time": "t00000", "value": math.inf})]
    report = BatchWriter(TABLE, KEYS, boto3.client("dynamodb")).write(items, deadline=10**9)
    assert report.written == ["0"] and set(report.permanent) == {"1"}
    assert stored()[("d1", "t00000")]["value"] == Decimal("1.5")


def test_number_keys_compare_by_value_not_spelling():
    one = normalized_key({"k": {"N": "1.50"}}, ["k"])
    assert one == normalized_key({"k": {"N": "1.5"}}, ["k"])
    assert one != normalized_key({"k": {"S": "1.5"}}, ["k"])


# ---------------------------------------------------------------- the one-pass serializer

scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8), st.integers(-(10**45), 10**45), st.binary(max_size=4),
    st.decimals(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    | st.frozensets(st.text(min_size=1, max_size=4), min_size=1, max_size=3),
    max_leaves=12,
)


@settings(max_examples=400)
@given(item=st.dictionaries(st.text(max_size=4), values, max_size=4))
def test_serialize_item_is_boto3s_type_serializer_in_one_pass(item):
    """Same typed form as boto3's TypeSerializer; it refuses what boto3 refuses, and the signed and
    signalling infinities and NaNs that boto3 would send on for DynamoDB to reject."""
    from boto3.dynamodb.types import TypeSerializer

    from tributary_shared.dynamo_items import serialize_item, to_dynamodb_value

    def boto3_form(of: dict) -> dict:
        return {name: TypeSerializer().serialize(to_dynamodb_value(value)) for name, value in of.items()}

    try:
        expected = boto3_form(item)
    except ArithmeticError:
        # DynamoDB keeps no trailing zeros (1.000...0 with 42 digits is 1); boto3 refuses such numbers.
        try:
            expected = boto3_form(_stripped(item))
        except (TypeError, ArithmeticError, ValueError):
            with pytest.raises((TypeError, ArithmeticError, ValueError)):
                serialize_item(item)
            return
        if set(_numbers(expected)) & {"-Infinity", "-NaN", "sNaN", "-sNaN"}:
            with pytest.raises(TypeError):
                serialize_item(item)
            return
        assert _values(serialize_item(item)) == _values(expected)
        return
    except (TypeError, ValueError):
        with pytest.raises((TypeError, ArithmeticError, ValueError)):
            serialize_item(item)
        return
    if set(_numbers(expected)) & {"-Infinity", "-NaN", "sNaN", "-sNaN"}:
        with pytest.raises(TypeError):
            serialize_item(item)
        return
    assert serialize_item(item) == expected


def _numbers(typed: Any) -> list[str]:
    """Every number text in a typed item."""
    if isinstance(typed, dict):
        numbers = [typed["N"]] if isinstance(typed.get("N"), str) else list(typed.get("NS") or [])
        return numbers + [n for inner in typed.values() for n in _numbers(inner)]
    if isinstance(typed, list):
        return [n for inner in typed for n in _numbers(inner)]
    return []


def _stripped(value: Any) -> Any:
    """Numbers without trailing zeros, exactly; everything else as it is."""
    from decimal import Context

    if type(value) in (int, Decimal) and Decimal(value).is_finite():
        return Decimal(value).normalize(Context(prec=2000, Emax=10**9, Emin=-(10**9)))
    if isinstance(value, dict):
        return {key: _stripped(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_stripped(inner) for inner in value)
    return value


def _values(typed: Any) -> Any:
    """A typed item with every number as a Decimal: equal when the numbers are, however spelled."""
    if isinstance(typed, dict):
        # A typed value is {"N": text}; an item or map may also have an attribute named "N".
        return {key: Decimal(inner) if key == "N" and isinstance(inner, str) else _values(inner)
                for key, inner in typed.items()}  # fmt: skip
    if isinstance(typed, list):
        return [_values(inner) for inner in typed]
    return typed


# ---------------------------------------------------------------- requests sent as encoded JSON

_JSON_SERIALIZER = create_serializer("json")
_DYNAMODB_MODEL = botocore.session.get_session().get_service_model("dynamodb")


@settings(max_examples=300)
@given(item=st.dictionaries(st.text(max_size=4), values, max_size=4))
def test_an_encoded_item_is_the_json_botocore_sends_for_it(item):
    """`encode_item` of a typed item is what botocore's serializer puts on the wire for it (blobs in base64)."""
    from tributary_shared.dynamo_items import encode_item, serialize_item

    try:
        typed = serialize_item(item)
    except (TypeError, ValueError, ArithmeticError):
        return  # refused before anything is encoded: see the serializer's test
    request = {"TableName": TABLE, "Item": typed}
    sent = _JSON_SERIALIZER.serialize_to_request(request, _DYNAMODB_MODEL.operation_model("PutItem"))
    assert json.loads(encode_item(typed)) == json.loads(sent["body"])["Item"]


class _Accepted:
    def stream(self, **_: Any) -> Any:
        yield b"{}"


def sent_bodies(client: Any) -> list[dict[str, Any]]:
    """The body of every request `client` sends from now on; each is answered with success, unsent."""
    bodies: list[dict[str, Any]] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        bodies.append(json.loads(request.body))
        return AWSResponse(request.url, 200, {}, _Accepted())

    client.meta.events.register("before-send.dynamodb", answer)
    return bodies


@pytest.mark.parametrize("validation", [True, False])
def test_a_transaction_sent_encoded_is_the_request_botocore_would_send(validation):
    from tributary_shared.dynamo_items import EncodedJson, encode_item, send_encoded_json, serialize_item

    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                          config=Config(parameter_validation=validation))  # fmt: skip
    bodies = sent_bodies(client)
    puts = [{"Put": {"TableName": TABLE, "Item": serialize_item({"device": "d", "time": str(n), "blob": b"\x00\xff"}),
                     "ConditionExpression": "attribute_not_exists(#v)", "ExpressionAttributeNames": {"#v": "v"}}}
            for n in range(3)]  # fmt: skip
    client.transact_write_items(TransactItems=puts, ReturnConsumedCapacity="TOTAL")
    send_encoded_json(client)
    send_encoded_json(client)  # idempotent: one splice per request
    encoded = [b"[", b",".join(encode_item(put) for put in puts), b"]"]
    client.transact_write_items(TransactItems=EncodedJson(encoded, [puts[0]]), ReturnConsumedCapacity="TOTAL")
    client.transact_write_items(TransactItems=EncodedJson(encoded, [puts[0]]))
    botocores, spliced, alone = bodies
    # botocore adds a fresh idempotency token to each request: the rest is the same.
    assert botocores.pop("ClientRequestToken") and spliced.pop("ClientRequestToken") and alone.pop("ClientRequestToken")
    assert spliced == botocores and alone == {"TransactItems": botocores["TransactItems"]}
    client.put_item(TableName=TABLE, Item=puts[0]["Put"]["Item"])  # other calls are botocore's own
    assert bodies[-1] == {"TableName": TABLE, "Item": botocores["TransactItems"][0]["Put"]["Item"]}


def test_a_guarded_writer_holds_each_item_as_the_json_it_sends():
    writer = BatchWriter(TABLE, KEYS, version_attribute="v")
    prepared = writer.prepare("7", {"device": "d", "time": "t", "value": 1.5}, "001:7:000000")
    assert prepared.typed is None and prepared.key == (("S", "d"), ("S", "t"))
    assert json.loads(prepared.put)["Put"]["Item"] == {"device": {"S": "d"}, "time": {"S": "t"}, "value": {"N": "1.5"},
                                                      "v": {"S": "001:7:000000"}}  # fmt: skip
    with pytest.raises(PoisonRecordError, match="item cannot be stored in DynamoDB: a number has more than 38"):
        writer.prepare("8", {"device": "d", "time": "t", "value": 10**40 + 1}, "001:8:000000")
