"""FilterCriteria: EventBridge pattern matching, and unmatched records dropped by the mapping."""

import boto3
import pytest
from esm_support import Recorder, create_stream, mapping, numbers_of, put_numbers, run_until_drained

from tributary.runtime.esm import InvocationResult
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
