"""Hostile readings and hostile window states through the aggregator's handler: nothing stalls a shard.

The handler runs as Lambda runs it (`functions/aggregator/app.py`, logs and metrics included) with
the real `AggregationSink`, whose DynamoDB and Kinesis clients here serialize every request as
botocore would (its parameter validation and JSON serializer, for the real service models) and
then apply the services' own rules to what they receive: DynamoDB's 400 KB item size, its number
range and 38 digits, key lengths and valid UTF-8; Kinesis' partition key and record size. A value
that would be refused on the wire or by the service is therefore found without a server.

What must hold: no exception leaves the handler; every record is folded, or reported poison with a
reason; every window closes; every unicorn row is stored as an item or kept in a quarantined item;
a state the function cannot read is kept, raw, in quarantined items.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.serialize import create_serializer
from botocore.validate import validate_parameters
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import FakeLambdaContext, kinesis_event, load_handler_module

from tributary_shared.aggregator import aggregator as aggregator_module
from tributary_shared.aggregator.aggregator import Aggregator
from tributary_shared.aggregator.readings import (
    DYNAMODB_DIGITS,
    DYNAMODB_MAX_MAGNITUDE,
    DYNAMODB_MIN_MAGNITUDE,
    MAX_STATUS_MS,
    format_status_time,
    parse_reading,
)
from tributary_shared.aggregator.sink import QUARANTINE_NAME, AggregationSink, quarantine_text
from tributary_shared.aggregator.window_handler import handle_window_event
from tributary_shared.aggregator.window_state import WindowState

TABLE = "UnicornAggregation"
SUMMARY_STREAM = "wildrydes-summary"
SHARD = "shardId-000000000000"
WINDOW = {"start": "2026-11-21T12:00:00Z", "end": "2026-11-21T12:01:00Z"}
FIRST_SEQUENCE = 49656834216710451283762412935735891405936473474393636866
BASE_MS = 1_795_262_400_000
MAX_ITEM_BYTES = 400 * 1024
# A malformed event fails before any metric is added; powertools warns about the empty flush.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

app = load_handler_module("aggregator", TABLE_NAME=TABLE, SUMMARY_STREAM_NAME=SUMMARY_STREAM)
_SESSION = botocore.session.get_session()
_MODELS = {service: _SESSION.get_service_model(service) for service in ("dynamodb", "kinesis")}
_SERIALIZER = create_serializer("json")


def on_the_wire(service: str, operation: str, params: dict[str, Any]) -> None:
    """What botocore does before it sends a request: validate it against the model and serialize it."""
    model = _MODELS[service].operation_model(operation)
    validate_parameters(params, model.input_shape)
    _SERIALIZER.serialize_to_request(params, model)


def refused(operation: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": "ValidationException", "Message": message}}, operation)


def _utf8_bytes(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise ValueError(f"a string is not valid UTF-8 ({error.reason})") from error


def _number_bytes(text: str) -> int:
    try:
        number = Decimal(text)
    except InvalidOperation as error:
        raise ValueError(f"{text!r:.40} is not a number") from error
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    if not number.is_finite() or len(digits) > DYNAMODB_DIGITS:
        raise ValueError(f"{text!r:.40} is not a DynamoDB number")
    if number and not DYNAMODB_MIN_MAGNITUDE <= number.copy_abs() <= DYNAMODB_MAX_MAGNITUDE:
        raise ValueError(f"{text!r:.40} is outside DynamoDB's range")
    return len(digits) // 2 + 2


def _value_bytes(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return _utf8_bytes(inner)
    if kind == "N":
        return _number_bytes(inner)
    if kind == "BOOL":
        return 1
    raise ValueError(f"the aggregator writes no {kind} attribute")


def dynamodb_item_problem(item: dict[str, Any]) -> str | None:
    """DynamoDB's own rules for an item of UnicornAggregation (name HASH, windowStart RANGE)."""
    try:
        size = sum(_utf8_bytes(name) + _value_bytes(value) for name, value in item.items())
        name, window_start = item["name"].get("S"), item["windowStart"].get("S")
    except (ValueError, KeyError) as error:
        return str(error)
    if not name or not window_start or len(name.encode()) > 2048 or len(window_start.encode()) > 1024:
        return "a key attribute is empty or too long"
    return "item is larger than 400 KB" if size > MAX_ITEM_BYTES else None


