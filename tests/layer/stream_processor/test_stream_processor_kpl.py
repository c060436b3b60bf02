"""The stream processor's handler on KPL aggregated records, against moto: user records decode and are
written one by one, a poison user record fails alone, and the retried aggregate writes nothing twice."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest
from kpl_support import require_writes_keyed_by_user_record
from support import (
    PAYMENT_EVENT_SCHEMA_VERSIONS,
    FakeLambdaContext,
    definition,
    kinesis_event,
    load_handler_module,
)

from tributary.avro_encoding import encode_confluent, encode_glue
from tributary.kpl_aggregation import OutgoingUserRecord, encode_aggregate
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.avro_schemas import parse_definition
from tributary_shared.kinesis_batch import record_version
from tributary_shared.payloads import PayloadDecoder
from tributary_shared.stream_processor.processor import StreamProcessor

PAYMENTS_ENV = {"TABLE_NAME": "Payments", "KEY_ATTRIBUTES": "paymentId"}
FIRST = 49590338271490256608559692538361571095921575989136588898


class RecordingMetrics:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def add_metric(self, name: str, unit: object, value: float) -> None:
        self.values[name] = self.values.get(name, 0) + value


def aggregate(*records: tuple[str, dict | bytes]) -> bytes:
    return encode_aggregate([
        OutgoingUserRecord(key, data if isinstance(data, bytes) else json.dumps(data).encode())
        for key, data in records
    ])  # fmt: skip


@pytest.fixture
def payments(aws):
    boto3.client("dynamodb").create_table(
        TableName="Payments",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "paymentId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "paymentId", "KeyType": "HASH"}],
    )
    require_writes_keyed_by_user_record()
    module = load_handler_module("stream_processor", **PAYMENTS_ENV)
    metrics = RecordingMetrics()
    module.processor.metrics = metrics
    return module, metrics


def items() -> dict[str, dict]:
    return {item["paymentId"]: item for item in boto3.resource("dynamodb").Table("Payments").scan()["Items"]}


def test_a_poison_user_record_fails_alone_and_the_retried_aggregate_writes_nothing_twice(payments):
    module, metrics = payments
    event = kinesis_event([
        ("p1", json.dumps({"paymentId": "p0", "status": "PENDING"}).encode()),
        ("p1", aggregate(
            ("p1", {"paymentId": "p1", "status": "PENDING"}),
            ("p1", {"paymentId": "p1", "status": "AUTHORIZED"}),
            ("p1", b'{"paymentId": "p1", "status": '),  # poison in the middle
            ("p2", {"paymentId": "p2", "status": "PENDING"}),
            ("p1", {"paymentId": "p1", "status": "SETTLED"}),
        )),
    ], first_sequence=FIRST)  # fmt: skip
    parent = str(FIRST + 1)
    assert module.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": [{"itemIdentifier": parent}]}
    written = items()
    assert {key: item["status"] for key, item in written.items()} == {"p0": "PENDING", "p1": "SETTLED", "p2": "PENDING"}
    assert written["p1"]["recordVersion"] == record_version(parent, 4)
    assert written["p2"]["recordVersion"] == record_version(parent, 3)
    assert metrics.values == {
        "RecordsIn": 6, "AggregatedRecordsIn": 1, "RecordsWritten": 5, "RecordsSuperseded": 0, "FailedPermanent": 1,
        "FailedTransient": 0, "RecordsDeferred": 0, "DynamoDBRequests": 1,
    }  # fmt: skip

    # The mapping retries from the aggregate: its user records come again, the same versions.
    metrics.values.clear()
    retry = {"Records": event["Records"][1:]}
    assert module.lambda_handler(retry, FakeLambdaContext()) == {"batchItemFailures": [{"itemIdentifier": parent}]}
    assert items() == written
    assert (metrics.values["RecordsWritten"], metrics.values["RecordsSuperseded"]) == (0, 4)


def test_an_older_aggregate_delivered_again_never_overwrites_a_newer_user_record(payments):
    module, _ = payments
    older = aggregate(("p", {"paymentId": "p", "v": 1}), ("p", {"paymentId": "p", "v": 2}))
    newer = aggregate(("p", {"paymentId": "p", "v": 3}))  # one user record alone is still an aggregate here
    records = kinesis_event([("p", older), ("p", newer)], first_sequence=FIRST)["Records"]
    module.lambda_handler({"Records": records}, FakeLambdaContext())
    module.lambda_handler({"Records": records[:1]}, FakeLambdaContext())  # a bisected older half, say
    assert items()["p"]["v"] == 3
    assert items()["p"]["recordVersion"] == record_version(str(FIRST + 1), 0)


def test_framed_avro_and_json_inside_user_records_decode_as_usual(payments):
    module, _ = payments
    glue_versions = {version: definition(name) for version, name in PAYMENT_EVENT_SCHEMA_VERSIONS.items()}
    v1_id, v2_id = PAYMENT_EVENT_SCHEMA_VERSIONS
    codec = RegistryDeserializer(glue_versions.__getitem__, {7: glue_versions[v2_id]}.__getitem__)
    built = module.processor
    module.processor = StreamProcessor(built.settings, decode=PayloadDecoder(codec.decode).decode,
                                       logger=built.logger, metrics=built.metrics)  # fmt: skip
    payment = {"paymentId": "pay-a", "accountId": "acct-1", "amount": Decimal("12.50"), "currency": "EUR",
               "createdAt": datetime(2026, 11, 21, 12, tzinfo=UTC), "status": "SETTLED"}  # fmt: skip
    v1, v2 = parse_definition(glue_versions[v1_id]), parse_definition(glue_versions[v2_id])
    data = aggregate(
        ("pay", encode_glue(payment | {"paymentId": "pay-glue"}, v1, v1_id, compress=True)),
        ("pay", encode_confluent(payment | {"paymentId": "pay-confluent", "channel": "web"}, v2, 7)),
        ("pay", {"paymentId": "pay-json", "status": "PENDING", "amount": 1.5}),
    )
    response = module.lambda_handler(kinesis_event([("pay", data)], first_sequence=FIRST), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    stored = items()
    assert (stored["pay-glue"]["status"], stored["pay-confluent"]["channel"], stored["pay-json"]["amount"]) == (
        "SETTLED", "web", Decimal("1.5"))  # fmt: skip
    assert stored["pay-glue"]["amount"] == Decimal("12.50")
