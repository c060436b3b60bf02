"""The emulator fix in tributary/moto_patches.py: moto's results exactly, without scanning the shard."""

import base64
import datetime
import gc
import math
import os
import random
import re
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import moto
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.core.model_instances import reset_model_data
from moto.kinesis import models
from moto.kinesis.models import KinesisBackend, Shard, kinesis_backends

from tributary import moto_patches
from tributary.emulator import SeparateProcessAws

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"  # moto's default, which the embedded server's clients use
REGION = "us-east-1"
STREAM = "s"
EPOCH = datetime.datetime(2026, 1, 1)


@pytest.fixture(autouse=True)
def _patched() -> None:
    assert moto_patches.apply(), "the fix must apply to the pinned moto"


# ---------------------------------------------------------------- tied to the pinned moto


def test_the_fix_is_written_for_the_moto_requirements_pin():
    pin = re.search(r"^moto\[server\]==(\S+)$", (REPO_ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)
    assert pin is not None
    assert pin.group(1) == moto_patches.PINNED_MOTO_VERSION == moto.__version__


def test_the_installed_moto_has_the_source_the_fix_replaces():
    # Fails on a moto upgrade that changes any replaced or relied-on method, even with the same version.
    assert moto_patches.mismatch(moto.__version__, moto_patches.MOTO_SHARD_METHODS) is None


def test_the_embedded_server_runs_the_fix(aws):
    assert moto_patches.is_applied()
    assert Shard.get_records is moto_patches.get_records
    assert Shard.get_max_sequence_number is moto_patches.get_max_sequence_number


def test_another_moto_version_is_left_unpatched_with_a_warning(monkeypatch):
    with moto_patches.moto_unpatched():
        monkeypatch.setattr(moto, "__version__", "5.2.6")
        expected = r"moto is 5\.2\.6, .* written for moto 5\.2\.5.*NOT applied"
        with pytest.warns(moto_patches.MotoPatchRefused, match=expected):
            assert moto_patches.apply() is False
        assert not moto_patches.is_applied()
        assert Shard.get_records is moto_patches.MOTO_SHARD_METHODS["get_records"]


def test_changed_moto_source_is_refused_by_method_name():
    def get_records(self, last_sequence_id, limit):  # same name, another body: what an upgrade could bring
        return [], int(last_sequence_id), 0

    methods = {**moto_patches.MOTO_SHARD_METHODS, "get_records": get_records}
    reason = moto_patches.mismatch(moto_patches.PINNED_MOTO_VERSION, methods)
    assert reason == (
        "in moto 5.2.5, Shard.get_records changed from the source the Kinesis shard fix was written against"
    )


@pytest.mark.parametrize("method", [len, None], ids=["without source", "missing"])
def test_a_method_without_source_or_gone_is_refused(method):
    methods = {**moto_patches.MOTO_SHARD_METHODS, "put_record": method}
    assert "Shard.put_record changed" in (moto_patches.mismatch(moto_patches.PINNED_MOTO_VERSION, methods) or "")


def test_a_changed_record_is_refused_by_its_class_and_method_name():
    class Record:  # a Record that could hold a container, and so be part of a cycle
        def __init__(self, partition_key, data, sequence_number, explicit_hash_key):
            self.partition_key, self.data, self.links = partition_key, data, [self]

    methods = {**moto_patches.MOTO_SHARD_METHODS, "Record.__init__": Record.__init__}
    assert "Record.__init__ changed" in (moto_patches.mismatch(moto_patches.PINNED_MOTO_VERSION, methods) or "")


def test_records_put_are_left_out_of_garbage_collection_and_freed_with_their_stream():
    """A Record holds only strings, numbers and a datetime, so it can never be in a reference cycle:
    untracked, it costs full collections nothing, and reference counting frees it as before."""
    backend = KinesisBackend(REGION, ACCOUNT)
    backend.create_stream(STREAM, 2)
    backend.put_records(None, STREAM, [entry(key, None, b"x") for key in "abcdefgh"])
    backend.put_record(None, STREAM, "k", None, base64.b64encode(b"y").decode())
    records = [record for shard in backend.streams[STREAM].shards.values() for record in shard.records.values()]
    assert len(records) == 9 and not any(gc.is_tracked(record) for record in records)
    atomic = (str, int, float, datetime.datetime, type(None))
    assert all(isinstance(value, atomic) for record in records for value in vars(record).values())
    alive = [weakref.ref(record) for record in records]
    del records
    gc.disable()  # only reference counting may free them
    try:
        backend.delete_stream(None, STREAM)
        reset_model_data()  # moto's dashboard keeps every model it made
        assert not any(ref() for ref in alive)
    finally:
        gc.enable()
    with moto_patches.moto_unpatched():  # moto's own records are tracked: what the fix changes
        backend.create_stream(STREAM, 1)
        backend.put_record(None, STREAM, "k", None, base64.b64encode(b"y").decode())
        (record,) = backend.streams[STREAM].shards["shardId-000000000000"].records.values()
        assert gc.is_tracked(record)


def test_apply_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert moto_patches.apply() and moto_patches.apply()
    assert moto_patches.is_applied()


# ---------------------------------------------------------------- same results as moto, random calls


class FakeClock:
    """moto's utcnow for both backends: records made by the same step get the same arrival time."""

    def __init__(self) -> None:
        self.now = EPOCH
        self.arrivals: list[float] = []

    def utcnow(self) -> datetime.datetime:
        self.arrivals.append((self.now - datetime.datetime(1970, 1, 1)).total_seconds())
        return self.now


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", normalized(call()))
    except Exception as error:  # moto's own errors must match too, message and all
        return ("error", type(error).__name__, str(error))


def normalized(value: Any) -> Any:
    if isinstance(value, models.Record):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [normalized(item) for item in value]
    if isinstance(value, dict):
        return {key: normalized(item) for key, item in value.items()}
    return value


def shard_listing(backend: KinesisBackend) -> Any:
    """DescribeStream's answer: every shard's hash range and first and (when closed) last sequence number."""
    return normalized(backend.streams[STREAM].to_json())


def stored_records(backend: KinesisBackend) -> Any:
    return {shard_id: [(key, record.to_json()) for key, record in shard.records.items()]
            for shard_id, shard in backend.streams[STREAM].shards.items()}


def pick_shard(backend: KinesisBackend, pick: int) -> Shard:
    shards = [backend.streams[STREAM].shards[shard_id] for shard_id in sorted(backend.streams[STREAM].shards)]
    return shards[pick % len(shards)]


def entry(partition_key: str, explicit_hash_key: int | None, data: bytes) -> dict[str, Any]:
    record: dict[str, Any] = {"PartitionKey": partition_key, "Data": base64.b64encode(data).decode()}
    if explicit_hash_key is not None:
        record["ExplicitHashKey"] = str(explicit_hash_key)
    return record


partition_keys = st.text("abcxyz", min_size=1, max_size=3)
entries = st.builds(entry, partition_keys, st.none() | st.integers(0, 2**128 - 2), st.binary(max_size=6))
# moto refuses 2**128 and, hashing into [start, end) ranges, finds no shard for 2**128 - 1: errors to compare.
edge_entries = st.builds(entry, partition_keys, st.sampled_from([0, 2**127, 2**128 - 1, 2**128]), st.binary(max_size=6))
limits = st.none() | st.integers(-1, 40) | st.sampled_from([2.0, 2.5, True, False, "3", math.nan])

reads = st.tuples(
    st.just("read"),
    st.integers(0, 7),  # shard
    st.sampled_from(["TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP"]),
    st.floats(-0.05, 1.05),  # starting sequence number, as a fraction of the shard's newest
    st.integers(-1, 30),  # which of the distinct arrival times so far, for AT_TIMESTAMP; -1 means NaN
    st.sampled_from([-0.0001, 0.0, 0.0001]),
    limits,
    st.integers(1, 3),  # reads, following NextShardIterator
)
operations = st.one_of(
    reads,
    reads,  # listed again: reads are what is being compared, so draw more of them
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.0005, 0.25, 2.0, -1.0])),
    st.tuples(st.just("put"), entries | edge_entries),
    st.tuples(st.just("put_records"), st.lists(entries, min_size=1, max_size=40)),
    st.tuples(st.just("split"), st.integers(0, 7), st.floats(-0.1, 1.1)),
    st.tuples(st.just("merge"), st.integers(0, 7), st.integers(0, 7)),
    st.tuples(st.just("update_shard_count"), st.integers(1, 6)),
    # Not moto's doing, but what the index must notice: the records replaced by a dict with the same
    # ends and length, one moved to the front, one deleted, the oldest dropped in place.
    st.tuples(st.just("shuffle"), st.integers(0, 7), st.integers(0, 2**32)),
    st.tuples(st.just("move_to_front"), st.integers(0, 7), st.floats(0, 1)),
    st.tuples(st.just("delete"), st.integers(0, 7), st.floats(0, 1)),
    st.tuples(st.just("trim"), st.integers(0, 7), st.integers(1, 30)),
)