class DynamoDBRules:
    """UnicornAggregation in memory: requests as botocore sends them, items as DynamoDB accepts them."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def batch_write_item(self, **params: Any) -> dict[str, Any]:
        on_the_wire("dynamodb", "BatchWriteItem", params)
        items = [request["PutRequest"]["Item"] for request in params["RequestItems"][TABLE]]
        for item in items:
            problem = dynamodb_item_problem(item)
            if problem:  # DynamoDB refuses the whole request
                raise refused("BatchWriteItem", problem)
        for item in items:
            self._store(item)
        return {"UnprocessedItems": {}}

    def put_item(self, **params: Any) -> dict[str, Any]:
        on_the_wire("dynamodb", "PutItem", params)
        problem = dynamodb_item_problem(params["Item"])
        if problem:
            raise refused("PutItem", problem)
        self._store(params["Item"])
        return {}

    def _store(self, item: dict[str, Any]) -> None:
        self.items[(item["name"]["S"], item["windowStart"]["S"])] = item

    def unicorn_items(self) -> list[dict[str, Any]]:
        return [item for (name, _), item in self.items.items() if name != QUARANTINE_NAME]

    def quarantined_text(self, what_prefix: str) -> list[str]:
        """The text of each quarantined thing whose `what` starts with `what_prefix`, parts joined."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for (name, _), item in sorted(self.items.items()):
            if name == QUARANTINE_NAME and item["what"]["S"].startswith(what_prefix):
                groups.setdefault(item["what"]["S"], []).append(item)
        return ["".join(part["text"]["S"] for part in parts) for parts in groups.values()]


class KinesisRules:
    """The summary stream: requests as botocore sends them, records as Kinesis accepts them."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def put_records(self, **params: Any) -> dict[str, Any]:
        on_the_wire("kinesis", "PutRecords", params)
        for entry in params["Records"]:
            key = entry["PartitionKey"]
            if not 1 <= len(key) <= 256 or len(entry["Data"]) + _utf8_bytes(key) > 1024 * 1024:
                raise refused("PutRecords", "partition key or record size out of bounds")
        self.records += [(entry["PartitionKey"], entry["Data"]) for entry in params["Records"]]
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": SHARD}] * len(params["Records"])}


class Run:
    """One shard's invocations of the real handler against the rule-keeping clients."""

    def __init__(self) -> None:
        self.dynamodb, self.kinesis = DynamoDBRules(), KinesisRules()
        self.sink = AggregationSink(TABLE, SUMMARY_STREAM, dynamodb=self.dynamodb, kinesis=self.kinesis)
        self.reports: list[Any] = []

    @contextmanager
    def handler(self) -> Iterator[Any]:
        def recording(event: Any, sink: Any, deadline: float, **options: Any) -> Any:
            report = handle_window_event(event, sink, deadline, **options)
            self.reports.append(report)
            return report

        built = app.aggregator  # as the cold start built it; this run's sink is passed in instead
        aggregator = Aggregator(built.settings, sink=self.sink, logger=built.logger, metrics=built.metrics)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(app, "aggregator", aggregator)
            patch.setattr(aggregator_module, "handle_window_event", recording)
            yield lambda event: app.lambda_handler(event, FakeLambdaContext("Aggregator"))


def window_event(records: list[dict[str, Any]], state: Any, *, final: bool = False) -> dict[str, Any]:
    return {
        "Records": records,
        "window": WINDOW,
        "state": state,
        "shardId": SHARD,
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/wildrydes",
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": False,
    }


def mostly(valid: st.SearchStrategy, hostile: st.SearchStrategy) -> st.SearchStrategy:
    """Valid values about four times in five, so readings with every field valid come often too."""
    return st.integers(min_value=0, max_value=4).flatmap(lambda pick: hostile if pick == 0 else valid)


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)
hostile_numbers = [
    "1e999999999", "-1e-999999999", "1e126", "1e-131", "1e16", "0." + "1" * 39, "1" * 5000, "1.5e-130",
    "1.2345678901234567890123456789012345678E-130", "-9.9999999999999999999999999999999999999e125",
]  # fmt: skip
# JSON literals for any field: wrong types, unhashable values, bad Unicode, numbers out of range.
HOSTILE_LITERALS = [
    *hostile_numbers,
    "null", "true", "false", "[]", "{}", '""', '"3"', "[1,[2,[3]]]", '{"km":{"m":1}}', "-0.0", "1" * 39,
    '"\\ud800"', '"A\\udfff"', '"' + "x" * 65 + '"', "[" * 60 + "]" * 60, '"9999-12-31 23:59:59.999-01:00"',
    '"1969-12-31 23:59:59.999"', '"0001-01-01T00:00:00+00:01"', '"2026-11-21T25:00:00"', '"yesterday"',
]  # fmt: skip
hostile_literals = st.one_of(st.sampled_from(HOSTILE_LITERALS), json_values.map(json.dumps))
status_times = st.one_of(
    st.integers(min_value=0, max_value=MAX_STATUS_MS).map(format_status_time),
    st.datetimes().map(lambda moment: moment.isoformat(sep=" ", timespec="milliseconds")),
)
names = st.one_of(st.sampled_from(["Shadowfax", "Bucephalus", "Pegasus"]), st.text(min_size=1, max_size=70))
figures = st.one_of(
    st.integers(min_value=0, max_value=300), st.floats(min_value=-1e15, max_value=1e15), st.just(123456789.123456789)
)
READING_FIELDS = ("Name", "Distance", "MagicPoints", "HealthPoints", "StatusTime")
valid_literals = {
    "Name": names.map(json.dumps),
    "Distance": figures.map(json.dumps),
    "MagicPoints": figures.map(json.dumps),
    "HealthPoints": figures.map(json.dumps),
    "StatusTime": status_times.map(json.dumps),
}


