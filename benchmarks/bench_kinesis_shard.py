"""Draining a Kinesis stream in the embedded AWS: per-record cost as the stream grows, with and without the fix.

moto 5.2.5's shard scans its records on every GetRecords and copies its keys on every PutRecord, so
a long local session slows down quadratically. tributary/moto_patches.py fixes the emulator. The
target: draining 1,000,000 records costs at most 1.2x per record what draining 10,000 costs.

Each drain works like the local runtime behind a producer. A 4-shard stream grows by 10,000
records at a time, put with PutRecords of 500. After each chunk, every shard is read from where it
stopped, with GetRecords of Limit 100 (the issue's BatchSize), until a short page shows it has
caught up. The cost per record is the process's CPU time for the puts and reads over records
drained. CPU time, not wall time: other people's work on this shared 2-core machine would
otherwise be counted. The baseline is the same drain of 10,000 records into a fresh stream, and
its median is taken over rounds before, during and after the long drain, so the machine's drift
hits both sides alike. Python's full garbage collections are part of the cost and are also shown
on their own: they used to walk every live record, 1.5 µs per record drained at a million
records, until the fix took records off the collector's list (see tributary/moto_patches.py).

The 1,000,000-record drain calls moto's Kinesis backend directly (`KinesisBackend.put_records`,
`get_shard_iterator`, `get_records`): the code the server runs for each request, without HTTP.
Through the server, each record costs about 250 µs, mostly moto serializing responses, which
would put 1,000,000 records past 4 minutes. That cost is also the same for every record, so it
would dilute any growth. Without it the comparison is stricter. The server path is measured too,
on a 40,000-record drain: it shows that nothing on the HTTP side grows with the stream either.
moto without the fix is measured at 10,000 and 40,000 records, to show the growth the fix removes.
"""

import base64
import gc
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import boto3
from moto.core.model_instances import reset_model_data
from moto.kinesis.models import KinesisBackend

from benchmarks.common import embedded_aws
from tributary import moto_patches

SHARDS = 4
PUT_BATCH = 500  # PutRecords' maximum
READ_LIMIT = 100  # the BatchSize
CHUNK = 10_000  # records put between two catch-up reads; also the baseline drain
LONG_DRAIN = 1_000_000
SHORT_DRAIN = 40_000  # through the server, and moto without the fix: both cost too much per record for more
BASELINES_BEFORE, BASELINES_AFTER = 3, 2  # fresh 10,000-record drains around the long one
TARGET = 1.2
PARTITION_KEYS = [f"unicorn-{number:03d}" for number in range(PUT_BATCH)]  # spread over the 4 shards by hash
PAYLOAD = b'{"Name":"Unicorn007","Distance":42,"HealthPoints":150}'


class Kinesis(Protocol):
    entries: list[dict[str, object]]  # PutRecords entries, one per partition key

    def create_stream(self, name: str) -> list[str]: ...
    def put_records(self, name: str, batch: list[dict[str, object]]) -> None: ...
    def trim_horizon(self, name: str, shard_id: str) -> str: ...
    def get_records(self, iterator: str) -> tuple[int, str]: ...
    def delete_stream(self, name: str) -> None: ...


class MotoBackend:
    """moto's Kinesis backend called in-process: what the embedded server runs for each request."""

    def __init__(self) -> None:
        self.entries = [{"PartitionKey": key, "Data": base64.b64encode(PAYLOAD).decode()} for key in PARTITION_KEYS]
        self.backend = KinesisBackend("us-east-1", "123456789012")

    def create_stream(self, name: str) -> list[str]:
        return list(self.backend.create_stream(name, SHARDS).shards)

    def put_records(self, name: str, batch: list[dict[str, object]]) -> None:
        response = self.backend.put_records(None, name, batch)  # type: ignore[arg-type]
        assert response["FailedRecordCount"] == 0, response

    def trim_horizon(self, name: str, shard_id: str) -> str:
        return self.backend.get_shard_iterator(None, name, shard_id, "TRIM_HORIZON", None, None)  # type: ignore[arg-type]

    def get_records(self, iterator: str) -> tuple[int, str]:
        next_iterator, records, _ = self.backend.get_records(None, iterator, READ_LIMIT)
        return len(records), next_iterator

    def delete_stream(self, name: str) -> None:
        self.backend.delete_stream(None, name)


