"""The emulated data lake as DuckDB tables: each Glue table's Parquet objects, read through the S3 API.

DuckDB's httpfs extension would need a download at run time, so objects are read with boto3 into
Arrow tables instead and registered in DuckDB as `<database>.<table>` (and `<table>` when the
name is unique). Hive-style partition folders (`key=value/`) of the table's PartitionKeys become
columns, as Athena shows them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tributary.user_errors import UserError

PARQUET_MAGIC = b"PAR1"


class LakeTableMissing(UserError):
    """The query names a table (or schema) the lake does not hold: none of its objects has arrived yet, or a typo."""


@dataclass
class Lake:
    connection: duckdb.DuckDBPyConnection
    tables: list[str] = field(default_factory=list)
    named_queries: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_emulator(cls) -> Lake:
        return cls.from_clients(boto3.client("glue"), boto3.client("athena"), boto3.client("s3"))

    @classmethod
    def from_clients(cls, glue: Any, athena: Any, s3: Any) -> Lake:
        """The lake as the catalog (Glue), the named queries (Athena) and the objects (S3) describe it now."""
        lake = cls(duckdb.connect())
        for database in glue.get_databases()["DatabaseList"]:
            for table in glue.get_tables(DatabaseName=database["Name"])["TableList"]:
                lake._register(database["Name"], table, s3)
        for query_id in athena.list_named_queries().get("NamedQueryIds", []):
            query = athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]
            lake.named_queries[query["Name"]] = query["QueryString"]
        return lake

    def _register(self, database: str, table: dict, s3: Any) -> None:
        location = table.get("StorageDescriptor", {}).get("Location", "")
        if not location.startswith("s3://"):
            return
        partition_keys = [key["Name"] for key in table.get("PartitionKeys", [])]
        arrow_table = read_parquet_objects(location, partition_keys, s3)
        if arrow_table is None:
            return
        view = f"arrow_{len(self.tables)}"
        self.connection.register(view, arrow_table)
        self.connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
        self.connection.execute(f'CREATE VIEW "{database}"."{table["Name"]}" AS SELECT * FROM {view}')
        if table["Name"] not in {name.split(".", 1)[1] for name in self.tables}:
            self.connection.execute(f'CREATE VIEW "{table["Name"]}" AS SELECT * FROM {view}')
        self.tables.append(f"{database}.{table['Name']}")

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Columns and rows; UserError for SQL DuckDB cannot parse or naming what the lake lacks."""
        try:
            result = self.connection.execute(sql)
        except (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException) as error:
            problem = str(error).splitlines()[0]
            refusal = LakeTableMissing if isinstance(error, duckdb.CatalogException) else UserError
            raise refusal(f"query failed: {problem}; tables: {', '.join(self.tables) or 'none yet'} "
                          "(`tributary query --list` names them and the named queries)") from error
        columns = [column[0] for column in result.description or []]
        return columns, result.fetchall()


def read_parquet_objects(location: str, partition_keys: Sequence[str], s3: Any) -> pa.Table | None:
    """Every Parquet object under an s3:// location as one Arrow table (None when there are none)."""
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    tables: list[pa.Table] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            if not body.startswith(PARQUET_MAGIC):
                continue
            table = pq.read_table(io.BytesIO(body))
            for key, value in _hive_partitions(item["Key"], partition_keys).items():
                table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
            tables.append(table)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="default")


def _hive_partitions(key: str, partition_keys: Sequence[str]) -> dict[str, str]:
    parts = dict(segment.split("=", 1) for segment in key.split("/") if "=" in segment)
    return {name: parts[name] for name in partition_keys if name in parts}