def perform(backend: KinesisBackend, clock: FakeClock, operation: tuple[Any, ...]) -> tuple[Any, ...]:
    match operation:
        case ("tick", _):
            return ("ok",)
        case ("put", record):
            return outcome(lambda: backend.put_record(None, STREAM, record["PartitionKey"],
                                                      record.get("ExplicitHashKey"), record["Data"]))
        case ("put_records", records):
            return outcome(lambda: backend.put_records(None, STREAM, records))
        case ("read", pick, kind, fraction, arrival, delta, limit, reads):
            shard = pick_shard(backend, pick)
            shard_id, start = shard.shard_id, int(fraction * (max(shard.records, default=0) + 2)) - 1
            times = sorted(set(clock.arrivals))
            timestamp = math.nan if arrival < 0 else times[arrival % len(times)] + delta
            iterator = outcome(lambda: backend.get_shard_iterator(None, STREAM, shard_id, kind, str(start), timestamp))
            pages: list[Any] = [iterator]
            for _ in range(reads):
                if iterator[0] != "ok":
                    break
                page = outcome(lambda it=iterator[1]: backend.get_records(None, it, limit))
                pages.append(page)
                iterator = ("ok", page[1][0]) if page[0] == "ok" else page
            return tuple(pages)
        case ("split", pick, fraction):
            shard = pick_shard(backend, pick)
            key = shard.starting_hash + int((shard.ending_hash - shard.starting_hash) * fraction)
            return outcome(lambda: backend.split_shard(None, STREAM, shard.shard_id, str(key)))
        case ("merge", first, second):
            one, other = pick_shard(backend, first).shard_id, pick_shard(backend, second).shard_id
            return outcome(lambda: backend.merge_shards(None, STREAM, one, other))
        case ("update_shard_count", target):
            return outcome(lambda: backend.update_shard_count(None, STREAM, target))
        case ("shuffle", pick, seed):
            shard = pick_shard(backend, pick)
            items = list(shard.records.items())
            middle = items[1:-1]
            random.Random(seed).shuffle(middle)
            shard.records = OrderedDict(items[:1] + middle + items[-1:] if len(items) > 1 else items)
            return ("ok",)
        case ("move_to_front", pick, fraction):
            records = pick_shard(backend, pick).records
            if records:
                records.move_to_end(list(records)[int(fraction * (len(records) - 1))], last=False)
            return ("ok",)
        case ("delete", pick, fraction):
            records = pick_shard(backend, pick).records
            if records:
                del records[list(records)[int(fraction * (len(records) - 1))]]
            return ("ok",)
        case ("trim", pick, count):
            records = pick_shard(backend, pick).records
            for _ in range(min(count, len(records))):
                records.popitem(last=False)
            return ("ok",)
    raise AssertionError(operation)


