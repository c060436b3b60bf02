"""Read the fleet's per-window figures back from UnicornAggregation, shards and segments combined.

Lambda keeps tumbling windows per shard, so one unicorn-minute may be stored as several items
(sort key "<window start>#<shardId>#<segment>"). Query the window's prefix and add the parts up:

    aws dynamodb query --table-name UnicornAggregation \
        --key-condition-expression "#n = :name AND begins_with(windowStart, :start)" \
        --expression-attribute-names '{"#n": "name"}' \
        --expression-attribute-values '{":name": {"S": "Shadowfax"}, ":start": {"S": "2026-11-21T12:00:00Z#"}}'

then count and distance are sums, the min/max figures are the min/max over the items.
"""

from collections.abc import Iterator
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from tributary_shared.aggregator.readings import format_status_time
from tributary_shared.aggregator.sink import KEY_SEPARATOR, UnicornMinute, combine_items, normalize_window_time

_deserializer = TypeDeserializer()


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _pages(client: Any, operation: str, **request: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**request):
        yield from (_plain(item) for item in page.get("Items", []))


def unicorn_minute(table_name: str, name: str, window_start: str, client: Any = None) -> UnicornMinute | None:
    """One unicorn's figures for the window starting at `window_start` ("2026-11-21T12:00:00Z")."""
    dynamodb = client or boto3.client("dynamodb")
    prefix = normalize_window_time(window_start) + KEY_SEPARATOR
    items = list(
        _pages(
            dynamodb,
            "query",
            TableName=table_name,
            KeyConditionExpression="#n = :name AND begins_with(windowStart, :start)",
            ExpressionAttributeNames={"#n": "name"},
            ExpressionAttributeValues={":name": {"S": name}, ":start": {"S": prefix}},
            ConsistentRead=True,
        )
    )
    rows = combine_items(items)
    return rows[0] if rows else None


def fleet_minutes(table_name: str, client: Any = None) -> list[UnicornMinute]:
    """Every unicorn's figures for every window in the table (a scan: for demos and small tables)."""
    dynamodb = client or boto3.client("dynamodb")
    return combine_items(list(_pages(dynamodb, "scan", TableName=table_name, ConsistentRead=True)))


def format_fleet_table(rows: list[UnicornMinute]) -> list[str]:
    """The operations team's per-minute view, one line per unicorn and window."""
    header = (
        f"{'window start':<20} {'unicorn':<16} {'records':>7} {'distance':>10} "
        f"{'magic min-max':>13} {'health min-max':>14} {'first..last StatusTime':<31} {'parts':>5}"
    )
    lines = [header]
    for row in rows:
        figures = row.figures
        span = f"{format_status_time(figures.first_status_ms)[11:]}..{format_status_time(figures.last_status_ms)[11:]}"
        lines.append(
            f"{row.window_start:<20} {row.name:<16.16} {figures.count:>7} {figures.distance:>10.2f} "
            f"{f'{figures.min_magic_points}-{figures.max_magic_points}':>13} "
            f"{f'{figures.min_health_points}-{figures.max_health_points}':>14} {span:<31} "
            f"{row.parts:>4}{'*' if row.partial else ' '}"
        )
    return lines