@st.composite
def reading_texts(draw: Any) -> str:
    """A reading as JSON text, each field valid, hostile or missing; numbers any literal JSON can hold."""
    fields = {name: draw(mostly(valid_literals[name], hostile_literals)) for name in READING_FIELDS}
    missing = draw(st.sets(st.sampled_from(READING_FIELDS), max_size=2)) if draw(st.integers(0, 4)) == 0 else set()
    if draw(st.integers(0, 9)) == 0:
        fields["InputData"] = json.dumps(draw(st.sampled_from(["error: poison pill", "ok"])))
    return "{" + ",".join(f'"{name}":{value}' for name, value in fields.items() if name not in missing) + "}"


@st.composite
def hostile_bytes(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["reading"] * 6 + ["raw", "deep", "surrogate", "truncated", "array"]))
    if kind == "reading":
        return draw(reading_texts()).encode()
    if kind == "raw":
        return draw(st.binary(max_size=40))
    if kind == "deep":
        depth = draw(st.integers(30, 20_000))
        return b'{"Name":"a","StatusTime":"2026-11-21","Distance":' + b"[" * depth + b"]" * depth + b"}"
    if kind == "surrogate":
        return draw(st.sampled_from([b'{"Name":"\\ud800"}', b'{"Name":"A","StatusTime":"2026-11-21\\udfff"}']))
    if kind == "array":
        return b'[{"Name":"A"}]'
    return draw(reading_texts()).encode()[: draw(st.integers(0, 30))]


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_record_is_folded_or_poison_and_every_window_closes(data):
    payloads = data.draw(st.lists(hostile_bytes(), min_size=1, max_size=16))
    records = kinesis_event([("p", payload) for payload in payloads], first_sequence=FIRST_SEQUENCE)["Records"]
    run = Run()
    state: Any = {}
    with run.handler() as invoke:
        position = 0
        while position < len(records):
            batch = records[position : position + data.draw(st.integers(1, 8))]
            response = invoke(window_event(batch, state))
            if response["batchItemFailures"] and data.draw(st.booleans()):
                # The mapping retries from the reported record: records already folded come back.
                failed = int(response["batchItemFailures"][0]["itemIdentifier"])
                retried = [record for record in batch if int(record["kinesis"]["sequenceNumber"]) >= failed]
                again = invoke(window_event(retried, response["state"]))
                assert run.reports[-1].fold.folded == 0
                assert again["batchItemFailures"] == response["batchItemFailures"]
                response = again
            state = response["state"]
            position += len(batch)
        assert invoke(window_event([], state, final=True)) == {"state": {}, "batchItemFailures": []}

    first_time = [report for report in run.reports[:-1] if report.fold.redelivered == 0 or report.fold.folded]
    folded = sum(report.fold.folded for report in run.reports)
    poison = {sequence: reason for report in first_time for sequence, reason in report.fold.poison.items()}
    # Every reason names the problem: none comes from the catch-all for exceptions nobody expected.
    assert all(reason and not reason.startswith("unexpected") for reason in poison.values())
    assert folded + len(poison) == len(records)  # each record exactly once: folded, or poison
    event(f"{'some' if folded else 'no'} records folded, {'some' if poison else 'no'} poison")
    assert not any(report.fold.transient_sequence for report in run.reports)
    stored = run.dynamodb.unicorn_items()
    assert sum(int(item["count"]["N"]) for item in stored) == folded
    assert run.dynamodb.quarantined_text("") == []  # what was folded could all be stored
    assert len(run.kinesis.records) == len(stored)
    expected_names = {parse_reading(json.loads(payload)).name for payload in folded_payloads(payloads, poison)}
    assert {item["name"]["S"] for item in stored} == expected_names


def folded_payloads(payloads: list[bytes], poison: dict[str, str]) -> list[bytes]:
    return [payload for index, payload in enumerate(payloads) if str(FIRST_SEQUENCE + index) not in poison]


