"""The stream processor: decode/validate steps, and the handler on the sample events against moto."""

import base64
import itertools
import json
import sys
import weakref
from dataclasses import replace
from decimal import Decimal
from uuid import UUID

import boto3
import pytest
from support import (
    PAYMENT_EVENT_SCHEMA_VERSIONS,
    UNICORN_ENV,
    AlwaysThrottled,
    FakeClock,
    FakeLambdaContext,
    create_unicorn_table,
    definition,
    kinesis_event,
    load_event,
    load_handler_module,
    table_items,
)

from tributary import producer
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.dynamo_items import EncodedJson
from tributary_shared.dynamo_writer import WRITE_RETRY, BatchWriter
from tributary_shared.errors import ConfigurationError, PoisonRecordError, TransientError
from tributary_shared.invocation import kinesis_data
from tributary_shared.kinesis_batch import KinesisBatch, record_version
from tributary_shared.payloads import PayloadDecoder
from tributary_shared.schema_registry import RegistrySettings
from tributary_shared.stream_processor.processor import (
    BatchOutcome,
    StreamProcessor,
    validate_item,
    validate_keys,
)
from tributary_shared.stream_processor.settings import StreamProcessorSettings

SETTINGS = StreamProcessorSettings(table_name="UnicornSensorData", key_attributes=("Name", "StatusTime"))
# What the handler decodes with, minus a registry: JSON, and framed records refused as poison.
decode_payload = PayloadDecoder().decode


def table_versions() -> dict[tuple[str, str], str]:
    items = boto3.resource("dynamodb").Table("UnicornSensorData").scan()["Items"]
    return {(item["Name"], item["StatusTime"]): item["recordVersion"] for item in items}


def decoded(record: dict) -> dict:
    return json.loads(base64.b64decode(record["kinesis"]["data"]), parse_float=Decimal)


@pytest.fixture
def handler(aws):
    create_unicorn_table()
    return load_handler_module("stream_processor", **UNICORN_ENV).lambda_handler


# ---------------------------------------------------------------- decode and validate


def kinesis_record(data: bytes | str, sequence: str = "1") -> dict:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return {"kinesis": {"data": encoded, "sequenceNumber": sequence}}


def test_json_numbers_become_exact_decimals():
    item = decode_payload(b'{"Name": "Shadowfax", "Latitude": 42.26, "Distance": 175}')
    assert item == {"Name": "Shadowfax", "Latitude": Decimal("42.26"), "Distance": 175}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b'{"Name": "Shadowfax"', "not valid JSON"),
        (b"[1, 2]", "expected an object"),
        (b'{"Distance": NaN}', "not valid JSON"),
        (b'{"Name": "\xff"}', "not UTF-8"),
        (b"\x7fELF", "first byte 0x7f"),
    ],
)
def test_bad_payloads_are_poison_with_a_reason(data, message):
    with pytest.raises(PoisonRecordError, match=message):
        decode_payload(data)


def test_bad_base64_is_poison():
    with pytest.raises(PoisonRecordError, match="base64"):
        kinesis_data(kinesis_record("not base64!"), max_bytes=1000)


@pytest.mark.parametrize("record", [{"kinesis": {"data": "é=="}}, {"kinesis": {}}, {"kinesis": {"data": None}}])
def test_malformed_record_data_is_that_records_poison_not_a_crash(record):
    with pytest.raises(PoisonRecordError, match="not valid base64"):
        kinesis_data(record)


def test_oversized_record_is_poison_before_decoding():
    with pytest.raises(PoisonRecordError, match="larger than 100 bytes"):
        kinesis_data(kinesis_record(b"x" * 200), max_bytes=100)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"StatusTime": "t"}, "no key attribute 'Name'"),
        ({"Name": 7, "StatusTime": "t"}, "must be a string, got int"),
        ({"Name": "", "StatusTime": "t"}, "'Name' is empty"),
    ],
)
def test_key_validation_names_the_problem(item, message):
    with pytest.raises(PoisonRecordError, match=message):
        validate_keys(item, ("Name", "StatusTime"))


# ---------------------------------------------------------------- handler on the sample events


def test_normal_batch_is_written_in_full(handler):
    event = load_event("kinesis-unicorn.json")
    response = handler(event, FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    expected = {(r["Name"], r["StatusTime"]): r for r in map(decoded, event["Records"])}
    assert table_items() == expected
    # Every item records the stream position of the record that wrote it.
    versions = {
        (decoded(r)["Name"], decoded(r)["StatusTime"]): record_version(r["kinesis"]["sequenceNumber"])
        for r in event["Records"]
    }
    assert table_versions() == versions


def test_poison_record_is_reported_and_the_valid_records_around_it_are_written(handler):
    event = load_event("kinesis-error.json")
    records = event["Records"]
    response = handler(event, FakeLambdaContext())
    poison = records[2]["kinesis"]["sequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": poison}]}
    # Valid records after the poison are stored now too, so they survive however the mapping retries.
    valid = records[:2] + records[3:]
    assert set(table_items()) == {(r["Name"], r["StatusTime"]) for r in map(decoded, valid)}