class MotoServer:
    """boto3 against the embedded AWS: the requests the local runtime's pollers and producers send."""

    def __init__(self) -> None:
        self.entries = [{"PartitionKey": key, "Data": PAYLOAD} for key in PARTITION_KEYS]
        self.client = boto3.client("kinesis")

    def create_stream(self, name: str) -> list[str]:
        self.client.create_stream(StreamName=name, ShardCount=SHARDS)
        return [shard["ShardId"] for shard in self.client.list_shards(StreamName=name)["Shards"]]

    def put_records(self, name: str, batch: list[dict[str, object]]) -> None:
        response = self.client.put_records(StreamName=name, Records=batch)  # type: ignore[arg-type]
        assert response["FailedRecordCount"] == 0, response

    def trim_horizon(self, name: str, shard_id: str) -> str:
        iterator = self.client.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
        return str(iterator["ShardIterator"])

    def get_records(self, iterator: str) -> tuple[int, str]:
        page = self.client.get_records(ShardIterator=iterator, Limit=READ_LIMIT)
        return len(page["Records"]), str(page["NextShardIterator"])

    def delete_stream(self, name: str) -> None:
        self.client.delete_stream(StreamName=name)


class FullCollections:
    """CPU seconds Python spends in generation-2 (full) garbage collections while this is entered."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> "FullCollections":
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


FULL_COLLECTIONS = FullCollections()


@dataclass
class Drain:
    records: int = 0
    put_seconds: float = 0.0
    read_seconds: float = 0.0
    full_collection_seconds: float = 0.0  # included in the put and read seconds
    chunk_seconds: list[float] = field(default_factory=list)

    @property
    def us_per_record(self) -> float:
        return (self.put_seconds + self.read_seconds) / self.records * 1e6

    @property
    def full_collection_us_per_record(self) -> float:
        return self.full_collection_seconds / self.records * 1e6

    def us_per_record_along(self) -> list[float]:
        """Per-record cost over each tenth of the drain (each chunk, if fewer): flat if nothing grows."""
        tenth = max(1, len(self.chunk_seconds) // 10)
        return [sum(self.chunk_seconds[i : i + tenth]) / (tenth * CHUNK) * 1e6
                for i in range(0, len(self.chunk_seconds), tenth)]


_stream_names: Iterator[int] = itertools.count()


class GrowingStream:
    """A fresh stream that grows CHUNK records at a time, every shard read up to date after each chunk."""

    def __init__(self, kinesis: Kinesis) -> None:
        self.kinesis = kinesis
        self.name = f"drain-{next(_stream_names)}"
        self.shard_ids = kinesis.create_stream(self.name)
        self.iterators = {shard_id: kinesis.trim_horizon(self.name, shard_id) for shard_id in self.shard_ids}
        entries = kinesis.entries
        self.batches = [entries[: min(PUT_BATCH, CHUNK - start)] for start in range(0, CHUNK, PUT_BATCH)]
        self.drained = Drain()

    def add_chunk(self) -> None:
        collections_before = FULL_COLLECTIONS.seconds
        started = time.process_time()
        for batch in self.batches:
            self.kinesis.put_records(self.name, batch)
        put = time.process_time()
        read = sum(self._read_to_the_end(shard_id) for shard_id in self.shard_ids)
        done = time.process_time()
        assert read == CHUNK, f"read {read} of the {CHUNK} records just put"
        self.drained.records += read
        self.drained.put_seconds += put - started
        self.drained.read_seconds += done - put
        self.drained.full_collection_seconds += FULL_COLLECTIONS.seconds - collections_before
        self.drained.chunk_seconds.append(done - started)

    def _read_to_the_end(self, shard_id: str) -> int:
        read = 0
        while True:
            count, self.iterators[shard_id] = self.kinesis.get_records(self.iterators[shard_id])
            read += count
            if count < READ_LIMIT:  # moto returns all it has up to Limit: a short page means caught up
                return read

    def delete(self) -> Drain:
        self.kinesis.delete_stream(self.name)
        reset_model_data()  # moto's dashboard keeps every record it ever made: let them go
        return self.drained


def fresh_drain(kinesis: Kinesis) -> Drain:
    stream = GrowingStream(kinesis)
    stream.add_chunk()
    return stream.delete()


def against_fresh_baselines(
    kinesis: Callable[[], Kinesis], records: int, baselines_between: int,
    moto_as: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> tuple[Drain, Drain, list[Drain]]:
    """(the long drain, the median fresh CHUNK-record drain, all of these).

    Fresh drains run before, during (`baselines_between` times, evenly spread) and after the long
    one, so the machine's drift over the run hits both sides alike.
    """
    gc.collect()
    chunks = records // CHUNK
    every = max(1, chunks // baselines_between)
    with moto_as():
        baselines = [fresh_drain(kinesis()) for _ in range(BASELINES_BEFORE)]
        long = GrowingStream(kinesis())
        for chunk in range(1, chunks + 1):
            long.add_chunk()
            if chunk % every == 0 and chunk < chunks:
                baselines.append(fresh_drain(kinesis()))
        baselines += [fresh_drain(kinesis()) for _ in range(BASELINES_AFTER)]
        drained = long.delete()
    median = sorted(baselines, key=lambda d: d.us_per_record)[len(baselines) // 2]
    return drained, median, baselines


def line(label: str, result: Drain) -> str:
    per_record = result.us_per_record
    put = result.put_seconds / result.records * 1e6
    read = result.read_seconds / result.records * 1e6
    return f"  {label:<30} {result.records:>9,} records {per_record:7.1f} µs/record (put {put:6.1f}, read {read:5.1f})"


def report(title: str, long: Drain, baseline: Drain, baselines: list[Drain], goal: str = "") -> float:
    ratio = long.us_per_record / baseline.us_per_record
    rounds = sorted(d.us_per_record for d in baselines)
    fresh_collections = sum(d.full_collection_seconds for d in baselines) / sum(d.records for d in baselines) * 1e6
    print(title)
    print(line(f"fresh stream, median of {len(rounds)}", baseline)
          + f"  (rounds {rounds[0]:.1f}..{rounds[-1]:.1f})")
    print(line("grown stream", long) + f"  = {ratio:.2f}x{goal}")
    along = " ".join(f"{us:.0f}" for us in long.us_per_record_along())
    print(f"  {'':<30} along the grown stream, start to end: {along} µs/record")
    print(f"  {'':<30} of which Python's full garbage collections: {long.full_collection_us_per_record:.1f} "
          f"µs/record (fresh streams: {fresh_collections:.1f})")
    return ratio


def main() -> None:
    assert moto_patches.apply(), "the Kinesis shard fix did not apply: see the warning above"
    started = time.perf_counter()
    print(f"{SHARDS}-shard stream grown {CHUNK:,} records at a time (PutRecords of {PUT_BATCH}), every shard "
          f"read up to date after each chunk (GetRecords Limit {READ_LIMIT}); CPU time per record drained")
    with FULL_COLLECTIONS:
        fixed = report("moto's Kinesis backend in-process, with the fix:",
                       *against_fresh_baselines(MotoBackend, LONG_DRAIN, baselines_between=10),
                       goal=f" (target <= {TARGET}x)")
        unfixed = report("moto's Kinesis backend in-process, moto 5.2.5 alone:",
                         *against_fresh_baselines(MotoBackend, SHORT_DRAIN, 3, moto_patches.moto_unpatched))
        with embedded_aws():
            served = report("through the embedded server (boto3, HTTP), with the fix:",
                            *against_fresh_baselines(MotoServer, SHORT_DRAIN, baselines_between=2))
    print(f"summary: {LONG_DRAIN:,} vs {CHUNK:,} records: {fixed:.2f}x per record with the fix "
          f"({'met' if fixed <= TARGET else 'MISSED'}, target <= {TARGET}x). {SHORT_DRAIN:,} vs {CHUNK:,}: "
          f"{unfixed:.2f}x without the fix, {served:.2f}x through the server with it. "
          f"({time.perf_counter() - started:.0f} s)")
