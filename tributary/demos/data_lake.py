"""Order data lake demo: CSV files → OrderTransactions → orders-cdc → Firehose (transform) → Parquet → DuckDB.

`tributary demo` uploads a generated day of orders and a file of changes to some of them (corrected
amounts, added lines), and enters then cancels a few phone orders directly in the table (INSERT
then REMOVE). After draining, the current-view named query runs with DuckDB over the emulated
lake; the section is accounted when the table and the current view both equal the state the
files imply, with nothing under the lake's error prefix.

The order generators are in tributary.sample_orders (`tributary produce orders` uses them too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tributary.demos import DemoContext, DemoFigures, DemoSection
from tributary.sample_orders import CSV_COLUMNS, change_rows, csv_bytes, order_rows
from tributary.sample_orders import csv_lines as csv_lines  # re-exported: the CSV loader's tests read it here

CURRENT_VIEW_QUERY = "current-order-lines"
COUNT_QUERY = "order-line-count"
SHOWN_CHANGES = 8

OrderKey = tuple[str, str]


def expected_state(
    *files: Iterable[Mapping[str, str]], removed: Iterable[OrderKey] = ()
) -> dict[OrderKey, dict[str, str]]:
    """The table, and the lake's current view, after loading `files` in order and deleting `removed`."""
    state = {(row["order_id"], row["item_id"]): dict(row) for rows in files for row in rows}
    for key in removed:
        state.pop(key, None)
    return state


