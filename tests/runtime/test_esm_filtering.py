"""FilterCriteria: EventBridge pattern matching, and unmatched records dropped by the mapping."""

import json
import re
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from esm_support import Recorder, create_stream, mapping, numbers_of, put_numbers, run_until_drained
from hypothesis import given, settings
from hypothesis import strategies as st

from tributary.commands import main as tributary
from tributary.runtime.app import mapping_config
from tributary.runtime.esm import MappingConfig
from tributary.runtime.esm.filtering import (
    MAX_PATTERN_DEPTH,
    MAX_PATTERN_LENGTH,
    FilterPatternError,
    kinesis_filter_subject,
    matches,
    matches_any,
    parse_pattern,
    validate_pattern,
)
from tributary.runtime.functions import load_functions
from tributary.runtime.invocation import InvocationResult
from tributary.runtime.template import Template
from tributary_shared.errors import PoisonRecordError
from tributary_shared.payloads import parse_json

ORDER = {"kind": "order", "amount": 25, "tags": ["new", "vip"], "customer": {"id": "C-17", "email": None},
         "paid": True}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"kind": ["order"]}, True),
        ({"kind": ["refund", "order"]}, True),
        ({"kind": ["refund"]}, False),
        ({"amount": [25]}, True),
        ({"amount": [25.0]}, True),
        ({"amount": ["25"]}, False),
        ({"paid": [True]}, True),
        ({"paid": [1]}, False),
        ({"customer": {"email": [None]}}, True),
        ({"customer": {"id": [{"prefix": "C-"}]}}, True),
        ({"customer": {"id": [{"suffix": "-17"}]}}, True),
        ({"kind": [{"equals-ignore-case": "ORDER"}]}, True),
        ({"amount": [{"numeric": [">", 10, "<=", 25]}]}, True),
        ({"amount": [{"numeric": ["<", 25]}]}, False),
        ({"amount": [{"numeric": ["=", 25]}]}, True),
        ({"kind": [{"exists": True}]}, True),
        ({"missing": [{"exists": False}]}, True),
        ({"kind": [{"exists": False}]}, False),
        ({"kind": [{"anything-but": "refund"}]}, True),
        ({"kind": [{"anything-but": ["order", "refund"]}]}, False),
        ({"kind": [{"anything-but": {"prefix": "ord"}}]}, False),
        ({"tags": ["vip"]}, True),
        ({"tags": ["gold"]}, False),
        ({"kind": ["order"], "amount": [{"numeric": [">", 100]}]}, False),
        ({"$or": [{"kind": ["refund"]}, {"amount": [25]}]}, True),
        ({"customer": {"id": ["C-18"]}}, False),
        ({"kind": {"nested": ["x"]}}, False),
    ],
)
def test_pattern_operators(pattern, expected):
    assert matches(pattern, ORDER) is expected


def test_unsupported_operators_are_named():
    with pytest.raises(ValueError, match="wildcard"):
        matches({"kind": [{"wildcard": "or*"}]}, ORDER)


def test_kinesis_filters_see_metadata_and_data_only_when_it_parses_as_json():
    metadata = {"partitionKey": "p1", "sequenceNumber": "42", "data": "eyJhIjogMX0="}
    assert kinesis_filter_subject(b'{"a": 1}', metadata) == {"partitionKey": "p1", "sequenceNumber": "42",
                                                             "data": {"a": 1}}
    assert kinesis_filter_subject(b"\x00\x01binary", metadata) == {"partitionKey": "p1", "sequenceNumber": "42"}
    assert matches_any([], {"partitionKey": "p1"})


@pytest.mark.parametrize(
    "pattern",
    [{"data": {"a": [{"exists": False}]}}, {"data": [{"exists": False}]}, {"data": [{"anything-but": "x"}]}],
)
def test_a_data_pattern_drops_non_json_data_whatever_it_says(pattern):
    # AWS: non-JSON data with a filter pattern on data properties -> Lambda drops the record.
    assert not matches_any([pattern], kinesis_filter_subject(b"plain text", {"partitionKey": "p1"}))


