"""FilterCriteria: EventBridge pattern matching, and unmatched records dropped by the mapping."""

import boto3
import pytest
from esm_support import Recorder, create_stream, mapping, numbers_of, put_numbers, run_until_drained

from tributary.runtime.filtering import kinesis_filter_subject, matches, matches_any

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


def test_kinesis_filters_see_data_as_json_only_when_it_parses():
    assert kinesis_filter_subject(b'{"a": 1}') == {"data": {"a": 1}}
    assert kinesis_filter_subject(b"\x00\x01binary") == {"data": "AAFiaW5hcnk="}
    assert matches_any([], {"data": "anything"})


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
