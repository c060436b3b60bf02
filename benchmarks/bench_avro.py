"""Decoding Glue-framed Avro through the handler's entry point vs a bare fastavro loop and the AWS package.

20,000 unicorn status records framed for the Glue Schema Registry (one schema version) are
decoded, once as plain frames and once as zlib frames (compression byte 0x05), by:

- `decode_payload`, the stream processor's entry point (framing detection, then the registry
  codec), wired as at a cold start: `PayloadDecoder` builds the codec with `RegistryDeserializer.from_settings`,
  here patched only so the registry answers from memory, and called as the processor calls it
  (`decoder.decode(data)`, looked up per record: the entry point becomes the codec's own);
- the codec's own `RegistryDeserializer.decode`, to show what `decode_payload` adds;
- the `aws-glue-schema-registry` package's KafkaDeserializer (what a Python user would otherwise
  pick);
- the floor: fastavro's `schemaless_reader` over pre-parsed schemas keyed by version id, plus
  `zlib.decompress` for zlib frames, with no checks at all.

Each of 15 rounds has every contender decode the same records, back to back on each slice of 500
in rotating order; a contender's cost against the floor is computed per round, and the median of
those per-round ratios is reported (pairing cancels the drift of a shared machine between
rounds; the best round would flatter whoever got lucky). Goals: through `decode_payload`, at most 1.1x
the floor's cost and at least 1.3x the package's throughput, for plain and zlib frames alike.

Runs are timed in process CPU time (`time.process_time`): the machine has 2 cores shared with
other people's tests, and wall time would charge a contender for the moments the scheduler gave
its core to someone else. Both registries answer from memory, so only decoding is measured.
"""

import gc
import io
import itertools
import statistics
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock
from uuid import UUID

from aws_schema_registry import KafkaDeserializer, SchemaRegistryClient
from fastavro import schemaless_reader

from tributary.avro_encoding import encode_glue
from tributary.producer import unicorn_statuses
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.avro_schemas import canonical_definition, parse_definition
from tributary_shared.payloads import PayloadDecoder
from tributary_shared.schema_registry import RegistrySettings

RECORDS = 20_000
ROUNDS = 15
# Contenders take turns on slices this long (a few milliseconds each), so a burst of load from
# another process lands on all of them alike instead of on whichever ran whole at that moment.
CHUNK = 500
GOAL_COST = 1.1
GOAL_SPEEDUP = 1.3
FLOOR = "bare fastavro loop"
PACKAGE = "aws-glue-schema-registry"
ENTRY_POINT = "decode_payload"
VERSION_ID = UUID("5e0c5a1e-7a1d-4c2b-9f00-00000000b001")
DEFINITION = canonical_definition(
    (Path(__file__).resolve().parent.parent / "schemas" / "unicorn_status.avsc").read_text()
)

Run = Callable[[list[bytes]], None]  # decodes one slice of the records


class InMemoryGlue:
    """The one Glue call the package's deserializer makes, answered without a network."""

    def get_schema_version(self, SchemaVersionId: str) -> dict[str, Any]:
        return {
            "SchemaVersionId": SchemaVersionId,
            "SchemaDefinition": DEFINITION,
            "SchemaArn": "arn:aws:glue:us-east-1:123456789012:schema/tributary/unicorn-status",
            "DataFormat": "AVRO",
            "Status": "AVAILABLE",
            "VersionNumber": 1,
        }


class Summary(NamedTuple):
    records_per_second: float  # from the contender's median CPU seconds per round
    cost: float  # median over rounds of this contender's seconds / the floor's, same round
    cost_low: float  # lowest and highest per-round ratio: how much the machine moved
    cost_high: float
    speedup: float  # median over rounds of the package's seconds / this contender's


class Framing(NamedTuple):
    chunks: list[list[bytes]]
    runs: dict[str, Run]


def framed_records(compress: bool) -> list[bytes]:
    schema = parse_definition(DEFINITION)
    names = [f"Unicorn-{number}" for number in range(1, 11)]
    statuses = itertools.islice(unicorn_statuses(names, seed=42), RECORDS)
    return [encode_glue(status, schema, VERSION_ID, compress=compress) for status in statuses]


@contextmanager
def handler_wiring() -> Iterator[None]:
    """The handler's decoder builds its codec as at a cold start, with a registry that answers from memory."""

    def from_settings(
        cls: type[RegistryDeserializer], settings: RegistrySettings, unframed: Callable[[bytes], Any] | None = None
    ) -> RegistryDeserializer:
        return cls(lambda _: DEFINITION, unframed=unframed)

    with mock.patch.object(RegistryDeserializer, "from_settings", classmethod(from_settings)):
        yield


