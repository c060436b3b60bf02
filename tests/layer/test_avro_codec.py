"""The registry-framed Avro codec: round trips, interoperability, evolution, and every bad input."""

import base64
import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from unittest import mock
from uuid import UUID, uuid4

import boto3
import pytest
from aws_schema_registry import DataAndSchema, KafkaDeserializer, KafkaSerializer, SchemaRegistryClient
from aws_schema_registry.avro import AvroSchema
from hypothesis import given, settings
from hypothesis import strategies as st
from support import PAYMENT_EVENT_SCHEMA_VERSIONS, REPO_ROOT, definition

from tributary.avro_encoding import avro_body, encode_confluent, encode_glue
from tributary.runtime.template import load_yaml
from tributary.schema_registration import SchemaRegistration
from tributary_shared.avro_bounds import MAX_NESTING_DEPTH, body_check
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.avro_reading import MAX_DECOMPRESSED_BYTES
from tributary_shared.avro_schemas import parse_definition
from tributary_shared.errors import ConfigurationError, PoisonRecordError, TransientError
from tributary_shared.payloads import PayloadDecoder
from tributary_shared.schema_registry import GlueSchemaRegistry, RegistrySettings

PAYMENT_V1, PAYMENT_V2 = definition("payment_event_v1"), definition("payment_event_v2")
CUSTOMER_V1, CUSTOMER_V2 = definition("customer_v1"), definition("customer_v2")
UNICORN = definition("unicorn_status")
V1_ID, V2_ID, UNICORN_ID = UUID(int=1), UUID(int=2), UUID(int=3)
DEFINITIONS = {V1_ID: PAYMENT_V1, V2_ID: PAYMENT_V2, UNICORN_ID: UNICORN}


def lookup(version_id: UUID) -> str:
    if version_id not in DEFINITIONS:
        raise PoisonRecordError(f"registry has no schema version {version_id}")
    return DEFINITIONS[version_id]


def payment(**overrides):
    record = {
        "paymentId": "pay-1",
        "accountId": "acct-9",
        "amount": Decimal("12.34"),
        "currency": "EUR",
        "status": "SETTLED",
        "createdAt": datetime(2026, 11, 21, 12, 0, 0, 123000, tzinfo=UTC),
    }
    return record | overrides


def as_decoded(record):
    """What the codec returns: timestamps as ISO-8601 strings, everything else as written."""
    created = record["createdAt"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return record | {"createdAt": created}


names = st.text(min_size=0, max_size=40)
payments = st.fixed_dictionaries(
    {
        "paymentId": names,
        "accountId": names,
        "amount": st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2),
        "currency": st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
        "status": st.sampled_from(["PENDING", "AUTHORIZED", "SETTLED", "DECLINED", "REFUNDED"]),
        "createdAt": st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)),
        "channel": st.one_of(st.none(), names),
    }
)
unicorns = st.fixed_dictionaries(
    {
        "Name": names,
        "StatusTime": names,
        "Latitude": st.floats(allow_nan=False),
        "Longitude": st.floats(allow_nan=False),
        "Distance": st.floats(allow_nan=False),
        "MagicPoints": st.integers(-(2**31), 2**31 - 1),
        "HealthPoints": st.integers(-(2**31), 2**31 - 1),
    }
)


# ------------------------------------------------------------------------------------ round trips


@settings(max_examples=150)
@given(record=payments, compress=st.booleans())
def test_glue_round_trip_in_both_compression_modes(record, compress):
    data = encode_glue(record, parse_definition(PAYMENT_V2), V2_ID, compress=compress)
    assert data[0] == 0x03 and data[1] == (0x05 if compress else 0x00) and data[2:18] == V2_ID.bytes
    assert RegistryDeserializer(lookup)(data) == as_decoded(record)


@settings(max_examples=150)
@given(record=unicorns, schema_id=st.integers(0, 2**32 - 1))
def test_confluent_round_trip(record, schema_id):
    data = encode_confluent(record, parse_definition(UNICORN), schema_id)
    assert data[0] == 0x00 and int.from_bytes(data[1:5], "big") == schema_id
    assert RegistryDeserializer(confluent_lookup=lambda _: UNICORN)(data) == record


@settings(max_examples=100)
@given(record=unicorns, compress=st.booleans())
def test_unicorn_round_trip(record, compress):
    data = encode_glue(record, parse_definition(UNICORN), UNICORN_ID, compress=compress)
    assert RegistryDeserializer(lookup)(data) == record


def test_confluent_ids_outside_32_bits_are_refused():
    with pytest.raises(ValueError, match="unsigned 32-bit"):
        encode_confluent(payment(), parse_definition(PAYMENT_V1), 2**32)


# ------------------------------------------------------------------------------------ evolution


def test_a_v1_reader_keeps_working_when_producers_move_to_v2():
    data = encode_glue(payment(channel="web"), parse_definition(PAYMENT_V2), V2_ID)
    assert RegistryDeserializer(lookup, reader_schema=PAYMENT_V1)(data) == as_decoded(payment())


