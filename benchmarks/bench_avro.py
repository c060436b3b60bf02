"""Decoding Glue-framed Avro: this codec vs the aws-glue-schema-registry package vs a bare fastavro loop.

100,000 unicorn status records framed for the Glue Schema Registry (uncompressed, one schema
version) are decoded three ways, interleaved over several rounds: `RegistryDeserializer`; the
`aws-glue-schema-registry` package's KafkaDeserializer (what a Python user would otherwise
pick); and the floor, fastavro's `schemaless_reader` over pre-parsed schemas keyed by version
id with no checks at all. Goals: at least 1.3x the package's throughput, and at most 1.1x the
bare loop's cost. Both registries answer from memory, so only decoding is measured.
"""

import io
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from aws_schema_registry import KafkaDeserializer, SchemaRegistryClient
from fastavro import schemaless_reader

from tributary.producer import unicorn_statuses
from tributary_shared.avro_codec import RegistryDeserializer, canonical_definition, encode_glue, parse_definition

RECORDS = 100_000
ROUNDS = 9  # a multiple of the three contenders: each runs first, second and third equally often
VERSION_ID = UUID("5e0c5a1e-7a1d-4c2b-9f00-00000000b001")
DEFINITION = canonical_definition(
    (Path(__file__).resolve().parent.parent / "schemas" / "unicorn_status.avsc").read_text()
)


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


def framed_records() -> list[bytes]:
    schema = parse_definition(DEFINITION)
    names = [f"Unicorn-{number}" for number in range(1, 11)]
    statuses = itertools.islice(unicorn_statuses(names, seed=42), RECORDS)
    return [encode_glue(status, schema, VERSION_ID) for status in statuses]


def contenders(records: list[bytes]) -> dict[str, Callable[[], object]]:
    codec = RegistryDeserializer(lambda _: DEFINITION)
    package = KafkaDeserializer(SchemaRegistryClient(InMemoryGlue(), registry_name="tributary"))
    schemas = {VERSION_ID.bytes: parse_definition(DEFINITION)}

    def this_codec() -> None:
        for data in records:
            codec(data)

    def the_package() -> None:
        for data in records:
            package.deserialize("wildrydes", data)

    def bare_fastavro() -> None:
        for data in records:
            schemaless_reader(io.BytesIO(data[18:]), schemas[data[2:18]])

    sample = records[:100]
    expected = [schemaless_reader(io.BytesIO(data[18:]), schemas[data[2:18]]) for data in sample]
    assert [codec(data) for data in sample] == expected
    assert [package.deserialize("wildrydes", data).data for data in sample] == expected
    return {"this codec": this_codec, "aws-glue-schema-registry": the_package, "bare fastavro": bare_fastavro}


def round_orders(names: list[str], rounds: int) -> list[list[str]]:
    """The contenders' order in each round, rotated so none always runs first (warm caches, turbo)."""
    return [names[turn % len(names):] + names[: turn % len(names)] for turn in range(rounds)]


def rotated_medians(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds per contender over `rounds`, all contenders in each round, in rotating order."""
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for order in round_orders(list(runs), rounds):
        for name in order:
            started = time.perf_counter()
            runs[name]()
            timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    records = framed_records()
    medians = rotated_medians(contenders(records), ROUNDS)
    print(f"decoding {RECORDS:,} Glue-framed unicorn records, median of {ROUNDS} rounds in rotating order")
    for name, seconds in medians.items():
        print(f"  {name:<26} {RECORDS / seconds:>12,.0f} records/s")
    speedup = medians["aws-glue-schema-registry"] / medians["this codec"]
    cost = medians["this codec"] / medians["bare fastavro"]
    package_cost = medians["aws-glue-schema-registry"] / medians["bare fastavro"]
    print(f"  throughput vs aws-glue-schema-registry: {speedup:.2f}x (goal >= 1.3x)")
    print(f"  cost vs bare fastavro loop:             {cost:.2f}x (goal <= 1.1x)")
    print(f"  aws-glue-schema-registry vs bare loop:  {package_cost:.2f}x")


if __name__ == "__main__":
    main()