def bulk_puts(seed: int, count: int, clock_steps_back: bool) -> list[tuple[Any, ...]]:
    """Hypothesis keeps its lists short: most records come from a seeded generator, in chunks a tick apart."""
    rng = random.Random(seed)
    ticks = [0.0, 0.0005, 0.25, 2.0] + [-1.0] * clock_steps_back
    operations: list[tuple[Any, ...]] = []
    while count > 0:
        chunk = min(count, rng.randint(1, 120))
        count -= chunk
        operations.append(("put_records", [
            entry(rng.choice("abcxyz") + rng.choice("abcxyz"), rng.choice([None, rng.randrange(2**128 - 1)]),
                  rng.randbytes(rng.randrange(4)))
            for _ in range(chunk)
        ]))
        operations.append(("tick", rng.choice(ticks)))
    return operations


def assert_moto_s_answers(shards: int, steps: list[tuple[Any, ...]]) -> None:
    """Run the steps on a moto backend without the fix and on one with it: every answer and state must match."""
    clock = FakeClock()
    with mock.patch.object(models, "utcnow", clock.utcnow):
        reference, fixed = KinesisBackend(REGION, "111111111111"), KinesisBackend(REGION, "111111111111")
        clock.utcnow()  # AT_TIMESTAMP draws from the arrival times; one exists before any record
        with moto_patches.moto_unpatched():
            reference.create_stream(STREAM, shards)
        fixed.create_stream(STREAM, shards)
        for operation in steps:
            if operation[0] == "tick":
                clock.now += datetime.timedelta(seconds=operation[1])
            with moto_patches.moto_unpatched():
                expected = perform(reference, clock, operation)
                expected_listing = shard_listing(reference)
            assert perform(fixed, clock, operation) == expected, operation
            assert shard_listing(fixed) == expected_listing, operation
        assert stored_records(fixed) == stored_records(reference)