def test_a_v2_reader_fills_the_new_field_default_for_v1_data():
    data = encode_glue(payment(), parse_definition(PAYMENT_V1), V1_ID, compress=True)
    assert RegistryDeserializer(lookup, reader_schema=PAYMENT_V2)(data) == as_decoded(payment(channel=None))


def test_customer_full_name_evolves_both_ways():
    definitions = {UUID(int=11): CUSTOMER_V1, UUID(int=12): CUSTOMER_V2}
    old = encode_glue({"first_name": "Ada", "last_name": "Lovelace"}, parse_definition(CUSTOMER_V1), UUID(int=11))
    new_record = {"first_name": "Ada", "last_name": "Lovelace", "full_name": "Ada Lovelace"}
    new = encode_glue(new_record, parse_definition(CUSTOMER_V2), UUID(int=12))
    v2_reader = RegistryDeserializer(definitions.__getitem__, reader_schema=CUSTOMER_V2)
    v1_reader = RegistryDeserializer(definitions.__getitem__, reader_schema=CUSTOMER_V1)
    assert v2_reader(old) == {"first_name": "Ada", "last_name": "Lovelace", "full_name": None}
    assert v1_reader(new) == {"first_name": "Ada", "last_name": "Lovelace"}


def test_a_reader_schema_the_writer_cannot_resolve_to_is_a_transient_configuration_error():
    data = encode_glue(payment(), parse_definition(PAYMENT_V1), V1_ID)
    with pytest.raises(TransientError, match="configuration problem") as caught:
        RegistryDeserializer(lookup, reader_schema=CUSTOMER_V1)(data)
    assert not caught.value.permanent


@pytest.mark.parametrize("compress", [False, True])
def test_the_unresolvable_error_names_the_field(compress):
    v1 = json.loads(PAYMENT_V1)
    needs_merchant = v1 | {"fields": [*v1["fields"], {"name": "merchant", "type": "string"}]}
    id_as_number = v1 | {"fields": [f | {"type": "long"} if f["name"] == "paymentId" else f for f in v1["fields"]]}
    data = encode_glue(payment(), parse_definition(PAYMENT_V1), V1_ID, compress=compress)
    deserializer = RegistryDeserializer(lookup, reader_schema=json.dumps(needs_merchant))
    for _ in range(2):  # the first record plans the read, the second takes the cached fast path
        with pytest.raises(TransientError, match=r"merchant \(not written, no default\)"):
            deserializer(data)
    with pytest.raises(TransientError, match=r"paymentId \(written as string, read as long\)"):
        RegistryDeserializer(lookup, reader_schema=json.dumps(id_as_number))(data)


@pytest.mark.parametrize("setting", ['{"type": "record"', '{"type": "record", "name": "R", "fields": [{"name": "a"}]}'])
def test_a_bad_reader_schema_setting_fails_at_construction(setting):
    with pytest.raises(ConfigurationError, match="READER_SCHEMA"):
        RegistryDeserializer(lookup, reader_schema=setting)
    with pytest.raises(ConfigurationError, match=r"schema registry settings are invalid.*READER_SCHEMA"):
        RegistryDeserializer.from_settings(RegistrySettings.from_env({"READER_SCHEMA": setting}))


# ------------------------------------------------------------------------------------ caching


def test_each_schema_version_is_looked_up_once():
    calls: list[UUID] = []

    def counting(version_id: UUID) -> str:
        calls.append(version_id)
        return lookup(version_id)

    deserializer = RegistryDeserializer(counting)
    for _ in range(5):
        deserializer(encode_glue(payment(), parse_definition(PAYMENT_V1), V1_ID))
        deserializer(encode_glue(payment(), parse_definition(PAYMENT_V2), V2_ID, compress=True))
    assert calls == [V1_ID, V2_ID]


def test_the_cache_is_bounded_and_evicts_the_oldest():
    calls: list[UUID] = []
    deserializer = RegistryDeserializer(lambda v: calls.append(v) or lookup(v), cache_size=1)
    first = encode_glue(payment(), parse_definition(PAYMENT_V1), V1_ID)
    second = encode_glue(payment(), parse_definition(PAYMENT_V2), V2_ID)
    for data in (first, first, second, first):
        deserializer(data)
    assert calls == [V1_ID, V2_ID, V1_ID]


def test_unknown_schema_versions_are_remembered_briefly():
    calls: list[UUID] = []
    now = [100.0]

    def counting(version_id: UUID) -> str:
        calls.append(version_id)
        return lookup(version_id)

    deserializer = RegistryDeserializer(counting, unknown_id_ttl=30, clock=lambda: now[0])
    unknown = encode_glue(payment(), parse_definition(PAYMENT_V1), UUID(int=99))
    for _ in range(50):
        with pytest.raises(PoisonRecordError, match="no schema version"):
            deserializer(unknown)
    assert calls == [UUID(int=99)]
    now[0] += 31
    DEFINITIONS[UUID(int=99)] = PAYMENT_V1  # registered since
    try:
        assert deserializer(unknown) == as_decoded(payment())
    finally:
        del DEFINITIONS[UUID(int=99)]
    assert calls == [UUID(int=99)] * 2