def test_a_pattern_on_other_keys_still_filters_non_json_data():
    # AWS: non-JSON data without a data pattern -> filtered on the other (metadata) properties only.
    subject = kinesis_filter_subject(b"plain text", {"partitionKey": "p1"})
    assert matches_any([{"partitionKey": ["p1"]}], subject)
    assert not matches_any([{"partitionKey": ["p2"]}], subject)


def test_the_mapping_delivers_only_matching_records_and_moves_past_the_rest(aws):
    stream = create_stream()
    put_numbers([1, 2], extra={"kind": "payment"})
    put_numbers([3], extra={"kind": "unicorn"})
    boto3.client("kinesis").put_record(StreamName="events", Data=b"\x00not json", PartitionKey="k")
    put_numbers([4], extra={"kind": "payment"})
    function = Recorder()
    patterns = ({"data": {"kind": ["payment"], "n": [{"numeric": [">", 1]}]}},)
    esm = mapping(stream, function, filter_patterns=patterns)

    run_until_drained(esm)

    assert [numbers_of(event) for event in function.events] == [[2, 4]]
    assert esm.stats.records_in == 5
    assert esm.stats.records_filtered_out == 3
    assert esm.stats.records_succeeded == 2


def test_a_partition_key_pattern_delivers_non_json_records(aws):
    stream = create_stream()
    kinesis = boto3.client("kinesis")
    kinesis.put_record(StreamName="events", Data=b"plain text", PartitionKey="wanted")
    kinesis.put_record(StreamName="events", Data=b"other text", PartitionKey="unwanted")
    function_events: list = []
    esm = mapping(stream, lambda event: function_events.append(event) or InvocationResult(),
                  filter_patterns=({"partitionKey": ["wanted"]},))

    run_until_drained(esm)

    assert [[r["kinesis"]["partitionKey"] for r in e["Records"]] for e in function_events] == [["wanted"]]
    assert esm.stats.records_filtered_out == 1


# ---------------------------------------------------------------- hostile data and patterns

FIXTURES = Path(__file__).parent / "fixtures"
DEEP = 10_000
# (data, why it is hostile): none may crash evaluation; those that do not parse have no `data` to match.
HOSTILE_DATA = [
    (b"[" * DEEP + b"]" * DEEP, "arrays nested 10,000 deep"),
    (b'{"a":' * DEEP + b"1" + b"}" * DEEP, "objects nested 10,000 deep"),
    (b"[" * 100_000, "100,000 unclosed arrays"),
    (b'{"n": ' + b"9" * 5000 + b"}", "a 5,000-digit integer"),
    (b'{"kind": "order", "n": 1e999999999}', "an exponent no double holds"),
    (b'{"kind": "order", "n": NaN}', "NaN"),
    (b'{"kind": "\xff\xfe"}', "bad UTF-8"),
    (b'{"kind": "\xed\xa0\x80"}', "an encoded lone surrogate"),
    (b'{"kind": "\\ud800order"}', "an escaped lone surrogate"),
    (b"\x00\x01\x02 binary", "binary"),
    (b"", "empty"),
]
VALID_PATTERNS = [
    {"data": {"kind": ["order"]}},
    {"data": {"kind": [{"prefix": "ord"}], "n": [{"numeric": [">", 0]}]}},
    {"data": {"n": [{"exists": False}]}},
    {"data": [{"exists": True}]},
    {"data": {"kind": [{"anything-but": ["refund"]}]}},
    {"data": {"a": {"a": {"a": [1]}}}},
    {"partitionKey": [{"equals-ignore-case": "P1"}]},
    {"$or": [{"partitionKey": ["p1"]}, {"data": {"n": [{"numeric": ["<=", 5]}]}}]},
]
METADATA = {"partitionKey": "p1", "sequenceNumber": "42"}


def _parses(data: bytes) -> bool:
    try:
        parse_json(data)
    except PoisonRecordError:
        return False
    return True


@pytest.mark.parametrize(("data", "why"), HOSTILE_DATA, ids=[why for _, why in HOSTILE_DATA])
def test_hostile_data_is_evaluated_without_failing(data, why):
    subject = kinesis_filter_subject(data, METADATA)
    for pattern in VALID_PATTERNS:
        delivered = matches_any([pattern], subject)
        assert isinstance(delivered, bool)
        if "data" in pattern and not _parses(data):
            assert not delivered, f"{why}: data that does not parse matched {pattern}"