def comparable(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A CSV row or a current-view row as text, so the two can be compared exactly."""
    moment = row["time_stamp"]
    if not isinstance(moment, datetime):
        moment = datetime.fromisoformat(str(moment))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    values = dict(
        row, amount=f"{Decimal(str(row['amount'])):.2f}", time_stamp=moment.isoformat(timespec="milliseconds")
    )
    return tuple(str(values[name]) for name in CSV_COLUMNS)


def current_view(ctx: DemoContext) -> list[dict[str, Any]]:
    """The current-view named query's rows, run with DuckDB over the emulated lake."""
    from tributary.runtime.lake import Lake  # the local runtime's lake: only where the runtime runs

    lake = Lake.from_emulator()
    columns, rows = lake.query(lake.named_queries[ctx.parameters.get("NamePrefix", "") + CURRENT_VIEW_QUERY])
    return [dict(zip(columns, row, strict=True)) for row in rows]


def line_count(ctx: DemoContext) -> tuple[int, int]:
    from tributary.runtime.lake import Lake

    lake = Lake.from_emulator()
    _, rows = lake.query(lake.named_queries[ctx.parameters.get("NamePrefix", "") + COUNT_QUERY])
    return int(rows[0][0]), int(rows[0][1])


def table_items(ctx: DemoContext) -> int:
    paginator = ctx.client("dynamodb").get_paginator("scan")
    table = ctx.physical_name("OrderTransactionsTable")
    return sum(page["Count"] for page in paginator.paginate(TableName=table, Select="COUNT"))


def lake_objects(ctx: DemoContext, prefix: str) -> list[str]:
    paginator = ctx.client("s3").get_paginator("list_objects_v2")
    bucket = ctx.physical_name("OrdersLakeBucket")
    return [
        item["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for item in page.get("Contents", [])
    ]


@dataclass
class DataLakeDemo:
    """The order lake's part of `tributary demo`."""

    name: str = "order data lake: CSV → DynamoDB → Firehose → Parquet"
    required_resources: tuple[str, ...] = (
        "OrderTransactionsTable",
        "OrdersSourceBucket",
        "OrdersLakeBucket",
        "CsvLoaderFunction",
        "OrdersDeliveryStream",
        "FirehoseTransformFunction",
        "CurrentOrderLinesQuery",
    )
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    day: date = date(2020, 9, 2)
    orders: int = 150
    phone_orders: int = 3
    day_rows: list[dict[str, str]] = field(default_factory=list)
    changes: list[dict[str, str]] = field(default_factory=list)
    cancelled: list[OrderKey] = field(default_factory=list)

    def produce(self, ctx: DemoContext) -> None:
        self.day_rows = list(order_rows(self.day, self.orders))
        self.changes = list(change_rows(self.day_rows))
        # The S3 emulation notifies in key order: the day's file loads before its changes.
        self.upload(ctx, f"orders/{self.day}/1-day.csv", self.day_rows)
        self.upload(ctx, f"orders/{self.day}/2-changes.csv", self.changes)
        self.cancelled = self.enter_and_cancel_phone_orders(ctx)

    def upload(self, ctx: DemoContext, key: str, rows: Iterable[Mapping[str, str]]) -> None:
        bucket = ctx.physical_name("OrdersSourceBucket")
        ctx.client("s3").put_object(Bucket=bucket, Key=key, Body=csv_bytes(rows))

    def enter_and_cancel_phone_orders(self, ctx: DemoContext) -> list[OrderKey]:
        dynamodb, table = ctx.client("dynamodb"), ctx.physical_name("OrderTransactionsTable")
        keys = [(f"{self.day:%Y%m%d}-P{number:03d}", "1") for number in range(self.phone_orders)]
        for order_id, item_id in keys:
            item = {
                "order_id": {"S": order_id},
                "item_id": {"S": item_id},
                "product": {"S": "Echo Dot"},
                "amount": {"N": "49.99"},
                "currency": {"S": "USD"},
                "time_stamp": {"S": f"{self.day}T12:00:00.000Z"},
                "transaction_date": {"S": self.day.isoformat()},
            }
            dynamodb.put_item(TableName=table, Item=item)
            dynamodb.delete_item(TableName=table, Key={"order_id": item["order_id"], "item_id": item["item_id"]})
        return keys

    def report(self, ctx: DemoContext) -> DemoSection:
        expected = expected_state(self.day_rows, self.changes, removed=self.cancelled)
        view = current_view(ctx)
        items, (lines, orders) = table_items(ctx), line_count(ctx)
        before = {(row["order_id"], row["item_id"]): row for row in self.day_rows}
        changed = {(row["order_id"], row["item_id"]) for row in self.changes}
        section = DemoSection(self.name)
        section.lines += [
            f"loaded {len(self.day_rows)} lines of {self.day}, then {len(self.changes)} changes"
            f" ({len(changed & before.keys())} corrected, {len(changed - before.keys())} added);"
            f" {len(self.cancelled)} phone orders entered and cancelled",
            f"OrderTransactions: {items} items; lake: {len(lake_objects(ctx, 'order_changes/'))} Parquet object(s)",
            f"current view (named queries): {lines} order lines in {orders} orders",
            "changed lines as the current view shows them:",
        ]
        section.lines += [
            f"  {row['order_id']}/{row['item_id']}: {row['product']} {row['amount']} {row['currency']}"
            + (f" (was {before[key]['amount']})" if key in before else " (added)")
            for row in view
            if (key := (row["order_id"], row["item_id"])) in changed
        ][:SHOWN_CHANGES]
        section.problems = self.problems(ctx, expected, view, items)
        loaded = len(self.day_rows) + len(self.changes)
        missing = len({comparable(row) for row in expected.values()} - {comparable(row) for row in view})
        section.figures = DemoFigures(records_in=loaded, applied=loaded - missing, on_failure=0, lost=missing)
        section.accounted = not section.problems
        return section

    @staticmethod
    def problems(
        ctx: DemoContext, expected: Mapping[OrderKey, Mapping[str, str]], view: list[dict[str, Any]], items: int
    ) -> list[str]:
        found = {comparable(row) for row in view}
        wanted = {comparable(row) for row in expected.values()}
        problems = []
        if items != len(expected):
            problems.append(f"OrderTransactions holds {items} items, expected {len(expected)}")
        if found != wanted:
            problems.append(
                f"current view differs: {len(wanted - found)} expected lines missing or different,"
                f" {len(found - wanted)} unexpected"
            )
        if errors := lake_objects(ctx, "errors/"):
            problems.append(f"{len(errors)} objects under the lake's error prefix, e.g. {errors[0]}")
        return problems


PIPELINE = DataLakeDemo()