@settings(max_examples=100)
@given(
    shards=st.integers(1, 4),
    initial=st.integers(0, 600),
    seed=st.integers(0, 2**32),
    clock_steps_back=st.booleans(),
    steps=st.lists(operations, min_size=1, max_size=40),
)
def test_the_fixed_shard_answers_every_call_as_moto_does(shards, initial, seed, clock_steps_back, steps):
    assert_moto_s_answers(shards, bulk_puts(seed, initial, clock_steps_back) + steps)


def read(kind: str, fraction: float = 0.0, limit: object = None, arrival: int = 0, delta: float = 0.0,
         reads: int = 3) -> tuple[Any, ...]:
    return ("read", 0, kind, fraction, arrival, delta, limit, reads)


def puts(count: int) -> tuple[Any, ...]:
    return ("put_records", [entry("k", None, bytes([i % 256])) for i in range(count)])


@pytest.mark.parametrize("limit", [0, -1, 1, 2.0, 2.5, True, False, "3", None])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_odd_limits_keep_moto_s_quirks(limit, fraction):
    # moto's Limit 0 returns nothing after a skipped record and everything from the first one.
    assert_moto_s_answers(1, [puts(20), read("AT_SEQUENCE_NUMBER", fraction, limit)])


def test_millis_behind_latest_counts_from_the_last_record_returned():
    steps = [puts(5), ("tick", 0.25), puts(5), ("tick", 2.0), puts(5)]
    assert_moto_s_answers(1, [*steps, read("TRIM_HORIZON", limit=4, reads=5), read("TRIM_HORIZON", limit=7)])


@pytest.mark.parametrize("arrival", range(4))
@pytest.mark.parametrize("delta", [-0.0001, 0.0, 0.0001])
def test_at_timestamp_after_the_clock_stepped_back_is_moto_s(arrival, delta):
    # Records arrive at t, t+2, t+1 (a wall-clock step back), t+6: bisecting those times would be wrong.
    steps = [puts(3), ("tick", 2.0), puts(3), ("tick", -1.0), puts(3), ("tick", 5.0), puts(1)]
    assert_moto_s_answers(1, [*steps, read("AT_TIMESTAMP", arrival=arrival, delta=delta)])