def valid_rows(draw: Any) -> dict[str, list[Any]]:
    state = WindowState()
    for offset in range(draw(st.integers(0, 4))):
        reading = {
            "Name": draw(st.sampled_from(["Shadowfax", "Bucephalus", "Pegasus"])),
            "Distance": draw(st.integers(0, 50)),
            "MagicPoints": 1,
            "HealthPoints": 2,
            "StatusTime": format_status_time(BASE_MS + offset),
        }
        state.fold(parse_reading(reading), FIRST_SEQUENCE - 100 + offset)
    return state.rows


hostile_row_values = st.one_of(
    st.sampled_from(hostile_numbers),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([MAX_STATUS_MS + 3_600_000, -1, "NaN", "Infinity", "1e99999999999999999999", True, None]),
    json_leaves,
)


def hostile_state(draw: Any) -> Any:
    """A state as Lambda could hand one back: ours, an older or newer version's, damaged, or garbage."""
    kind = draw(st.sampled_from(["ours", "damaged", "damaged", "version 1", "garbage", "other version"]))
    if kind == "garbage":
        return draw(json_values)
    rows = valid_rows(draw)
    state = {
        "v": 2,
        "first": str(FIRST_SEQUENCE - 100) if rows else None,
        "last": str(FIRST_SEQUENCE - 90) if rows else None,
        "poison": [0, None],
        "u": rows,
        "x": [],
    }
    if kind == "version 1":
        state["v"] = 1
        del state["x"]
    if kind == "other version":
        state["v"] = draw(st.one_of(st.integers(), json_leaves))
    if kind in ("damaged", "version 1"):
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.one_of(names, st.just("\ud800")))
            row = list(rows.get(name) or [])
            row = row if len(row) == 8 else [1, 1, 1, 1, 1, 1, BASE_MS, BASE_MS]
            row[draw(st.integers(0, 7))] = draw(hostile_row_values)
            state["u"][name] = draw(st.one_of(st.just(row), st.just(row[:5]), json_values.map(lambda v: [v])))
            state["first"], state["last"] = state["first"] or "1", state["last"] or "1"
        if kind == "damaged" and draw(st.booleans()):
            state["x"] = [[draw(names), draw(json_values), "set aside earlier"]]
    if draw(st.integers(0, 5)) == 0:
        state[draw(st.sampled_from(["first", "last", "poison", "u", "x"]))] = draw(json_values)
    return json.loads(json.dumps(state))  # as Lambda hands it back: JSON, lone surrogates and all


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_the_state_holds_the_window_closes_keeping_every_row(data):
    state = hostile_state(data.draw)
    reading = {"Name": "Late", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"}
    records = kinesis_event([("p", json.dumps(reading).encode())], first_sequence=FIRST_SEQUENCE)["Records"]
    run = Run()
    with run.handler() as invoke:
        if data.draw(st.booleans()):
            response = invoke(window_event(records, state, final=True))
        else:
            middle = invoke(window_event(records, state))
            response = invoke(window_event([], middle["state"], final=True))
    assert response == {"state": {}, "batchItemFailures": []}

    stored = {item["name"]["S"]: item for item in run.dynamodb.unicorn_items()}
    assert stored["Late"]["count"]["N"] == "1"  # the new record always lands, whatever the state was
    readable = run.reports[0].state_quarantined is None
    quarantined_rows = sum(report.published.rows_quarantined for report in run.reports if report.published)
    event(f"state {'read' if readable else 'quarantined'}, {'some' if quarantined_rows else 'no'} rows quarantined")
    if not readable:
        assert run.dynamodb.quarantined_text("state-") == [quarantine_text(state)]
        return
    kept = {row[0] for text in run.dynamodb.quarantined_text("rows-") for row in json.loads(text)["rows"]}
    if state is None or state == {}:  # a window's first invocation
        assert kept == set()
        return
    assert set(state["u"]) <= set(stored) | kept  # every row is stored, or kept as it was
    if state["v"] == 2:  # and what version 2 had set aside before is kept (version 1 had no "x")
        assert {entry[0] for entry in state.get("x") or []} <= kept


def test_a_json_number_too_large_for_a_decimal_fails_its_record_alone():
    """`1e99999999999999999999` parses to no Decimal at all (InvalidOperation, not a ValueError)."""
    huge = b'{"Name":"A","Distance":1e99999999999999999999,"MagicPoints":1,"HealthPoints":1,"StatusTime":"2026-11-21"}'
    good = json.dumps({"Name": "B", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"})
    records = kinesis_event([("a", huge), ("b", good.encode())], first_sequence=FIRST_SEQUENCE)["Records"]
    run = Run()
    with run.handler() as invoke:
        response = invoke(window_event(records, {}))
    assert response["batchItemFailures"] == [{"itemIdentifier": str(FIRST_SEQUENCE)}]
    assert run.reports[0].fold.folded == 1 and run.reports[0].fold.poison[str(FIRST_SEQUENCE)]