def test_unparseable_data_is_left_out_and_metadata_patterns_still_apply():
    for data, why in HOSTILE_DATA:
        if not _parses(data):
            subject = kinesis_filter_subject(data, METADATA)
            assert subject == METADATA, why
            assert matches_any([{"partitionKey": ["p1"]}], subject), why


def test_numbers_beyond_a_double_compare_by_sign_and_exactly():
    huge = kinesis_filter_subject(b'{"n": ' + b"9" * 400 + b"}")
    assert matches({"data": {"n": [{"numeric": [">", 5_000_000_000]}]}}, huge)
    assert not matches({"data": {"n": [{"numeric": ["<", 0]}]}}, huge)
    assert matches({"data": {"n": [int("9" * 400)]}}, huge)
    assert not matches({"data": {"n": [int("9" * 399)]}}, huge)
    tiny = kinesis_filter_subject(b'{"n": -1e999999999}')
    assert matches({"data": {"n": [{"numeric": ["<", -1e300]}]}}, tiny)
    assert matches({"data": {"n": [0.1]}}, kinesis_filter_subject(b'{"n": 0.1}'))  # as doubles, as before


def test_arrays_nested_thousands_deep_are_matched_element_by_element():
    data = b'{"tags": ' + b"[" * 9000 + b'"vip"' + b"]" * 9000 + b"}"
    subject = kinesis_filter_subject(data)
    assert subject["data"]  # parsed: it is within the parser's limit
    assert matches({"data": {"tags": ["vip"]}}, subject)
    assert not matches({"data": {"tags": [{"anything-but": "vip"}]}}, subject)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)
crafted_data = st.sampled_from([data for data, _ in HOSTILE_DATA]) | st.builds(
    lambda value, depth: (b"[" * depth + json.dumps(value).encode() + b"]" * depth),
    json_values, st.integers(0, 12_000),
)


@settings(max_examples=300)
@given(data=st.binary(max_size=300) | crafted_data, pattern=st.sampled_from(VALID_PATTERNS))
def test_any_record_data_is_evaluated_and_unparseable_data_never_matches_data(data, pattern):
    delivered = matches_any([pattern], kinesis_filter_subject(data, METADATA))
    assert isinstance(delivered, bool)
    if "data" in pattern and not _parses(data):
        assert not delivered


operators = st.sampled_from(["prefix", "suffix", "equals-ignore-case", "numeric", "exists", "anything-but",
                             "wildcard", "cidr", "bogus"])
matchers = json_scalars | st.dictionaries(operators, json_values, min_size=1, max_size=2) | json_values
patterns = st.recursive(
    st.dictionaries(st.sampled_from(["data", "kind", "n", "$or"]), st.lists(matchers, max_size=3) | json_values,
                    max_size=3),
    lambda children: st.dictionaries(st.sampled_from(["data", "kind", "n", "$or"]),
                                     children | st.lists(children, max_size=3), max_size=3),
    max_leaves=12,
)


@settings(max_examples=400)
@given(pattern=patterns | json_values, subject=json_values)
def test_any_pattern_is_refused_by_name_or_evaluates_against_any_subject(pattern, subject):
    try:
        validate_pattern(pattern)
    except FilterPatternError as error:
        assert str(error)
        return
    assert isinstance(matches_any([pattern], {"data": subject, "kind": subject, "n": subject}), bool)
    assert isinstance(matches_any([pattern], {}), bool)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("{not json", "filter pattern is not valid JSON"),
        ("[" * DEEP + "]" * DEEP, f"at most {MAX_PATTERN_LENGTH} characters"),
        ('{"a":' * 600 + "[1]" + "}" * 600, f"more than {MAX_PATTERN_DEPTH} levels deep"),
        ("[1]", "must be a JSON object, got an array"),
        ('{"kind": "order"}', "the rule for 'kind' must be an object or a list of matchers, got 'order'"),
        ('{"kind": [["order"]]}', "a value or an operator object, got an array"),
        ('{"kind": [{"prefix": "a", "suffix": "b"}]}', "exactly one operator, got 2"),
        ('{"kind": [{"wildcard": "or*"}]}', "'wildcard' is not supported"),
        ('{"kind": [{"bogus": 1}]}', "unsupported filter operator 'bogus'"),
        ('{"kind": [{"prefix": 1}]}', "prefix takes a string, got a number"),
        ('{"n": [{"numeric": [">", "1"]}]}', "bad numeric condition '>' '1'"),
        ('{"n": [{"numeric": [[], 1]}]}', "bad numeric condition an array a number"),
        ('{"n": [{"numeric": [">"]}]}', "numeric takes operator/value pairs"),
        ('{"n": [{"exists": "yes"}]}', "exists takes true or false, got 'yes'"),
        ('{"n": [{"anything-but": []}]}', "anything-but takes a value"),
        ('{"n": [{"anything-but": {"numeric": [">", 1]}}]}', "anything-but takes one of prefix"),
        ('{"$or": {"n": [1]}}', "$or takes a non-empty list of patterns, got an object"),
        ('{"n": [1e999999999999, NaN]}', "NaN is not a number"),
    ],
)
def test_invalid_patterns_are_refused_naming_the_problem(pattern, reason):
    with pytest.raises(FilterPatternError, match=re.escape(reason)):
        parse_pattern(pattern)


