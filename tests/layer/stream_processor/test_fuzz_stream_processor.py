"""Hostile input through the stream processor: every record is written or fails alone with a reason.

The DynamoDB client here is botocore's own, and answers success just before a request would leave:
each request body the writer sent is checked against the service model (botocore's parameter
validation) and against botocore's own serialization of the same parameters, so any value that
would crash on the wire, or go on it in another form than botocore's, is found without a server.
"""

import base64
import json
import random
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.serialize import create_serializer
from botocore.validate import validate_parameters
from hypothesis import given, settings
from hypothesis import strategies as st
from support import kinesis_event

from tributary_shared.dynamo_writer import BatchWriter
from tributary_shared.kinesis_batch import KinesisBatch
from tributary_shared.stream_processor.processor import BatchOutcome, StreamProcessor
from tributary_shared.stream_processor.settings import StreamProcessorSettings

KEYS = ("Name", "StatusTime")
_MODEL = botocore.session.get_session().get_service_model("dynamodb")
_SERIALIZER = create_serializer("json")


class _Answered:
    def stream(self, **_: Any) -> Any:
        yield b"{}"


class SerializingDynamoDB:
    """botocore's DynamoDB client: each TransactWriteItems body is checked, its items kept, success answered."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.client = botocore.session.get_session().create_client(
            "dynamodb", "us-east-1", endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="fuzz", aws_secret_access_key="fuzz",
        )  # fmt: skip
        self.client.meta.events.register("before-send.dynamodb.TransactWriteItems", self._answer)

    def reset(self) -> "SerializingDynamoDB":
        self.items = []
        return self

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        sent = json.loads(request.body)
        operation = _MODEL.operation_model("TransactWriteItems")
        validate_parameters(sent, operation.input_shape)
        assert json.loads(_SERIALIZER.serialize_to_request(sent, operation)["body"]) == sent
        self.items += [action["Put"]["Item"] for action in sent["TransactItems"]]
        return AWSResponse(request.url, 200, {}, _Answered())


DYNAMODB = SerializingDynamoDB()  # one client for every example: creating one takes longer than an example


def processor() -> tuple[StreamProcessor, SerializingDynamoDB]:
    client = DYNAMODB.reset()
    writer = BatchWriter("UnicornSensorData", KEYS, client.client, version_attribute="recordVersion")
    return StreamProcessor(StreamProcessorSettings("UnicornSensorData", KEYS), writer=writer), client


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.decimals(allow_nan=False, allow_infinity=False).map(str).map(lambda text: json.loads(text, parse_float=str)),
    st.text(),
)
json_values = st.recursive(
    json_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
readings = st.fixed_dictionaries(
    {"Name": st.one_of(st.text(max_size=10), json_values), "StatusTime": st.one_of(st.text(max_size=10), json_values)},
    optional={"Distance": json_values, "InputData": st.text(max_size=12), "extra": json_values},
)


def hostile_bytes(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["reading", "raw", "deep", "bigint", "surrogate", "bignum", "framed", "truncated"]))
    if kind == "reading":
        return json.dumps(draw(readings), default=str).encode()
    if kind == "raw":
        return draw(st.binary(max_size=64))
    if kind == "deep":
        depth = draw(st.integers(30, 20_000))
        return b'{"Name":"a","StatusTime":"t","x":' + b"[" * depth + b"]" * depth + b"}"
    if kind == "bigint":
        return b'{"Name":"a","StatusTime":"t","n":' + b"9" * draw(st.integers(38, 6000)) + b"}"
    if kind == "bignum":
        number = draw(st.sampled_from(["1e999999999", "-1e-999999999", "1e126", "1e-131", "0." + "1" * 39]))
        return b'{"Name":"a","StatusTime":"t","n":' + number.encode() + b"}"
    if kind == "surrogate":
        return b'{"Name":"\\ud800","StatusTime":"t"}'
    if kind == "framed":
        return draw(st.sampled_from([b"\x03", b"\x00"])) + draw(st.binary(max_size=40))
    return json.dumps({"Name": "a", "StatusTime": "t"}).encode()[: draw(st.integers(0, 20))]


@settings(max_examples=400)
@given(data=st.data())
def test_every_record_is_written_or_fails_alone_with_a_reason(data):
    payloads = [hostile_bytes(data.draw) for _ in range(data.draw(st.integers(1, 8)))]
    event = kinesis_event([(f"k{i}", payload) for i, payload in enumerate(payloads)])
    if data.draw(st.booleans()):
        random.Random(data.draw(st.integers(0, 99))).shuffle(event["Records"])
    stream_processor, _ = processor()
    outcome = stream_processor.process(KinesisBatch.of_records(event["Records"], 10**12, BatchOutcome))
    sequences = {record["kinesis"]["sequenceNumber"] for record in event["Records"]}
    failed = {**outcome.failed_permanent, **outcome.failed_transient}
    assert all(reason for reason in failed.values())
    assert outcome.written + len(failed) == len(sequences)
    assert not outcome.failed_transient  # nothing here can pass later: it all fails for what it is
    if failed:
        assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": min(failed, key=int)}]}


def test_a_record_nested_ten_thousand_deep_fails_alone():
    deep = b'{"Name":"a","StatusTime":"t","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    good = json.dumps({"Name": "b", "StatusTime": "t"}).encode()
    event = kinesis_event([("a", deep), ("b", good)])
    stream_processor, client = processor()
    outcome = stream_processor.process(KinesisBatch.of_records(event["Records"], 10**12, BatchOutcome))
    assert list(outcome.failed_permanent.values()) == ["record is JSON nested too deeply to parse"]
    assert outcome.written == 1 and client.items[0]["Name"] == {"S": "b"}


def test_numbers_keep_dynamodbs_38_digits_exactly():
    digits = "12345678901234567890123456789012345678"
    good = f'{{"Name":"a","StatusTime":"t","n":{digits},"f":0.{digits}}}'.encode()
    event = kinesis_event([("a", good), ("b", f'{{"Name":"b","StatusTime":"t","n":{digits}9}}'.encode())])
    stream_processor, client = processor()
    outcome = stream_processor.process(KinesisBatch.of_records(event["Records"], 10**12, BatchOutcome))
    assert client.items[0]["n"] == {"N": digits} and client.items[0]["f"] == {"N": f"0.{digits}"}
    assert "38 significant digits" in next(iter(outcome.failed_permanent.values()))


def test_base64_that_is_not_base64_fails_alone():
    event = kinesis_event([("a", b"{}"), ("b", json.dumps({"Name": "b", "StatusTime": "t"}).encode())])
    event["Records"][0]["kinesis"]["data"] = base64.b64encode(b"x").decode() + "!!"
    stream_processor, _ = processor()
    outcome = stream_processor.process(KinesisBatch.of_records(event["Records"], 10**12, BatchOutcome))
    assert "base64" in next(iter(outcome.failed_permanent.values())) and outcome.written == 1
