"""The Kinesis batch skeleton with KPL aggregated records: user records walked one by one, failures kept
per user record and reported by their aggregate's sequence number, every user record accounted for."""

import math
from itertools import count

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import FIRST_SEQUENCE, kinesis_event

from tributary.kpl_aggregation import OutgoingUserRecord, encode_aggregate
from tributary_shared import kinesis_batch
from tributary_shared.errors import PoisonRecordError, TransientError
from tributary_shared.kinesis_batch import KinesisBatch, record_version

ARRIVAL = 1795262400.5


def aggregate(*records: tuple[str, bytes] | tuple[str, bytes, str]) -> bytes:
    return encode_aggregate([OutgoingUserRecord(*record) for record in records])


def batch_of(*entries: tuple[str, bytes], clock=None, deadline: float = math.inf) -> KinesisBatch:
    records = kinesis_event(list(entries), arrival_timestamp=ARRIVAL)["Records"]
    return KinesisBatch.of_records(records, deadline, **({"clock": clock} if clock else {}))


def poison_on(marker: bytes, transient: bytes = b"\0"):
    def handle(record):
        data = record.data()
        if data == marker:
            raise PoisonRecordError(f"poison: {data!r}")
        if data == transient:
            raise TransientError("registry unavailable")
        return data

    return handle


def test_user_records_are_walked_in_order_each_with_its_own_keys_and_its_aggregates_position():
    batch = batch_of(
        ("plain-key", b"first"),
        ("A", aggregate(("A", b"a0"), ("B", b"b1", "12345"), ("A", b"a2"))),
        ("after", b"last"),
    )
    walked = [(record, data) for record, data in batch.each(lambda record: record.data())]
    assert [data for _, data in walked] == [b"first", b"a0", b"b1", b"a2", b"last"]
    middle = str(FIRST_SEQUENCE + 1)
    assert [(r.sequence_number, r.subsequence_number, r.record_id) for r, _ in walked[1:4]] == [
        (middle, 0, f"{middle}:0"), (middle, 1, f"{middle}:1"), (middle, 2, f"{middle}:2")
    ]  # fmt: skip
    assert [r.partition_key for r, _ in walked] == ["plain-key", "A", "B", "A", "after"]
    assert [r.explicit_hash_key for r, _ in walked] == [None, None, "12345", None, None]
    assert {r.approximate_arrival_timestamp for r, _ in walked} == {ARRIVAL}
    assert [r.aggregated for r, _ in walked] == [False, True, True, True, False]
    assert walked[2][0].version == record_version(middle, 1) and walked[0][0].record_id == str(FIRST_SEQUENCE)
    assert batch.ledger.metrics() == {
        "RecordsIn": 5, "AggregatedRecordsIn": 1, "FailedPermanent": 0, "FailedTransient": 0, "RecordsDeferred": 0
    }  # fmt: skip


def test_a_poison_user_record_fails_alone_and_the_response_names_its_aggregate():
    batch = batch_of(("k", b"ok"), ("A", aggregate(("A", b"a0"), ("A", b"poison"), ("A", b"a2"))), ("k", b"ok2"))
    assert [data for _, data in batch.each(poison_on(b"poison"))] == [b"ok", b"a0", b"a2", b"ok2"]
    parent = str(FIRST_SEQUENCE + 1)
    assert batch.ledger.failed_permanent == {f"{parent}:1": "poison: b'poison'"}
    assert batch.ledger.response() == {"batchItemFailures": [{"itemIdentifier": parent}]}
    assert batch.ledger.metrics()["FailedPermanent"] == 1


def test_a_transient_failure_inside_an_aggregate_leaves_its_rest_and_every_later_record_for_the_retry():
    batch = batch_of(
        ("A", aggregate(("A", b"a0"), ("A", b"\0"), ("A", b"a2"), ("A", b"a3"))),
        ("B", aggregate(("B", b"b0"), ("B", b"b1"))),  # never opened: counts as one
        ("k", b"plain"),
    )
    assert [data for _, data in batch.each(poison_on(b"-"))] == [b"a0"]
    ledger = batch.ledger
    assert ledger.failed_transient == {f"{FIRST_SEQUENCE}:1": "registry unavailable"}
    assert (ledger.records_in, ledger.aggregated_in, ledger.not_reached) == (6, 1, 4)
    assert ledger.response() == {"batchItemFailures": [{"itemIdentifier": str(FIRST_SEQUENCE)}]}


def test_the_deadline_can_fall_inside_an_aggregate():
    ticks = count()
    batch = batch_of(("A", aggregate(*[("A", bytes([n])) for n in range(1, 6)])), clock=lambda: next(ticks),
                     deadline=3)  # fmt: skip
    assert [data for _, data in batch.each(lambda record: record.data())] == [b"\1", b"\2", b"\3"]
    assert batch.ledger.failed_transient == {f"{FIRST_SEQUENCE}:3": "not reached before the invocation's deadline"}
    assert batch.ledger.not_reached == 1