def test_unknown_confluent_ids_are_remembered_briefly():
    calls: list[int] = []

    def missing(schema_id: int) -> str:
        calls.append(schema_id)
        raise PoisonRecordError(f"registry has no schema id {schema_id}")

    deserializer = RegistryDeserializer(confluent_lookup=missing)
    for _ in range(20):
        with pytest.raises(PoisonRecordError):
            deserializer(encode_confluent(payment(), parse_definition(PAYMENT_V1), 7))
    assert calls == [7]


def test_a_transient_lookup_failure_propagates_and_is_not_cached():
    outcomes = [TransientError("registry throttled"), PAYMENT_V1]

    def flaky(_: UUID) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    deserializer = RegistryDeserializer(flaky)
    data = encode_glue(payment(), parse_definition(PAYMENT_V1), V1_ID)
    with pytest.raises(TransientError):
        deserializer(data)
    assert deserializer(data) == as_decoded(payment())


# ------------------------------------------------------------------------------------ bad input

GOOD = encode_glue(payment(), parse_definition(PAYMENT_V1), V1_ID)
BAD_INPUTS = {
    "empty": (b"", "record is empty"),
    "truncated header": (GOOD[:10], "truncated Glue header: 10 bytes"),
    "truncated Confluent header": (b"\x00\x00\x01", "truncated Confluent header: 3 bytes"),
    "unknown compression": (b"\x03\x07" + GOOD[2:], "unknown Glue compression byte 0x07"),
    "unknown first byte": (b"\x04" + GOOD[1:], "first byte 0x04"),
    "unknown schema version": (b"\x03\x00" + uuid4().bytes + GOOD[18:], "registry has no schema version"),
    "truncated body": (GOOD[:-4], "does not match its schema"),
    "trailing bytes": (GOOD + b"\x02\x04", "2 bytes left after the record"),
    "body of another schema": (b"\x03\x00" + UNICORN_ID.bytes + GOOD[18:], "does not match its schema"),
    "zlib garbage": (b"\x03\x05" + V1_ID.bytes + b"not zlib at all", "does not inflate"),
    "truncated zlib": (b"\x03\x05" + V1_ID.bytes + zlib.compress(GOOD[18:])[:-3], "truncated"),
    "bytes after zlib": (b"\x03\x05" + V1_ID.bytes + zlib.compress(GOOD[18:]) + b"junk", "4 bytes of garbage"),
    "zlib bomb": (b"\x03\x05" + V1_ID.bytes + zlib.compress(bytes(MAX_DECOMPRESSED_BYTES + 1)), "inflates past"),
    "Confluent without a registry": (encode_confluent(payment(), parse_definition(PAYMENT_V1), 7), "schema id 7"),
}


