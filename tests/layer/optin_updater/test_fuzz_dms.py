"""Fuzzing the DMS record parser: whatever the bytes, each record is a change, a skip or poison with a reason.

Inputs: random bytes, random JSON trees (with lone surrogates, huge and over-limit integers, NaN,
deep nesting spliced in as raw text), and the sample events' records with one to three values
replaced, removed or added anywhere in them, then optionally corrupted byte-wise.
"""

import base64
import copy
import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import EVENTS_DIR

from tributary_shared.errors import PoisonRecordError
from tributary_shared.optin_updater.dms_records import (
    MAX_RECORD_BYTES,
    ROW_OPERATIONS,
    DmsSource,
    OptInChange,
    SkippedRecord,
    parse_dms_record,
)

SOURCES = [DmsSource("optin_status"), DmsSource("optin_status", schema="blog_db", before_image_field="BI")]
SAMPLE_DOCUMENTS = [
    json.loads(base64.b64decode(record["kinesis"]["data"]))
    for path in sorted(EVENTS_DIR.glob("dms-*.json"))
    for record in json.loads(path.read_text())["Records"]
]
MAX_REASON_CHARS = 300

# JSON text no json.dumps writes: spliced into a document where a placeholder string stands.
RAW_FRAGMENTS = st.one_of(
    st.integers(1, 30_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 10_000).map(lambda depth: '{"a":' * depth + "0" + "}" * depth),
    st.integers(4_200, 5_000).map(lambda digits: "9" * digits),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999999999", "-0", "1E-400", '"\\ud800"', '"\\udfff\\ud800"']),
)
PLACEHOLDER = "\x00raw\x00"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**38, max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["data", "control", *sorted(ROW_OPERATIONS), "optin_status", "blog_db", "0", "1", "+12065550101"]),
    st.just(PLACEHOLDER),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


fragment_lists = st.lists(RAW_FRAGMENTS, min_size=1, max_size=2)
member_names = st.text(max_size=12)
mutations = st.sampled_from(["replace", "remove", "add"])


def render(document: Any, fragments: list[str]) -> bytes:
    """JSON bytes of `document` with each placeholder replaced by the next raw fragment, in turn."""
    text = json.dumps(document)
    quoted = json.dumps(PLACEHOLDER)
    pieces = text.split(quoted)
    spliced = pieces[0]
    for index, piece in enumerate(pieces[1:]):
        spliced += fragments[index % len(fragments)] + piece
    return spliced.encode()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths(inner, (*prefix, index))
    return found


def parent_of(document: Any, path: tuple[Any, ...]) -> Any:
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    return parent


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """A sample record with one to three values replaced, keys removed or keys added, anywhere in it."""
    document = copy.deepcopy(draw(st.sampled_from(SAMPLE_DOCUMENTS)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(document)))
        if not path:
            document = draw(json_values)
            continue
        parent = parent_of(document, path)
        action = draw(mutations)
        if action == "replace" or not isinstance(parent, dict):
            parent[path[-1]] = draw(json_values)
        elif action == "remove":
            del parent[path[-1]]
        else:
            parent[draw(member_names)] = draw(json_values)
    return render(document, draw(fragment_lists))


corruptions = st.sampled_from(["insert", "flip", "truncate"])
inserted_bytes = st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3", b"\x00", b'"', b"{"])


@st.composite
def corrupted(draw: st.DrawFn, records: st.SearchStrategy[bytes]) -> bytes:
    """A record with a few bytes flipped, inserted or cut: bad UTF-8, broken syntax, truncation."""
    data = bytearray(draw(records))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data)))
        action = draw(corruptions)
        if action == "insert":
            data[position:position] = draw(inserted_bytes)
        elif action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        else:
            del data[position:]
    return bytes(data)


random_documents = st.builds(render, json_values, fragment_lists)
dms_inputs = st.one_of(
    st.binary(max_size=200),
    random_documents,
    mutated_samples(),
    corrupted(mutated_samples()),
    corrupted(st.sampled_from([json.dumps(document).encode() for document in SAMPLE_DOCUMENTS])),
)


def assert_readable_reason(reason: str) -> None:
    assert reason and len(reason) <= MAX_REASON_CHARS, reason
    reason.encode("utf-8")  # a reason is logged as UTF-8: it must not carry a lone surrogate


def assert_well_typed(change: OptInChange) -> None:
    assert change.operation in ROW_OPERATIONS
    assert isinstance(change.user_id, str) and change.user_id
    assert isinstance(change.opted_in, bool) and isinstance(change.already_opted_in, bool)
    assert not (change.operation == "delete" and change.opted_in)
    for number in (change.phone, change.previous_phone, change.user_id):
        assert number is None or isinstance(number, str)
        if number is not None:
            number.encode("utf-8")


@settings(max_examples=800)
@given(record=dms_inputs, source=st.sampled_from(SOURCES))
@example(record=b'{"metadata":' + b"[" * 10_000 + b"]" * 10_000 + b"}", source=SOURCES[0])
@example(record=b'{"data":{"userid":' + b"1" * 5000 + b"},\"metadata\":{}}", source=SOURCES[0])
@example(record=b'{"metadata":{"record-type":"data","table-name":"optin_status","operation":[]}}', source=SOURCES[0])
@example(record=b'{"metadata":{"record-type":{},"table-name":"optin_status"}}', source=SOURCES[0])
def test_any_input_is_a_change_a_skipped_record_or_poison_with_a_reason(record: bytes, source: DmsSource) -> None:
    try:
        outcome = parse_dms_record(record, source)
    except PoisonRecordError as poison:
        assert_readable_reason(poison.reason)
        return
    assert isinstance(outcome, OptInChange | SkippedRecord)
    if isinstance(outcome, OptInChange):
        assert_well_typed(outcome)
    else:
        assert_readable_reason(outcome.reason)


@settings(max_examples=250)
@given(document=json_values, fragments=fragment_lists)
def test_hostile_values_in_every_field_of_a_row_of_the_watched_table(document: Any, fragments: list[str]) -> None:
    """The parser reaches the row's fields only for a data record of the watched table: aim there."""
    record = {
        "data": {"userid": document, "phone": document, "optin": document},
        "before-image": document,
        "metadata": {"record-type": "data", "operation": "update", "table-name": "optin_status"},
    }
    data = render(record, fragments)
    try:
        outcome = parse_dms_record(data, SOURCES[0])
    except PoisonRecordError as poison:
        assert_readable_reason(poison.reason)
        return
    assert isinstance(outcome, OptInChange) and len(data) <= MAX_RECORD_BYTES
    assert_well_typed(outcome)