def test_the_producers_poison_pills_are_reported_and_never_written(handler):
    statuses = list(itertools.islice(producer.unicorn_statuses(["Shadowfax", "Rocinante"], seed=7), 40))
    good_bytes = [producer.json_bytes(status) for status in statuses]
    entries = list(producer.with_poison_pills(
        (status["Name"], status, data) for status, data in zip(statuses, good_bytes, strict=True)
    ))  # fmt: skip
    event = kinesis_event(entries)
    response = handler(event, FakeLambdaContext())
    pills = [index for index, ((_, sent), good) in enumerate(zip(entries, good_bytes, strict=True)) if sent != good]
    assert len(pills) == 4  # every tenth record: two say "error" in InputData, two are cut short
    first_pill = event["Records"][pills[0]]["kinesis"]["sequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": first_pill}]}
    written = {(status["Name"], status["StatusTime"]) for index, status in enumerate(statuses) if index not in pills}
    assert set(table_items()) == written


def test_too_deeply_nested_record_is_poison():
    nested: dict = {"leaf": 1}
    for _ in range(40):
        nested = {"inner": nested}
    with pytest.raises(PoisonRecordError, match="nested deeper than 32"):
        validate_item({"Name": "a", "StatusTime": "t", "deep": nested}, ("Name", "StatusTime"))
    validate_item({"Name": "a", "StatusTime": "t", "deep": {"a": [{"b": 1}]}}, ("Name", "StatusTime"))


