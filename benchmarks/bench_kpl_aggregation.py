"""KPL aggregated records: what de-aggregation costs the functions, and what aggregation saves producers.

1. A plain batch on the Kinesis batch skeleton (`KinesisBatch.each`, which now checks each record for
   the aggregation magic bytes) against a bare loop over the same event records (base64 and
   `decode_payload`, no skeleton at all): what the skeleton costs per plain record.
2. 100,000 unicorn readings through the skeleton and `decode_payload`, arriving aggregated (100 KPL
   aggregates of 1,000) against arriving plain (100,000 event records): the cost per user record
   (goal: aggregated no worse than plain). Walked in batches of 10,000 user records (10 aggregates,
   or 10,000 event records), the two arrivals of one batch timed back to back, every batch 7 times:
   70 paired ratios, so a burst of load on the shared machine spoils a few pairs, not a contender.
3. One aggregate of N user records opened and walked (no payload decoding): its cost, and per user
   record. The first aggregate of a process also imports protobuf (measured apart, in a fresh
   interpreter).
4. PutRecords calls per 10,000 user records, `tributary produce --aggregate`'s packing against
   plain, for a fleet of 5 unicorns and for 500 (aggregates hold one partition key each).

Rounds interleave the contenders and time them in process CPU time; ratios are medians of per-round
ratios (the machine is shared and noisy).
"""

import base64
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from itertools import islice
from typing import Any

from benchmarks.common import interleaved_medians, python_startup_seconds
from tributary.kpl_aggregation import KeyAggregator
from tributary.sample_records import unicorn_statuses
from tributary_shared.kinesis_aggregation import aggregated_record_type
from tributary_shared.kinesis_batch import KinesisBatch
from tributary_shared.kinesis_put import put_records
from tributary_shared.payloads import decode_payload

ROUNDS = 9
USER_RECORDS = 100_000
PER_AGGREGATE = 1_000
PER_BATCH = 10_000
FIRST_SEQUENCE = 49590338271490256608559692538361571095921575989136588898


def readings(count: int, unicorns: int = 5) -> list[tuple[str, bytes]]:
    statuses = unicorn_statuses([f"Unicorn-{n}" for n in range(unicorns)], seed=1)
    return [(status["Name"], json.dumps(status).encode()) for status in islice(statuses, count)]


