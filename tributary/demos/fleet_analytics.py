"""Demo: fleet analytics. Telemetry of a few unicorns goes on wildrydes; the Aggregator's tumbling
windows (shortened to a few seconds) fill UnicornAggregation and wildrydes-summary; the report prints
the fleet table, shards and window segments combined, and checks every reading is counted once."""

import json
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tributary.demos import DemoContext, DemoFigures, DemoSection, read_stream
from tributary.fleet_queries import fleet_minutes, format_fleet_table
from tributary_shared.aggregator.readings import format_status_time
from tributary_shared.kinesis_put import put_records
from tributary_shared.payloads import decode_payload

DEMO_UNICORNS = ("Starlight", "Moonbeam", "Thunderhoof", "Glimmer", "Nimbus")
READINGS_PER_UNICORN = 12
MAPPING = "AggregatorFunction.Wildrydes"


def telemetry(name: str, now_ms: int, index: int, rng: random.Random) -> dict[str, Any]:
    return {
        "Name": name,
        "StatusTime": format_status_time(now_ms + index * 250),
        "Latitude": round(40.749 + rng.uniform(-0.01, 0.01), 6),
        "Longitude": round(-73.986 + rng.uniform(-0.01, 0.01), 6),
        "Distance": round(rng.uniform(5, 12), 2),
        "MagicPoints": rng.randint(100, 160),
        "HealthPoints": rng.randint(140, 180),
    }


@dataclass
class FleetAnalyticsDemo:
    name: str = "fleet analytics"
    required_resources: tuple[str, ...] = ("AggregatorFunction", "UnicornAggregationTable", "WildrydesSummaryStream")
    parameter_overrides: Mapping[str, str] = field(default_factory=lambda: {"TumblingWindowInSeconds": "5"})
    sent: Counter[str] = field(default_factory=Counter)

    def produce(self, ctx: DemoContext) -> None:
        rng = random.Random(2026)
        now_ms = int(time.time() * 1000)
        entries = [
            (name, json.dumps(telemetry(name, now_ms, index, rng)).encode("utf-8"))
            for index in range(READINGS_PER_UNICORN)
            for name in DEMO_UNICORNS
        ]
        report = put_records(ctx.client("kinesis"), ctx.physical_name("WildrydesStream"), entries)
        if report.failed_entries:
            raise RuntimeError(f"{report.failed} telemetry records not put: {report.failed_entries[0].error_code}")
        self.sent = Counter(name for name, _ in entries)  # this run's, never an earlier run's too

    def report(self, ctx: DemoContext) -> DemoSection:
        rows = fleet_minutes(ctx.physical_name("UnicornAggregationTable"), client=ctx.client("dynamodb"))
        window_s = ctx.parameters.get("TumblingWindowInSeconds", "60")
        section = DemoSection(title=f"Fleet analytics: per-window figures ({window_s} s tumbling windows)")
        section.lines += format_fleet_table(rows)
        counted = Counter[str]()
        for row in rows:
            counted[row.name] += row.figures.count
        for name in DEMO_UNICORNS:
            if counted[name] != self.sent[name]:
                section.problems.append(f"{name}: {self.sent[name]} readings sent, {counted[name]} counted")
        summaries = self._summaries(ctx)
        stored_parts = sum(row.parts for row in rows)
        unique = len({summary["SummaryId"] for summary in summaries})
        section.lines.append(
            f"wildrydes-summary: {len(summaries)} records, {unique} distinct SummaryIds "
            f"for {stored_parts} stored unicorn-window parts (parts > 1: several shards or an early-ended window)"
        )
        if unique != stored_parts:
            section.problems.append(f"{unique} distinct summaries for {stored_parts} stored unicorn-window parts")
        stats = ctx.mapping_stats().get(MAPPING)
        if stats is not None:
            section.lines.append(
                f"{MAPPING}: {stats.records_in} Kinesis records in (a KPL aggregate is one), "
                f"{stats.invocations} invocations, {stats.records_to_destination} Kinesis records to the "
                "on-failure destination"
            )
        section.figures = DemoFigures(
            records_in=sum(self.sent.values()),
            applied=sum(min(counted[name], self.sent[name]) for name in DEMO_UNICORNS),
            on_failure=0,  # a reading the aggregator gives up is not counted: lost to the fleet table
            lost=sum(max(0, self.sent[name] - counted[name]) for name in DEMO_UNICORNS),
        )
        section.accounted = not section.problems
        return section

    @staticmethod
    def _summaries(ctx: DemoContext) -> list[dict[str, Any]]:
        summary_stream = ctx.physical_name("WildrydesSummaryStream")
        return [decode_payload(record.data) for record in read_stream(ctx.client("kinesis"), summary_stream)]


PIPELINE = FleetAnalyticsDemo()