def test_a_user_record_over_the_size_limit_or_with_a_bad_key_index_fails_alone():
    batch = batch_of(("A", aggregate(("A", b"x" * 50), ("A", b"small"))))
    assert [data for _, data in batch.each(lambda record: record.data(max_bytes=10))] == [b"small"]
    assert batch.ledger.failed_permanent == {f"{FIRST_SEQUENCE}:0": "record is larger than 10 bytes"}


def test_a_record_with_the_magic_bytes_but_a_bad_checksum_is_plain_and_its_failure_says_why():
    data = aggregate(("A", b"a0"), ("A", b"a1"))
    batch = batch_of(("A", data[:-1] + b"\0"), ("k", b"fine"))

    def decode(record):
        if record.data()[:1] == b"\xf3":
            raise PoisonRecordError("unknown record framing: first byte 0xf3")
        return record.data()

    assert [d for _, d in batch.each(decode)] == [b"fine"]
    (reason,) = batch.ledger.failed_permanent.values()
    assert reason == (
        "unknown record framing: first byte 0xf3 (the data starts with the KPL aggregation magic bytes but its "
        "MD5 checksum does not match: handled as a plain record)"
    )
    assert batch.ledger.metrics()["AggregatedRecordsIn"] == 0


def test_an_unexpected_error_opening_an_aggregate_fails_that_record_only(monkeypatch):
    def broken(encoded: str):
        raise KeyError("a bug")

    monkeypatch.setattr(kinesis_batch, "open_encoded", broken)
    batch = batch_of(("A", aggregate(("A", b"a0"), ("A", b"a1"))), ("k", b"fine"))
    walked = [record for record, _ in batch.each(lambda record: record.data())]
    # Handled as a plain record: here the handler took its bytes; a function's decoder would refuse them.
    assert [record.note for record in walked] == ["the data starts with the KPL aggregation magic bytes but "
                                                  "opening it failed: KeyError: handled as a plain record", None]


def test_the_whole_batch_at_once_opens_each_aggregate_once():
    batch = batch_of(("A", aggregate(("A", b"a0"), ("B", b"b1"))), ("k", b"plain"))
    assert [record.data() for record in batch.records] == [b"a0", b"b1", b"plain"]
    assert batch.records is batch.records
    assert (batch.ledger.records_in, batch.ledger.aggregated_in) == (3, 1)


# ------------------------------------------------------------------------------------ any batch


data_of_user_records = st.sampled_from([b"ok", b"poison", b"\0"]) | st.binary(min_size=1, max_size=8)
kinesis_records = st.one_of(
    data_of_user_records.map(lambda data: ("plain", [data])),
    st.lists(data_of_user_records, min_size=1, max_size=6).map(lambda datas: ("aggregate", datas)),
    st.lists(data_of_user_records, min_size=2, max_size=6).map(lambda datas: ("corrupted", datas)),
)


def event_data(kind: str, datas: list[bytes]) -> bytes:
    if kind == "plain":
        return datas[0]
    packed = aggregate(*[("k", data) for data in datas])
    return packed if kind == "aggregate" else packed[:-1] + bytes([packed[-1] ^ 0xFF])


@given(st.lists(kinesis_records, max_size=12))
def test_every_user_record_is_handled_failed_or_left_for_the_retry(records):
    batch = batch_of(*[("k", event_data(kind, datas)) for kind, datas in records])
    handled = list(batch.each(poison_on(b"poison")))
    ledger = batch.ledger
    failed = len(ledger.failed_permanent) + len(ledger.failed_transient)
    assert len(handled) + failed + ledger.not_reached == ledger.records_in
    opened = [kind == "aggregate" for kind, _ in records]
    stopped_at = [int(kinesis_batch.sequence_of(record_id)) - FIRST_SEQUENCE for record_id in ledger.failed_transient]
    reached = stopped_at[0] + 1 if stopped_at else len(records)
    assert ledger.aggregated_in == sum(opened[:reached])
    failures = ledger.response()["batchItemFailures"]
    if failed:
        lowest = min(int(kinesis_batch.sequence_of(record_id)) for record_id in [*ledger.failed_permanent,
                                                                                  *ledger.failed_transient])
        assert failures == [{"itemIdentifier": str(lowest)}]
    else:
        assert failures == []


@pytest.mark.parametrize("kind", ["plain", "corrupted"])
def test_a_record_that_is_not_opened_is_one_record(kind):
    batch = batch_of(("k", event_data(kind, [b"a", b"b"])))
    assert len(list(batch.each(lambda record: record.data()))) == 1
    assert (batch.ledger.records_in, batch.ledger.aggregated_in) == (1, 0)