def test_duplicate_keys_keep_the_highest_sequence_number(handler):
    event = load_event("kinesis-duplicates.json")
    response = handler(event, FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    items = table_items()
    assert len(items) == 2
    newest = decoded(event["Records"][2])
    assert items[(newest["Name"], newest["StatusTime"])] == newest


def test_records_out_of_order_in_the_event_are_applied_in_sequence_order(handler):
    event = load_event("kinesis-duplicates.json")
    event["Records"].reverse()
    handler(event, FakeLambdaContext())
    newest = max(event["Records"], key=lambda r: int(r["kinesis"]["sequenceNumber"]))
    assert table_items()[("Shadowfax", "2017-06-05 09:17:08.189")] == decoded(newest)


def test_every_record_is_written_or_at_or_after_the_reported_checkpoint(handler):
    event = load_event("kinesis-error.json")
    response = handler(event, FakeLambdaContext())
    checkpoint = int(response["batchItemFailures"][0]["itemIdentifier"])
    written = set(table_items())
    for record in event["Records"]:
        sequence = int(record["kinesis"]["sequenceNumber"])
        try:
            key = (decoded(record)["Name"], decoded(record)["StatusTime"])
        except ValueError:
            key = None
        assert key in written or sequence >= checkpoint


def test_missing_configuration_fails_the_cold_start_with_a_clear_message(aws):
    with pytest.raises(ConfigurationError, match="TABLE_NAME"):
        load_handler_module("stream_processor", TABLE_NAME="", KEY_ATTRIBUTES="Name")


# ---------------------------------------------------------------- transient failures


def processor_with(writer=None, decode=None, settings=SETTINGS) -> StreamProcessor:
    return StreamProcessor(settings, writer=writer, decode=decode)


def test_throttled_writes_are_transient_and_reported_from_the_first_record(aws):
    clock = FakeClock()
    retry = replace(WRITE_RETRY, clock=clock, sleep=clock.sleep)
    writer = BatchWriter("UnicornSensorData", ("Name", "StatusTime"), AlwaysThrottled(), retry=retry)
    records = load_event("kinesis-unicorn.json")["Records"]
    outcome = processor_with(writer).process(KinesisBatch.of_records(records, 2, BatchOutcome, clock=clock))
    assert set(outcome.failed_transient) == {r["kinesis"]["sequenceNumber"] for r in records}
    assert not outcome.failed_permanent and outcome.written == 0
    assert outcome.response() == {"batchItemFailures": [{"itemIdentifier": records[0]["kinesis"]["sequenceNumber"]}]}


def test_registry_outage_is_transient_and_earlier_records_are_still_written(aws):
    create_unicorn_table()
    records = load_event("kinesis-unicorn.json")["Records"]
    outage_at = records[3]["kinesis"]["data"]

    def decode(data: bytes) -> dict:
        if base64.b64encode(data).decode() == outage_at:
            raise TransientError("schema registry unavailable: ThrottlingException")
        return decode_payload(data)

    outcome = processor_with(decode=decode).process(KinesisBatch.of_records(records, 10**9, BatchOutcome))
    outage_sequence = records[3]["kinesis"]["sequenceNumber"]
    assert outcome.failed_transient == {outage_sequence: "schema registry unavailable: ThrottlingException"}
    assert outcome.written == 3 and outcome.not_reached == 2 and len(table_items()) == 3


def test_each_invocation_emits_metrics_and_a_structured_log_per_failure(aws, capsys):
    create_unicorn_table()
    module = load_handler_module("stream_processor", **UNICORN_ENV)
    for log_handler in module.logger.handlers:  # Powertools binds sys.stdout when the logger is first made
        log_handler.setStream(sys.stdout)
    module.lambda_handler(load_event("kinesis-error.json"), FakeLambdaContext())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (emf,) = [line for line in lines if "_aws" in line]
    counts = {name: emf[name] for name in ("RecordsIn", "RecordsWritten", "FailedPermanent", "RecordsDeferred")}
    assert counts == {"RecordsIn": [5.0], "RecordsWritten": [4.0], "FailedPermanent": [1.0], "RecordsDeferred": [0.0]}
    (failure_log,) = [line for line in lines if line.get("message") == "permanent failure"]
    assert failure_log["level"] == "WARNING" and "not valid JSON" in failure_log["reason"]


# ---------------------------------------------------------------- payments: registry-framed Avro



def schema_files_as_registry() -> PayloadDecoder:
    """The handler's decoder, its registry codec answering from the schema files instead of Glue."""
    definitions = {version: definition(name) for version, name in PAYMENT_EVENT_SCHEMA_VERSIONS.items()}
    return PayloadDecoder(RegistryDeserializer(definitions.__getitem__).decode)


def test_avro_payment_event_keeps_the_latest_state_of_each_payment(aws):
    boto3.client("dynamodb").create_table(
        TableName="Payments",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "paymentId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "paymentId", "KeyType": "HASH"}],
    )
    module = load_handler_module("stream_processor", TABLE_NAME="Payments", KEY_ATTRIBUTES="paymentId")
    built = module.processor  # as the cold start built it, with the schema files passed in as the decoder
    module.processor = StreamProcessor(
        built.settings, decode=schema_files_as_registry().decode, logger=built.logger, metrics=built.metrics
    )
    response = module.lambda_handler(load_event("kinesis-payment-avro.json"), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    items = {i["paymentId"]: i for i in boto3.resource("dynamodb").Table("Payments").scan()["Items"]}
    assert {pid: (i["status"], i.get("channel")) for pid, i in items.items()} == {
        "pay-00000001": ("SETTLED", "web"),
        "pay-00000002": ("DECLINED", "mobile"),
    }
    assert isinstance(items["pay-00000001"]["amount"], Decimal)


def test_invalid_registry_settings_fail_the_invocation_instead_of_poisoning_records(aws):
    """A bad READER_SCHEMA is the deployment's fault: Lambda retries the batch, no record is dead-lettered."""
    settings = replace(SETTINGS, registry=RegistrySettings(reader_schema="{not a schema"))
    frame = b"\x03\x00" + UUID(int=1).bytes + b"\x02"
    processor = processor_with(settings=settings)
    with pytest.raises(ConfigurationError, match="schema registry settings"):
        processor.process(KinesisBatch.of_records(kinesis_event([("k", frame)])["Records"], 10**9, BatchOutcome))


# ---------------------------------------------------------------- memory: one chunk at a time


class Decoded(dict):
    """A decoded record that can be watched (a plain dict cannot be weakly referenced)."""


def test_a_decoded_record_is_let_go_once_it_is_prepared_and_only_one_chunk_is_held():
    """Memory stays flat in the batch's size: no decoded record outlives its preparation, and when a
    transaction is sent only its own items are held, the batch's later records not yet decoded."""
    alive: list[weakref.ref] = []
    decoded_when_sent: list[int] = []

    def decode(data: bytes) -> dict:
        record = Decoded(decode_payload(data))
        alive.append(weakref.ref(record))
        return record

    class Watching:
        def __init__(self) -> None:
            self.meta = boto3.client("dynamodb").meta  # the writer's hooks go here; nothing is sent
            self.items_per_request: list[int] = []

        def transact_write_items(self, TransactItems: EncodedJson) -> dict:
            decoded_when_sent.append(len(alive))
            assert not any(ref() for ref in alive)  # every decoded record is already gone
            self.items_per_request.append(len(TransactItems.decoded()))
            return {}

    client = Watching()
    writer = BatchWriter("UnicornSensorData", SETTINGS.key_attributes, client, version_attribute="recordVersion")
    statuses = [{"Name": f"u{i}", "StatusTime": f"t{i}"} for i in range(250)]
    event = kinesis_event([(status["Name"], json.dumps(status).encode()) for status in statuses])
    outcome = processor_with(writer, decode).process(KinesisBatch.of_records(event["Records"], 10**12, BatchOutcome))
    assert outcome.written == 250 and client.items_per_request == [100, 100, 50]
    assert decoded_when_sent == [100, 200, 250]  # the next chunk is decoded only after this one is sent