@pytest.mark.parametrize(
    "change", [("shuffle", 0, 7), ("move_to_front", 0, 0.5), ("delete", 0, 0.5), ("trim", 0, 3)]
)
def test_records_changed_behind_the_index_are_read_as_moto_reads_them(change):
    steps = [puts(12), read("TRIM_HORIZON", limit=5), change, ("tick", 1.0), puts(3)]
    checks = [read("AT_SEQUENCE_NUMBER", fraction, limit) for fraction in (0.0, 0.3, 0.7) for limit in (None, 4)]
    assert_moto_s_answers(1, [*steps, *checks, *(read("AT_TIMESTAMP", arrival=a, delta=0.0001) for a in (0, 1))])


# ---------------------------------------------------------------- through the embedded server


def server_view(page: dict[str, Any]) -> tuple[Any, ...]:
    records = [(r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in page["Records"]]
    return records, page["NextShardIterator"], page["MillisBehindLatest"]


def moto_view(shard_iterator: str, limit: int | None) -> tuple[Any, ...]:
    """What moto's own code answers to the same GetRecords, read from the server's backend."""
    with moto_patches.moto_unpatched():
        next_iterator, records, millis = kinesis_backends[ACCOUNT][REGION].get_records(None, shard_iterator, limit)
    return [(str(r.sequence_number), r.partition_key, base64.b64decode(r.data)) for r in records], next_iterator, millis


def test_every_iterator_type_through_the_server_reads_what_moto_reads(aws):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    first = kinesis.put_record(StreamName=STREAM, PartitionKey="a", Data=b"0")
    kinesis.put_record(StreamName=STREAM, PartitionKey="a", Data=b"1",
                       SequenceNumberForOrdering=first["SequenceNumber"])
    kinesis.put_records(StreamName=STREAM,
                        Records=[{"PartitionKey": key, "Data": bytes([i])} for i, key in enumerate("abcdefgh" * 20)])
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        trim_horizon = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard["ShardId"],
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        everything = kinesis.get_records(ShardIterator=trim_horizon)["Records"]
        middle = everything[len(everything) // 2]
        positions = [
            {"ShardIteratorType": "TRIM_HORIZON"},
            {"ShardIteratorType": "LATEST"},
            {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": middle["SequenceNumber"]},
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": middle["SequenceNumber"]},
            {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": middle["ApproximateArrivalTimestamp"]},
        ]
        for position in positions:
            iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard["ShardId"], **position)
            shard_iterator = iterator["ShardIterator"]
            for limit in (7, 10_000):
                expected = moto_view(shard_iterator, limit)
                page = kinesis.get_records(ShardIterator=shard_iterator, Limit=limit)
                assert server_view(page) == expected, (shard["ShardId"], position, limit)
            assert [r["SequenceNumber"] for r in page["Records"]] == sorted(
                (r["SequenceNumber"] for r in page["Records"]), key=int)


def test_sequence_numbers_and_shard_listing_are_moto_s(aws):
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    put = [kinesis.put_record(StreamName=STREAM, PartitionKey="k", Data=b"x")["SequenceNumber"] for _ in range(5)]
    assert put == ["1", "2", "3", "4", "5"]  # moto numbers each shard's records from 1
    kinesis.split_shard(StreamName=STREAM, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    listed = kinesis.list_shards(StreamName=STREAM)["Shards"]
    with moto_patches.moto_unpatched():
        expected = [shard.to_json() for shard in kinesis_backends[ACCOUNT][REGION].streams[STREAM].shards.values()]
    assert listed == expected


# ---------------------------------------------------------------- cost: no scan of the shard


class CountedView:
    """A lazy keys/values/items view that counts what is read through it, like the dict's own views."""

    def __init__(self, records: "CountingRecords", view: Any) -> None:
        self.records, self.view = records, view

    def __iter__(self):
        return self.records.counted(iter(self.view))

    def __reversed__(self):
        return self.records.counted(reversed(self.view))


class CountingRecords(OrderedDict):
    """A shard's records that count every entry anyone reads from them."""

    touched = 0

    def counted(self, entries: Iterator[Any]) -> Iterator[Any]:
        for item in entries:
            self.touched += 1
            yield item

    def __iter__(self):
        return self.counted(super().__iter__())

    def __reversed__(self):
        return self.counted(super().__reversed__())

    def keys(self):
        return CountedView(self, super().keys())

    def values(self):
        return CountedView(self, super().values())

    def items(self):
        return CountedView(self, super().items())

    def __getitem__(self, key):
        self.touched += 1
        return super().__getitem__(key)


def touched_by(records: CountingRecords, call: Callable[[], Any]) -> int:
    records.touched = 0
    call()
    return records.touched


def test_reads_and_puts_touch_a_bounded_number_of_records_whatever_the_shard_length():
    shard = Shard(0, 0, 2**128 - 1)
    shard.records = records = CountingRecords()
    data = base64.b64encode(b"x").decode()
    for _ in range(20_000):
        shard.put_record("k", data, None)
    shard.get_records("0", 1)  # the first read indexes the shard once
    per_call = 5  # both ends of the dict, the newest record for MillisBehindLatest

    assert touched_by(records, lambda: shard.put_record("k", data, None)) <= 2
    # A record added since the last read is indexed once: its key and its arrival time.
    assert touched_by(records, lambda: shard.get_records("0", 10)) <= 2 * 1 + 10 + per_call
    for position in ("0", "10000", "19990", "20001", "-1"):
        assert touched_by(records, lambda p=position: shard.get_records(p, 10)) <= 10 + per_call
    assert touched_by(records, lambda: shard.get_records("19000", 100)) <= 100 + per_call
    for _ in range(50):
        shard.put_record("k", data, None)
    assert touched_by(records, lambda: shard.get_records("20040", 5)) <= 2 * 50 + 5 + per_call

    middle = OrderedDict.__getitem__(records, 10_000).created_at
    binary_search = 2 * math.ceil(math.log2(len(records)))
    assert touched_by(records, lambda: shard.get_sequence_number_at(middle)) <= binary_search + per_call
    assert touched_by(records, shard.get_min_sequence_number) <= 1
    assert touched_by(records, shard.get_max_sequence_number) <= 1


def test_moto_alone_scans_the_shard():
    """The bound above means something: moto's own methods touch every record."""
    shard = Shard(0, 0, 2**128 - 1)
    shard.records = records = CountingRecords()
    data = base64.b64encode(b"x").decode()
    with moto_patches.moto_unpatched():
        for _ in range(1_000):
            shard.put_record("k", data, None)
        assert touched_by(records, lambda: shard.get_records("990", 10)) >= 1_000
        assert touched_by(records, lambda: shard.put_record("k", data, None)) >= 1_000
        last = OrderedDict.__getitem__(records, 1_001).created_at
        assert touched_by(records, lambda: shard.get_sequence_number_at(last)) >= 1_000


def test_the_server_in_a_process_of_its_own_is_the_embedded_aws(monkeypatch):
    """What `SeparateProcessAws` serves is moto's server with the same fixes, on loopback; stop ends it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", os.environ.get("AWS_ENDPOINT_URL", ""))  # restored afterwards
    with SeparateProcessAws() as child:
        assert os.environ["AWS_ENDPOINT_URL"] == child.endpoint_url
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName=STREAM, ShardCount=1)
        sequences = [kinesis.put_record(StreamName=STREAM, PartitionKey="k", Data=bytes([i]))["SequenceNumber"]
                     for i in range(3)]  # fmt: skip
        iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId="shardId-000000000000",
                                              ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                              StartingSequenceNumber=sequences[0])["ShardIterator"]  # fmt: skip
        assert [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]] == [b"\x01", b"\x02"]
        child.reset()
        assert kinesis.list_streams()["StreamNames"] == []
    assert not child._process.is_alive()
