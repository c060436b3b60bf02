"""The order pipeline's settings, one frozen object per function, read once at cold start.

csv_loader: TABLE_NAME (OrderTransactions); optionally CONTINUATION_MARGIN_MS (hand over to a fresh
invocation when less than this is left), ROWS_PER_WRITE and WRITE_THREADS (BatchWriteItem requests
in flight at once: each is mostly a round trip to DynamoDB).
firehose_transform: SOURCE_TABLE_NAME (change records of other tables are dropped).
"""

from dataclasses import dataclass

from tributary_shared.settings import Environ, bounded_int_env, required_env


@dataclass(frozen=True)
class CsvLoaderSettings:
    table_name: str
    continuation_margin_s: float = 30.0
    rows_per_write: int = 500
    write_threads: int = 4

    @classmethod
    def from_env(cls, environ: Environ | None = None) -> "CsvLoaderSettings":
        return cls(
            table_name=required_env("csv loader", "TABLE_NAME", environ=environ)["TABLE_NAME"],
            continuation_margin_s=bounded_int_env("CONTINUATION_MARGIN_MS", 30_000, 1_000, 600_000, environ) / 1000,
            rows_per_write=bounded_int_env("ROWS_PER_WRITE", 500, 25, 10_000, environ),
            write_threads=bounded_int_env("WRITE_THREADS", 4, 1, 16, environ),
        )


@dataclass(frozen=True)
class FirehoseTransformSettings:
    source_table_name: str

    @classmethod
    def from_env(cls, environ: Environ | None = None) -> "FirehoseTransformSettings":
        required = required_env("firehose transform", "SOURCE_TABLE_NAME", environ=environ)
        return cls(required["SOURCE_TABLE_NAME"])