def event_records(entries: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    return [
        {"kinesis": {"partitionKey": key, "sequenceNumber": str(FIRST_SEQUENCE + index), "approximateArrivalTimestamp":
                     1795262400.0, "data": base64.b64encode(data).decode()}}
        for index, (key, data) in enumerate(entries)
    ]  # fmt: skip


def walk(records: list[dict[str, Any]], handle: Callable[[Any], object]) -> int:
    walked = 0
    for _ in KinesisBatch.of_records(records, math.inf).each(handle):
        walked += 1
    return walked


def timed_walk(records: list[dict[str, Any]]) -> float:
    """CPU seconds to walk `records` through the skeleton, decoding each (user) record."""
    started = time.process_time()
    walk(records, decode_record)
    return time.process_time() - started


def decode_record(record: Any) -> object:
    return decode_payload(record.data())


def paired_ratios(contenders: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, list[float]]:
    """CPU seconds per round of each contender, interleaved, the order turning every round."""
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for number in range(rounds):
        turn = list(contenders.items())
        for name, run in turn[number % len(turn) :] + turn[: number % len(turn)]:
            started = time.process_time()
            run()
            timings[name].append(time.process_time() - started)
    return timings


def ratio(timings: dict[str, list[float]], name: str, baseline: str) -> float:
    return statistics.median(a / b for a, b in zip(timings[name], timings[baseline], strict=True))


def plain_batch_overhead() -> None:
    records = event_records(readings(10_000))

    def bare() -> None:
        for record in records:
            decode_payload(base64.b64decode(record["kinesis"]["data"], validate=True))

    timings = paired_ratios({"bare": bare, "skeleton": lambda: walk(records, decode_record)})
    per_record = statistics.median(timings["skeleton"]) / len(records) * 1e6
    cost = ratio(timings, "skeleton", "bare")
    print(f"1. plain batch of {len(records):,} JSON records: the skeleton walk costs {cost:.2f}x "
          f"a bare base64 + decode_payload loop ({per_record:.1f} µs per record)")  # fmt: skip


def aggregated_against_plain() -> None:
    entries = readings(USER_RECORDS)
    plain = event_records(entries)
    packed = [
        (chunk[0][0], KeyAggregator().pack([("all", data) for _, data in chunk])[0].data)
        for chunk in (entries[start : start + PER_AGGREGATE] for start in range(0, USER_RECORDS, PER_AGGREGATE))
    ]
    aggregated = event_records(packed)
    assert walk(aggregated, decode_record) == walk(plain, decode_record) == USER_RECORDS
    per_batch_aggregates = PER_BATCH // PER_AGGREGATE
    batches = [
        {"plain": plain[number * PER_BATCH : (number + 1) * PER_BATCH],
         "aggregated": aggregated[number * per_batch_aggregates : (number + 1) * per_batch_aggregates]}
        for number in range(USER_RECORDS // PER_BATCH)
    ]  # fmt: skip
    timings: dict[str, list[float]] = {"plain": [], "aggregated": []}
    for number in range(7 * len(batches)):
        order = list(batches[number % len(batches)].items())
        passes = number // len(batches)
        for name, records in order[::-1] if (number + passes) % 2 else order:  # each goes first as often
            timings[name].append(timed_walk(records))
    plain_us, aggregated_us = (statistics.median(timings[name]) / PER_BATCH * 1e6 for name in timings)
    ratios = sorted(a / b for a, b in zip(timings["aggregated"], timings["plain"], strict=True))
    median = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    verdict = "ok" if median <= 1.0 else "goal missed: ≤ 1.0x"
    print(f"2. {USER_RECORDS:,} readings through the skeleton and decode_payload: aggregated ({len(aggregated)} "
          f"aggregates of {PER_AGGREGATE:,}) {aggregated_us:.2f} µs per user record, plain {plain_us:.2f}: "
          f"{median:.2f}x, quartiles {quartiles[0]:.2f}x-{quartiles[2]:.2f}x over {len(ratios)} batches "
          f"of {PER_BATCH:,} ({verdict})")  # fmt: skip


def one_aggregate_of_n() -> None:
    aggregated_record_type()  # the one-off import and message build, measured apart below
    print("3. one aggregate of N readings opened and walked (no payload decoding):")
    for size in (10, 100, 1_000, 5_000):
        records = event_records([("k", KeyAggregator().pack([("k", data) for _, data in readings(size)])[0].data)])
        timings = paired_ratios({"walk": lambda records=records: walk(records, lambda record: record.data())})
        seconds = statistics.median(timings["walk"])
        print(f"   N = {size:>5,}: {seconds * 1e3:8.3f} ms, {seconds / size * 1e6:.2f} µs per user record")
    code = "import sys; sys.path[:0] = ['layers/shared']; from tributary_shared.kinesis_aggregation import "
    starts = interleaved_medians({
        "module": lambda: python_startup_seconds(code + "may_be_aggregate", {}),
        "protobuf": lambda: python_startup_seconds(code + "aggregated_record_type; aggregated_record_type()", {}),
    }, rounds=5)  # fmt: skip
    print(f"   the first aggregate of a process also imports protobuf and builds the message: "
          f"{(starts['protobuf'] - starts['module']) * 1e3:.0f} ms once")  # fmt: skip


class CountingKinesis:
    """A PutRecords that takes every record: only requests and records are counted."""

    def __init__(self) -> None:
        self.requests = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.requests += 1
        return {"Records": [{"SequenceNumber": "1", "ShardId": "shardId-000000000000"} for _ in Records]}


def put_calls_per_10_000() -> None:
    from tributary.producer import AGGREGATED_CHUNK_RECORDS, MAX_RECORDS_PER_REQUEST

    print("4. PutRecords calls per 10,000 user records (chunks as `tributary produce --rate 0` takes them):")
    for unicorns in (5, 500):
        entries = readings(10_000, unicorns)
        counts = {}
        for label, chunk_size, pack in (("plain", MAX_RECORDS_PER_REQUEST, None),
                                        ("--aggregate", AGGREGATED_CHUNK_RECORDS, KeyAggregator())):  # fmt: skip
            kinesis, put = CountingKinesis(), 0
            for start in range(0, len(entries), chunk_size):
                chunk = entries[start : start + chunk_size]
                sent = [(r.partition_key, r.data) for r in pack.pack(chunk)] if pack else chunk
                put += put_records(kinesis, "bench", sent).sent
            counts[label] = (kinesis.requests, put)
        (plain_calls, plain_put), (agg_calls, agg_put) = counts["plain"], counts["--aggregate"]
        print(f"   {unicorns} partition keys: plain {plain_calls} calls ({plain_put:,} Kinesis records), "
              f"--aggregate {agg_calls} calls ({agg_put:,} Kinesis records)")  # fmt: skip


def main() -> None:
    print(f"python {sys.version.split()[0]}; CPU time, median of per-round ratios over interleaved rounds")
    plain_batch_overhead()
    aggregated_against_plain()
    one_aggregate_of_n()
    put_calls_per_10_000()


if __name__ == "__main__":
    main()