def test_a_mapping_refuses_an_invalid_pattern_at_creation():
    with pytest.raises(FilterPatternError, match="FilterCriteria pattern 2: exists takes true or false"):
        MappingConfig(function_name="f", function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
                      source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/s",
                      filter_patterns=({"kind": ["a"]}, {"kind": [{"exists": 1}]}))


def test_a_template_pattern_is_checked_when_its_mapping_is_configured():
    function = load_functions(Template.load(FIXTURES / "pipeline.yaml"))["WriterFunction"]
    stream = "arn:aws:kinesis:us-east-1:123456789012:stream/s"
    hostile = {"FilterCriteria": {"Filters": [{"Pattern": '{"data": {"kind": ["a"]}}'}, {"Pattern": "[" * DEEP}]}}
    with pytest.raises(FilterPatternError, match=f"pattern 2: a filter pattern is at most {MAX_PATTERN_LENGTH}"):
        mapping_config(function, hostile, stream)
    with pytest.raises(FilterPatternError, match="pattern 1: a filter pattern must be a JSON object, got null"):
        mapping_config(function, {"FilterCriteria": {"Filters": [{}]}}, stream)


def test_run_names_the_event_whose_pattern_is_invalid(aws, tmp_path, capsys):
    pattern = json.dumps({"data": [{"wildcard": "a*"}]})
    template = (FIXTURES / "pipeline.yaml").read_text().replace(
        "            MaximumRetryAttempts: 1",
        f"            MaximumRetryAttempts: 1\n            FilterCriteria: {{Filters: [{{Pattern: '{pattern}'}}]}}",
    )
    (tmp_path / "template.yaml").write_text(template)
    for name in ("functions", "layer"):
        (tmp_path / name).symlink_to(FIXTURES / name)
    assert tributary(["run", "--template", str(tmp_path / "template.yaml"), "--logs", str(tmp_path / "log")]) == 2
    assert capsys.readouterr().err.strip() == (
        "tributary run: WriterFunction.Input: FilterCriteria pattern 1: "
        "the filter operator 'wildcard' is not supported by this emulation"
    )


def test_patterns_keep_exact_decimals():
    assert parse_pattern('{"n": [{"numeric": [">", 0.1]}]}') == {"n": [{"numeric": [">", Decimal("0.1")]}]}
    assert matches(parse_pattern('{"n": [{"numeric": [">", 0.1]}]}'), {"n": Decimal("0.10000001")})


def test_the_mapping_moves_past_hostile_records_and_delivers_the_valid_ones(aws):
    stream = create_stream()
    kinesis = boto3.client("kinesis")
    put_numbers([1], extra={"kind": "payment"})
    for data, _ in HOSTILE_DATA:
        if data:  # Kinesis refuses an empty record
            kinesis.put_record(StreamName="events", Data=data, PartitionKey="k")
    put_numbers([2], extra={"kind": "payment"})
    function = Recorder()
    esm = mapping(stream, function, filter_patterns=({"data": {"kind": ["payment"]}},))

    run_until_drained(esm)

    assert function.batches == [[1, 2]]
    assert esm.stats.records_filtered_out == len(HOSTILE_DATA) - 1