@pytest.mark.parametrize("data, message", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_is_a_poison_record_that_says_what_is_wrong(data, message):
    with pytest.raises(PoisonRecordError, match=message):
        RegistryDeserializer(lookup)(data)


ZLIB_GOOD = encode_glue(payment(), parse_definition(PAYMENT_V1), V1_ID, compress=True)
# Unicorn readings have no logical types: fastavro alone reads them, on the codec's inlined path.
UNICORN_READING = {"Name": "Shadowfax", "StatusTime": "2026-11-21 12:00:00.000", "Latitude": 42.3, "Longitude": -71.1,
                   "Distance": 12.5, "MagicPoints": 150, "HealthPoints": 170}  # fmt: skip
BODIES = {
    "unicorn (fastavro alone)": (UNICORN_ID, avro_body(UNICORN_READING, parse_definition(UNICORN))),
    "payment (logical types)": (V1_ID, avro_body(payment(), parse_definition(PAYMENT_V1))),
}


def bad_bodies(body: bytes) -> dict[str, tuple[int, bytes, str]]:
    """(compression byte, what follows the header, the reason) of bad records with a good header."""
    return {
        "zlib garbage": (5, b"not zlib at all", "does not inflate"),
        "truncated zlib": (5, zlib.compress(body)[:-3], "truncated"),
        "bytes after zlib": (5, zlib.compress(body) + b"junk", "4 bytes of garbage"),
        "zlib bomb": (5, zlib.compress(bytes(MAX_DECOMPRESSED_BYTES + 1)), "inflates past"),
        "zlib body too short": (5, zlib.compress(body[:-3]), "does not match its schema"),
        "zlib body too long": (5, zlib.compress(body + b"\x02"), "1 bytes left"),
        "truncated body": (0, body[:-3], "does not match its schema"),
        "trailing bytes": (0, body + b"\x02\x04", "2 bytes left after the record"),
    }


@pytest.mark.parametrize("bad", list(bad_bodies(b"")))
@pytest.mark.parametrize("schema", list(BODIES))
def test_a_known_header_does_not_soften_the_checks(bad, schema):
    """Once a header is known, records under it take the fast path: bad ones fail the same way."""
    version_id, body = BODIES[schema]
    compression, rest, message = bad_bodies(body)[bad]
    header = bytes([3, compression]) + version_id.bytes
    deserializer = RegistryDeserializer(lookup)
    assert deserializer(header + (zlib.compress(body) if compression else body))  # the header is now known
    with pytest.raises(PoisonRecordError, match=message):
        deserializer(header + rest)
    with pytest.raises(PoisonRecordError, match=message):
        RegistryDeserializer(lookup)(header + rest)  # as under a header never seen


def test_once_the_payload_decoder_meets_avro_its_entry_point_is_the_codec_and_json_still_decodes():
    """The entry point becomes the codec's `decode`, one call less per framed record; unframed records
    come back to the payload decoder and are answered exactly as before."""
    settings = RegistrySettings(glue_registry_name="tributary")
    decoder = PayloadDecoder(registry=settings)
    before = decoder.decode
    with mock.patch.object(RegistryDeserializer, "from_settings", classmethod(
        lambda cls, _, unframed=None: cls(lookup, unframed=unframed)
    )):  # fmt: skip
        assert decoder.decode(ZLIB_GOOD) == as_decoded(payment())
    assert decoder.decode != before and getattr(decoder.decode, "__self__", None).__class__ is RegistryDeserializer
    assert before(GOOD) == decoder.decode(GOOD) == decoder(GOOD) == as_decoded(payment())
    assert decoder.decode(b'{"a": 1.5}') == {"a": Decimal("1.5")}
    for data, message in [(b"", "record is empty"), (b"\x07x", "unknown record framing: first byte 0x07"),
                          (b"[1]", "JSON list, expected an object")]:  # fmt: skip
        for entry in (before, decoder.decode):
            with pytest.raises(PoisonRecordError, match=re.escape(message)):
                entry(data)


def test_a_top_level_value_that_is_not_a_record_is_refused():
    data = b"\x03\x00" + UUID(int=9).bytes + b"\x04hi"
    with pytest.raises(PoisonRecordError, match="expected a record"):
        RegistryDeserializer(lambda _: '"string"')(data)


def test_an_unusable_writer_schema_is_a_poison_record():
    data = b"\x03\x00" + UUID(int=9).bytes + b"\x00"
    with pytest.raises(PoisonRecordError, match="not usable Avro"):
        RegistryDeserializer(lambda _: '{"type": "nonsense"}')(data)


@settings(max_examples=300)
@given(garbage=st.binary(max_size=64), compress=st.sampled_from([0, 5]))
def test_random_bodies_never_escape_as_anything_but_a_poison_record(garbage, compress):
    data = bytes((3, compress)) + V1_ID.bytes + garbage
    with contextlib.suppress(PoisonRecordError):
        RegistryDeserializer(lookup)(data)


# ------------------------------------------------------------------------------------ interoperability


@pytest.fixture
def glue_registry(aws):
    glue = boto3.client("glue")
    glue.create_registry(RegistryName="interop")
    return glue


def test_bytes_from_the_aws_glue_schema_registry_library_decode_here(glue_registry):
    serializer = KafkaSerializer(SchemaRegistryClient(glue_registry, registry_name="interop"))
    data = serializer.serialize("payments", DataAndSchema(payment(channel="pos"), AvroSchema(PAYMENT_V2)))
    ours = RegistryDeserializer(GlueSchemaRegistry("interop", glue_registry).schema_definition)
    assert ours(data) == as_decoded(payment(channel="pos"))


@pytest.mark.parametrize("compress", [False, True])
def test_our_bytes_decode_with_the_aws_glue_schema_registry_library(glue_registry, compress):
    version_id = SchemaRegistration("interop", glue_registry).version_for("payments-value", PAYMENT_V1)
    data = encode_glue(payment(), parse_definition(PAYMENT_V1), version_id, compress=compress)
    theirs = KafkaDeserializer(SchemaRegistryClient(glue_registry, registry_name="interop"))
    decoded = theirs.deserialize("payments", data)
    assert decoded.data == payment()


def codec_of(environ: dict[str, str]) -> RegistryDeserializer:
    return RegistryDeserializer.from_settings(RegistrySettings.from_env(environ))


def test_the_settings_decode_against_the_named_glue_registry(glue_registry):
    version_id = SchemaRegistration("interop", glue_registry).version_for("unicorns", UNICORN)
    record = {"Name": "Shadowfax", "StatusTime": "2026-11-21 12:00:00.000", "Latitude": 1.5, "Longitude": 2.5,
              "Distance": 3.0, "MagicPoints": 110, "HealthPoints": 150}
    data = encode_glue(record, parse_definition(UNICORN), version_id, compress=True)
    assert codec_of({"GLUE_REGISTRY_NAME": "interop"})(data) == record
    with pytest.raises(PoisonRecordError, match="belongs to registry 'interop'"):
        codec_of({"GLUE_REGISTRY_NAME": "elsewhere"})(data)
    projected = codec_of({"READER_SCHEMA": UNICORN.replace('"doc"', '"note"')})
    assert projected(data) == record


# ------------------------------------------------------------------------------------ shipped files

EVENT_FILE = Path(__file__).resolve().parents[2] / "events" / "kinesis-payment-avro.json"
EVENT_SCHEMA_VERSIONS = {version: definition(name) for version, name in PAYMENT_EVENT_SCHEMA_VERSIONS.items()}


def test_the_payment_event_file_decodes_through_the_payload_decoder():
    event = json.loads(EVENT_FILE.read_text())
    decode = PayloadDecoder(RegistryDeserializer(EVENT_SCHEMA_VERSIONS.__getitem__).decode).decode
    decoded = [decode(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]
    assert [(d["paymentId"], d["status"], d.get("channel")) for d in decoded] == [
        ("pay-00000001", "PENDING", None),
        ("pay-00000001", "AUTHORIZED", None),
        ("pay-00000002", "DECLINED", "mobile"),
        ("pay-00000001", "SETTLED", "web"),
    ]
    assert decoded[0]["amount"] == Decimal("129.99") and decoded[0]["createdAt"] == "2026-11-21T12:00:00.250Z"
    assert [r["kinesis"]["partitionKey"] for r in event["Records"]] == [d["paymentId"] for d in decoded]


def test_the_template_registers_exactly_the_schema_files():
    template = load_yaml((REPO_ROOT / "template.yaml").read_text())
    resources = template["Resources"]
    assert resources["UnicornStatusSchema"]["Properties"]["SchemaDefinition"] == UNICORN
    assert resources["PaymentEventSchema"]["Properties"]["SchemaDefinition"] == PAYMENT_V1
    assert resources["PaymentEventSchemaV2"]["Properties"]["SchemaDefinition"] == PAYMENT_V2
    assert resources["PaymentEventSchemaV2"]["Properties"]["Schema"] == {"SchemaArn": {"Ref": "PaymentEventSchema"}}
    assert resources["CustomerSchema"]["Properties"]["SchemaDefinition"] == definition("customer_v1")


# ------------------------------------------------------------------------------------ benchmark fairness


def load_benchmark():
    """benchmarks/ is not a package on the test path: load the file itself."""
    path = REPO_ROOT / "benchmarks" / "bench_avro.py"
    spec = importlib.util.spec_from_file_location("bench_avro", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_times_contenders_back_to_back_on_each_slice_in_rotating_order():
    bench = load_benchmark()
    names = ["decode_payload", "codec", bench.PACKAGE, bench.FLOOR]
    ran: list[tuple[str, list[bytes]]] = []
    runs = {name: (lambda chunk, name=name: ran.append((name, chunk))) for name in names}
    chunks = [[b"1"], [b"2"], [b"3"], [b"4"]]
    seconds = bench.paired_round(runs, chunks, turn=1)
    assert [chunk for _, chunk in ran] == [chunk for chunk in chunks for _ in names]
    assert sorted(name for name, _ in ran) == sorted(names * len(chunks))
    assert [ran[slot * len(names)][0] for slot in range(len(chunks))] == [*names[1:], names[0]]
    assert set(seconds) == set(names) and min(seconds.values()) >= 0


def test_the_benchmark_reports_the_median_of_per_round_ratios_not_the_best_round():
    bench = load_benchmark()
    timings = {bench.ENTRY_POINT: [1.3, 2.1, 3.6], bench.PACKAGE: [2.0, 4.0, 6.0], bench.FLOOR: [1.0, 2.0, 3.0]}
    entry = bench.summarize(timings)[bench.ENTRY_POINT]
    # Per-round costs 1.3, 1.05 and 1.2: the best round and the ratio of medians would both say 1.05.
    assert entry.cost == pytest.approx(1.2)
    assert (entry.cost_low, entry.cost_high) == (pytest.approx(1.05), pytest.approx(1.3))
    assert entry.speedup == pytest.approx(6.0 / 3.6)
    assert entry.records_per_second == pytest.approx(bench.RECORDS / 2.1)
    assert bench.summarize(timings)[bench.FLOOR].cost == 1.0


# ------------------------------------------------------------------------------------ bounds on hostile input


def varint(value: int) -> bytes:
    """Avro's zig-zag varint of a 64-bit long."""
    zigzag = ((value << 1) ^ (value >> 63)) & (2**64 - 1)
    out = bytearray()
    while zigzag >= 0x80:
        out.append(zigzag & 0x7F | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def record_schema(name: str, fields: list[tuple[str, object]]) -> str:
    return json.dumps({"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]})


LINKED_LIST = record_schema("Node", [("next", ["null", "Node"])])
FRAMINGS = {
    "glue": lambda body: b"\x03\x00" + UUID(int=5).bytes + body,
    "glue zlib": lambda body: b"\x03\x05" + UUID(int=5).bytes + zlib.compress(body),
    "confluent": lambda body: b"\x00\x00\x00\x00\x05" + body,
}


def decoder_of(schema: str) -> RegistryDeserializer:
    return RegistryDeserializer(lambda _: schema, lambda _: schema)


def linked_list_body(levels: int) -> bytes:
    """A Node nesting `levels` records deep: each level's union picks Node, the last picks null."""
    return b"\x02" * (levels - 1) + b"\x00"


def test_a_recursive_record_nested_5000_deep_fails_alone_without_crashing_the_process():
    # In a child process: were the bound to regress, fastavro's SIGSEGV must not take pytest with it.
    script = f"""
import json, sys, zlib
from uuid import UUID
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.errors import PoisonRecordError
schema = {LINKED_LIST!r}
decoder = RegistryDeserializer(lambda _: schema)
header = b"\\x03\\x00" + UUID(int=5).bytes
for body in (b"\\x02" * 4999 + b"\\x00", b"\\x02\\x00"):
    try:
        print(json.dumps(decoder(header + body)))
    except PoisonRecordError as error:
        print(error.reason)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "layers" / "shared")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Avro body nests deeper than 64 levels", '{"next": {"next": null}}']


@pytest.mark.parametrize("framing", list(FRAMINGS))
def test_recursion_decodes_to_the_depth_bound_and_one_level_more_fails(framing):
    decoder = decoder_of(LINKED_LIST)
    deepest = decoder(FRAMINGS[framing](linked_list_body(MAX_NESTING_DEPTH)))
    levels = 1
    while deepest["next"] is not None:
        deepest, levels = deepest["next"], levels + 1
    assert levels == MAX_NESTING_DEPTH
    with pytest.raises(PoisonRecordError, match=r"^Avro body nests deeper than 64 levels$"):
        decoder(FRAMINGS[framing](linked_list_body(MAX_NESTING_DEPTH + 1)))


def test_a_schema_deeper_than_the_bound_fails_only_the_records_that_nest_that_deep():
    schema: object = "int"
    for level in range(70):
        schema = {"type": "record", "name": f"L{level}", "fields": [{"name": "inner", "type": ["null", schema]}]}
    decoder = decoder_of(json.dumps(schema))
    assert decoder(FRAMINGS["glue"](b"\x02\x00")) == {"inner": {"inner": None}}
    with pytest.raises(PoisonRecordError, match="nests deeper than 64 levels"):
        decoder(FRAMINGS["glue"](b"\x02" * 70 + b"\x00"))


ZERO_BYTE_ITEMS = {
    "null": "null",
    "empty fixed": {"type": "fixed", "name": "Nothing", "size": 0},
    "empty record": {"type": "record", "name": "Empty", "fields": []},
    "record of zero-byte fields": {"type": "record", "name": "Gaps", "fields": [
        {"name": "a", "type": "null"},
        {"name": "b", "type": {"type": "fixed", "name": "F0", "size": 0}},
        {"name": "c", "type": {"type": "record", "name": "Inner", "fields": [{"name": "d", "type": "null"}]}},
    ]},
}


@pytest.mark.parametrize("framing", list(FRAMINGS))
@pytest.mark.parametrize("item", list(ZERO_BYTE_ITEMS))
@pytest.mark.parametrize("count", [2**40, -(2**40)], ids=["count", "negative count"])
def test_zero_byte_items_cannot_claim_more_than_the_body_justifies(framing, item, count):
    decoder = decoder_of(record_schema("R", [("items", {"type": "array", "items": ZERO_BYTE_ITEMS[item]})]))
    # A negative count is followed by the block's size in bytes (Avro's skippable blocks).
    body = varint(count) + (varint(0) if count < 0 else b"") + varint(0)
    started = time.perf_counter()
    with pytest.raises(PoisonRecordError) as caught:
        decoder(FRAMINGS[framing](body))
    assert caught.value.reason == f"Avro array block claims {2**40} items but the body has {len(body)} bytes"
    assert time.perf_counter() - started < 1


def test_zero_byte_items_decode_up_to_one_per_byte_of_body_and_at_least_256():
    decoder = decoder_of(record_schema("R", [("pad", "string"), ("items", {"type": "array", "items": "null"})]))
    assert decoder(FRAMINGS["glue"](b"\x00" + varint(256) + b"\x00"))["items"] == [None] * 256
    padded = varint(1000) + b"x" * 1000 + varint(-600) + varint(0) + varint(-400) + varint(0) + b"\x00"
    assert decoder(FRAMINGS["glue"](padded)) == {"pad": "x" * 1000, "items": [None] * 1000}
    with pytest.raises(PoisonRecordError, match="claims 1010 items but the body has 1005 bytes"):
        decoder(FRAMINGS["glue"](varint(1000) + b"x" * 1000 + varint(1010) + b"\x00"))


def test_items_holding_values_that_take_no_bytes_are_bounded_by_the_body():
    fat = {"type": "record", "name": "Fat", "fields": [
        *({"name": f"gap{i}", "type": "null"} for i in range(100)), {"name": "flag", "type": "boolean"}]}
    decoder = decoder_of(record_schema("R", [("rows", {"type": "array", "items": fat})]))
    assert decoder(FRAMINGS["glue"](varint(2) + b"\x01\x00\x00"))["rows"][1]["gap99"] is None
    started = time.perf_counter()
    with pytest.raises(PoisonRecordError, match=r"holds more than 100004 values that take no bytes"):
        decoder(FRAMINGS["glue"](varint(100_000) + b"\x01" * 100_000 + b"\x00"))
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("values", ["null", "int", "Tree"])
def test_map_and_array_blocks_claiming_more_entries_than_bytes_fail_fast(values):
    decoder = decoder_of(record_schema("Tree", [("kids", {"type": "map", "values": values})]))
    started = time.perf_counter()
    for count in (2**40, -(2**40), 2**63 - 1, -(2**63)):
        body = varint(count) + (varint(3) if count < 0 else b"") + b"\x00\x00\x00"
        with pytest.raises(PoisonRecordError):
            decoder(FRAMINGS["glue"](body))
    assert time.perf_counter() - started < 1
    if values == "Tree":  # recursive, so walked: the walk names the claim
        with pytest.raises(PoisonRecordError, match="map block claims 1099511627776 items but only 3 bytes"):
            decoder(FRAMINGS["glue"](varint(2**40) + b"\x00\x00\x00"))


@pytest.mark.parametrize("schema", [
    record_schema("Plain", [("ints", {"type": "array", "items": "int"})]),
    record_schema("Walked", [("ints", {"type": "array", "items": "int"}), ("next", ["null", "Walked"])]),
], ids=["plain", "walked"])
def test_negative_block_counts_with_their_byte_size_decode_like_positive_ones(schema):
    blocks = varint(-2) + varint(2) + varint(1) + varint(2) + varint(1) + varint(3) + varint(0)
    body = blocks + (b"\x00" if "Walked" in schema else b"")
    assert decoder_of(schema)(FRAMINGS["confluent"](body))["ints"] == [1, 2, 3]


def test_only_schemas_that_need_it_have_their_bodies_walked():
    map_of_nulls = record_schema("M", [("m", {"type": "map", "values": "null"})])  # each key takes bytes
    plain = [PAYMENT_V1, PAYMENT_V2, UNICORN, CUSTOMER_V1, map_of_nulls]
    walked = [LINKED_LIST, record_schema("A", [("a", {"type": "array", "items": "null"})])]
    assert [body_check(parse_definition(schema)) for schema in plain] == [None] * len(plain)
    assert all(body_check(parse_definition(schema)) is not None for schema in walked)


@pytest.mark.parametrize("body, reason", [
    (b"\x03\x00", "union branch -2 does not exist (the union has 2)"),
    (b"\x04\x00", "union branch 2 does not exist (the union has 2)"),
    (b"\xff" * 11, "a varint runs past 10 bytes"),
    (b"\x02\x02", "ends inside a value"),
], ids=["negative union index", "union index past the end", "long varint", "truncated"])
def test_a_walked_body_that_is_not_valid_avro_fails_with_what_is_wrong(body, reason):
    with pytest.raises(PoisonRecordError, match=re.escape(reason)):
        decoder_of(LINKED_LIST)(FRAMINGS["glue"](body))


def decimal_schema(precision: int, scale: int) -> str:
    return record_schema("D", [("amount", {"type": "bytes", "logicalType": "decimal",
                                           "precision": precision, "scale": scale})])


def test_a_decimal_longer_than_its_precision_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(PoisonRecordError, match=r"^Avro decimal of 1000000 bytes is longer than precision 12 allows$"):
        decoder_of(decimal_schema(12, 2))(FRAMINGS["glue zlib"](varint(1_000_000) + b"\x7f" * 1_000_000))
    with pytest.raises(PoisonRecordError, match="at most 4300 digits are read"):
        decoder_of(decimal_schema(10**6, 2))(FRAMINGS["glue zlib"](varint(1_000_000) + b"\x7f" * 1_000_000))
    assert time.perf_counter() - started < 1
    with pytest.raises(PoisonRecordError, match=r"^Avro decimal has 5 digits, more than its precision 3$"):
        decoder_of(decimal_schema(3, 2))(FRAMINGS["glue"](varint(2) + b"\x7f\xff"))


@pytest.mark.parametrize("value", ["12345678901234567890123456.789012345678", "-0.000000000100", "0E-12"])
def test_decimals_decode_exactly_to_38_digits(value):
    schema = decimal_schema(38, 12)
    data = encode_glue({"amount": Decimal(value)}, parse_definition(schema), UUID(int=5))
    decoded = decoder_of(schema)(data)["amount"]
    assert str(decoded) == str(Decimal(value))


def test_a_writer_schema_nesting_too_deep_for_the_parser_fails_its_records_only():
    deep_json = '{"type": "record", "name": "R", "fields": [], "x": ' + "[" * 600 + "]" * 600 + "}"
    too_deep_for_json = '{"type": "record", "name": "R", "fields": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    for schema, reason in ((deep_json, "nests deeper than 512 levels"), (too_deep_for_json, "not usable Avro")):
        with pytest.raises(PoisonRecordError, match=reason):
            decoder_of(schema)(FRAMINGS["glue"](b""))


# ------------------------------------------------------------------------------------ known headers

SHADOWFAX = {"Name": "Shadowfax", "StatusTime": "2026-11-21 12:00:00.000", "Latitude": 1.5, "Longitude": 2.5,
             "Distance": 3.0, "MagicPoints": 110, "HealthPoints": 150}
VALID_BODIES = {V1_ID: avro_body(payment(), parse_definition(PAYMENT_V1)),
                V2_ID: avro_body(payment(channel="web"), parse_definition(PAYMENT_V2)),
                UNICORN_ID: avro_body(SHADOWFAX, parse_definition(UNICORN))}


def glue_frame(version_id: UUID, body: bytes, compress: bool) -> bytes:
    if compress:
        return b"\x03\x05" + version_id.bytes + zlib.compress(body)
    return b"\x03\x00" + version_id.bytes + body


def warmed(header: bytes, **options) -> RegistryDeserializer:
    """A deserializer that has decoded a valid record under this 18-byte header: the next takes the per-record path."""
    deserializer = RegistryDeserializer(lookup, **options)
    version_id = UUID(bytes=header[2:18])
    deserializer(glue_frame(version_id, VALID_BODIES[version_id], compress=header[1] == 0x05))
    return deserializer


# The bad inputs whose header names a known schema version, plain and zlib.
KNOWN_HEADER_CASES = {name: BAD_INPUTS[name] for name in (
    "truncated body", "trailing bytes", "body of another schema",
    "zlib garbage", "truncated zlib", "bytes after zlib", "zlib bomb",
)}


@pytest.mark.parametrize("data, message", list(KNOWN_HEADER_CASES.values()), ids=list(KNOWN_HEADER_CASES))
def test_a_known_header_refuses_a_bad_body_with_the_same_reason(data, message):
    with pytest.raises(PoisonRecordError, match=message):
        warmed(data[:18])(data)


def test_plain_and_zlib_frames_of_one_version_share_one_lookup_and_both_stay_decodable():
    calls: list[UUID] = []
    deserializer = RegistryDeserializer(lambda version_id: calls.append(version_id) or lookup(version_id))
    for _ in range(3):
        for compress in (False, True):
            assert deserializer.decode(glue_frame(UNICORN_ID, VALID_BODIES[UNICORN_ID], compress)) == SHADOWFAX
            assert deserializer(glue_frame(V1_ID, VALID_BODIES[V1_ID], compress)) == as_decoded(payment())
    assert calls == [UNICORN_ID, V1_ID]


# How a deserializer is set up, and the writer schema version its frames name: records with plain
# values, temporal values made portable, a reader schema to project onto, bodies walked first
# (recursive), and a top-level value that is not a record.
KNOWN_HEADER_SETUPS = {
    "plain values": ({}, UNICORN_ID),
    "temporal values": ({}, V1_ID),
    "reader schema": ({"reader_schema": PAYMENT_V1}, V2_ID),
    "walked bodies": ({"lookup": lambda _: LINKED_LIST}, UUID(int=5)),
    "not a record": ({"lookup": lambda _: '"string"'}, UUID(int=9)),
}
SETUP_VALID_BODIES = {**VALID_BODIES, UUID(int=5): linked_list_body(3), UUID(int=9): b"\x04hi"}


def outcome(decode: Callable[[bytes], dict], data: bytes) -> object:
    try:
        return decode(data)
    except (PoisonRecordError, TransientError) as error:
        return type(error), re.sub(r"0x[0-9a-f]+", "0x…", error.reason)  # fastavro names the buffer's address


@st.composite
def known_header_frames(draw, version_id: UUID) -> bytes:
    """A frame under `version_id`: valid, cut short, extended or random; zlib streams also cut or followed by bytes."""
    valid = SETUP_VALID_BODIES[version_id]
    body = draw(st.one_of(
        st.just(valid),
        st.integers(0, len(valid) - 1).map(lambda length: valid[:length]),
        st.binary(min_size=1, max_size=4).map(lambda extra: valid + extra),
        st.binary(max_size=48),
    ))
    if not draw(st.booleans()):
        return glue_frame(version_id, body, compress=False)
    stream = zlib.compress(body)
    cut, extra = draw(st.integers(0, 6)), draw(st.binary(max_size=4))
    return b"\x03\x05" + version_id.bytes + stream[: len(stream) - cut] + extra


@settings(max_examples=300)
@given(data=st.data(), setup=st.sampled_from(sorted(KNOWN_HEADER_SETUPS)))
def test_a_known_header_decodes_every_frame_exactly_as_a_first_sight_does(data, setup):
    options, version_id = KNOWN_HEADER_SETUPS[setup]
    frame = data.draw(known_header_frames(version_id))
    kwargs = {key: value for key, value in options.items() if key != "lookup"}
    first_sight = RegistryDeserializer(options.get("lookup", lookup), **kwargs)
    known = RegistryDeserializer(options.get("lookup", lookup), **kwargs)
    outcome(known, glue_frame(version_id, SETUP_VALID_BODIES[version_id], compress=frame[1] == 0x05))
    assert outcome(known.decode, frame) == outcome(first_sight, frame)
