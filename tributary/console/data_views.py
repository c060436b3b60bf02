"""The console's data view: the read models (DynamoDB tables), the order lake and the SMS opt-out list.

Everything is read the way a developer would read it: the tables through the DynamoDB API of the
embedded AWS, the lake through tributary.runtime.lake (its Parquet objects in DuckDB, the template's
named query for the current view), the opt-out list from the SMS emulation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from tributary.runtime.app import Runtime

LATEST_ITEMS = 5
MAX_SCANNED_ITEMS = 2000
TOP_LINES = 10
# Attributes that order a table's items in time, newest last: the first one an item has wins.
TIME_ATTRIBUTES = ("StatusTime", "windowStart", "updatedAt", "createdAt", "time_stamp", "changedAt")
CURRENT_VIEW_QUERY = "current-order-lines"
TABLE_TYPE = "AWS::DynamoDB::Table"
_deserializer = TypeDeserializer()


def plain(value: Any) -> Any:
    """A DynamoDB value as JSON can carry it (Decimal → int or float, sets → sorted lists, bytes → text)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(item) for item in value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return value


def read_models(runtime: Runtime, dynamodb: Any) -> list[dict[str, Any]]:
    """Each table of the template: its item count and its latest items (by a time attribute when it has one)."""
    tables = []
    for logical_id, resource in sorted(runtime.template.resources.items()):
        if resource.type != TABLE_TYPE:
            continue
        name = runtime.template.physical_name(logical_id)
        try:
            items, complete = _scan(dynamodb, name)
        except Exception as error:  # not deployed, or gone with a reset: say so
            tables.append({"table": name, "logicalId": logical_id, "error": str(error), "items": 0, "latest": []})
            continue
        tables.append({"table": name, "logicalId": logical_id, "items": len(items), "complete": complete,
                       "latest": _latest(items)})  # fmt: skip
    return tables


def _scan(dynamodb: Any, table: str) -> tuple[list[dict[str, Any]], bool]:
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items += [{key: plain(_deserializer.deserialize(value)) for key, value in item.items()}
                  for item in page.get("Items", [])]  # fmt: skip
        if len(items) >= MAX_SCANNED_ITEMS:
            return items, False
    return items, True


def _latest(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    attribute = next((name for name in TIME_ATTRIBUTES if any(name in item for item in items)), None)
    if attribute is not None:
        items = sorted(items, key=lambda item: str(item.get(attribute, "")))
    return [json.loads(json.dumps(item, default=str)) for item in items[-LATEST_ITEMS:][::-1]]


def order_lake(glue: Any, athena: Any, s3: Any) -> dict[str, Any]:
    """The lake's tables with their row counts, and the top lines of the current view (its named query)."""
    from tributary.runtime.lake import Lake  # duckdb and pyarrow load only when a lake is shown

    lake = Lake.from_clients(glue, athena, s3)
    tables = []
    for table in lake.tables:
        database, name = table.split(".", 1)
        _, rows = lake.query(f'SELECT count(*) FROM "{database}"."{name}"')
        tables.append({"table": table, "rows": int(rows[0][0])})
    view: dict[str, Any] = {"query": None, "columns": [], "rows": []}
    query_name = next((name for name in lake.named_queries if name.endswith(CURRENT_VIEW_QUERY)), None)
    if query_name is not None and lake.tables:
        columns, rows = lake.query(f"SELECT * FROM ({lake.named_queries[query_name]}) LIMIT {TOP_LINES}")
        view = {"query": query_name, "columns": columns, "rows": [[_cell(value) for value in row] for row in rows]}
    return {"tables": tables, "namedQueries": sorted(lake.named_queries), "currentView": view}


def _cell(value: Any) -> Any:
    plain_value = plain(value)
    return plain_value if isinstance(plain_value, str | int | float | bool) or plain_value is None else str(value)


def opt_out_lists(runtime: Runtime) -> list[dict[str, Any]]:
    """The emulated SMS opt-out lists: each number, and whether the recipient opted out by keyword."""
    sms = runtime.deployment.sms
    if sms is None:
        return []
    lists = []
    for name in sorted(list(sms.lists)):
        numbers, by_keyword = sms.opted_out_numbers(name), sms.end_user_opted_out(name)
        lists.append({"name": name, "numbers": [{"number": number, "endUserOptedOut": number in by_keyword}
                                                for number in sorted(numbers)]})  # fmt: skip
    return lists


def queue_depths(runtime: Runtime, sqs: Any) -> list[Mapping[str, Any]]:
    """Messages waiting in each on-failure SQS queue now (read without receiving them)."""
    arns = sorted({mapping.config.on_failure_destination_arn or "" for mapping in list(runtime.mappings.values())})
    depths = []
    for arn in arns:
        if arn.split(":")[2:3] != ["sqs"]:
            continue
        try:
            url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            depths.append({"queue": arn.rsplit(":", 1)[-1],
                           "messages": int(attributes["Attributes"]["ApproximateNumberOfMessages"])})  # fmt: skip
        except Exception as error:
            depths.append({"queue": arn.rsplit(":", 1)[-1], "error": str(error)})
    return depths