def contenders(records: list[bytes], compressed: bool) -> dict[str, Run]:
    # The stream processor's entry point as its cold start builds it from its settings.
    decoder = PayloadDecoder(registry=RegistrySettings(glue_registry_name="tributary"))
    package = KafkaDeserializer(SchemaRegistryClient(InMemoryGlue(), registry_name="tributary"))
    schemas = {VERSION_ID.bytes: parse_definition(DEFINITION)}
    codec = RegistryDeserializer(lambda _: DEFINITION).decode
    inflate = zlib.decompress

    def through_decode_payload(chunk: list[bytes]) -> None:
        for data in chunk:
            decoder.decode(data)

    def the_codec(chunk: list[bytes]) -> None:
        for data in chunk:
            codec(data)

    def the_package(chunk: list[bytes]) -> None:
        for data in chunk:
            package.deserialize("wildrydes", data)

    def bare_fastavro(chunk: list[bytes]) -> None:
        for data in chunk:
            schemaless_reader(io.BytesIO(data[18:]), schemas[data[2:18]])

    def bare_fastavro_and_zlib(chunk: list[bytes]) -> None:
        for data in chunk:
            schemaless_reader(io.BytesIO(inflate(data[18:])), schemas[data[2:18]])

    floor = bare_fastavro_and_zlib if compressed else bare_fastavro
    sample = records[:100]
    expected = [_floor_decode(data, schemas) for data in sample]
    assert [decoder.decode(data) for data in sample] == expected
    assert [codec(data) for data in sample] == expected
    assert [package.deserialize("wildrydes", data).data for data in sample] == expected
    return {
        ENTRY_POINT: through_decode_payload,
        "RegistryDeserializer.decode": the_codec,
        PACKAGE: the_package,
        FLOOR: floor,
    }


def _floor_decode(data: bytes, schemas: dict[bytes, Any]) -> Any:
    body = zlib.decompress(data[18:]) if data[1] == 0x05 else data[18:]
    return schemaless_reader(io.BytesIO(body), schemas[data[2:18]])


def chunked(records: list[bytes]) -> list[list[bytes]]:
    return [records[start : start + CHUNK] for start in range(0, len(records), CHUNK)]


def rotated(names: list[str], turn: int) -> list[str]:
    """`names` starting from the turn-th, so none always runs first (warm caches, turbo)."""
    turn %= len(names)
    return names[turn:] + names[:turn]


def paired_round(runs: dict[str, Run], chunks: list[list[bytes]], turn: int) -> dict[str, float]:
    """CPU seconds each contender took to decode all `chunks`, the contenders taking turns on each chunk."""
    seconds = dict.fromkeys(runs, 0.0)
    clock = time.process_time
    for index, chunk in enumerate(chunks):
        for name in rotated(list(runs), turn + index):
            run = runs[name]
            started = clock()
            run(chunk)
            seconds[name] += clock() - started
    return seconds


def paired_rounds(framings: dict[str, Framing], rounds: int) -> dict[str, dict[str, list[float]]]:
    """CPU seconds per framing, contender and round."""
    timings = {framing: {name: [] for name in setup.runs} for framing, setup in framings.items()}
    for turn in range(rounds):
        for framing, setup in framings.items():
            gc.collect()  # no round inherits the collection debt of the one before it
            for name, seconds in paired_round(setup.runs, setup.chunks, turn).items():
                timings[framing][name].append(seconds)
    return timings


def summarize(timings: dict[str, list[float]]) -> dict[str, Summary]:
    floor, package = timings[FLOOR], timings[PACKAGE]
    summaries = {}
    for name, seconds in timings.items():
        costs = [mine / theirs for mine, theirs in zip(seconds, floor, strict=True)]
        speedups = [theirs / mine for mine, theirs in zip(seconds, package, strict=True)]
        summaries[name] = Summary(
            RECORDS / statistics.median(seconds),
            statistics.median(costs),
            min(costs),
            max(costs),
            statistics.median(speedups),
        )
    return summaries


def report(framing: str, summaries: dict[str, Summary]) -> None:
    print(f"  {framing} frames:")
    for name, summary in summaries.items():
        print(
            f"    {name:<28} {summary.records_per_second:>10,.0f} records/s   "
            f"cost vs floor {summary.cost:.2f}x (rounds {summary.cost_low:.2f}-{summary.cost_high:.2f})   "
            f"throughput vs package {summary.speedup:.2f}x"
        )
    entry = summaries[ENTRY_POINT]
    verdict = "met" if entry.cost <= GOAL_COST and entry.speedup >= GOAL_SPEEDUP else "MISSED"
    print(
        f"    {ENTRY_POINT}: {entry.cost:.2f}x the floor's cost (goal <= {GOAL_COST}x), "
        f"{entry.speedup:.2f}x the package's throughput (goal >= {GOAL_SPEEDUP}x): {verdict}"
    )


def main() -> None:
    with handler_wiring():
        framings = {}
        for framing, compressed in (("plain", False), ("zlib", True)):
            records = framed_records(compressed)
            framings[framing] = Framing(chunked(records), contenders(records, compressed))
        timings = paired_rounds(framings, ROUNDS)
    print(
        f"decoding {RECORDS:,} Glue-framed unicorn records per round; median over {ROUNDS} rounds of per-round "
        f"ratios (process CPU time, contenders back to back in rotating order); floor = {FLOOR}"
        " (+ zlib.decompress for zlib frames)"
    )
    for framing, framing_timings in timings.items():
        report(framing, summarize(framing_timings))


if __name__ == "__main__":
    main()
