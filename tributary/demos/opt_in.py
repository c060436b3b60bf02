"""Demo: DMS change records of `optin_status` → the End User Messaging SMS opt-out list.

Puts a scripted history of opt-in changes (see `tributary.dms_changes`) on the optin-cdc stream
in DMS's format. After draining, prints the opt-out list (held by the runtime's SMS emulation)
beside the list the service's rules say it must hold. Accounted only if the two match and every
record with an invalid phone number reached the on-failure destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tributary.demos import (
    DemoContext,
    DemoFigures,
    DemoSection,
    batches_of_stream,
    function_mapping_stats,
    in_failure_batches,
    read_stream,
)
from tributary.dms_changes import ChangePlan, plan_changes

DEMO_USERS = 24
FUNCTION = "OptInUpdaterFunction"
STREAM = "OptInCdcStream"
OPT_OUT_LIST = "SmsOptOutList"


class OptInDemo:
    name = "opt-in updater: DMS changes to the SMS opt-out list"
    required_resources = (STREAM, OPT_OUT_LIST, FUNCTION)
    parameter_overrides: Mapping[str, str] = {"BatchingWindowSeconds": "0"}

    def __init__(self) -> None:
        self.plan = ChangePlan()

    def produce(self, ctx: DemoContext) -> None:
        self.plan = plan_changes(DEMO_USERS)
        kinesis = ctx.client("kinesis")
        stream = ctx.physical_name(STREAM)
        # One record per call, in order: DMS writes each user's changes in commit order.
        for partition_key, data in self.plan.records:
            kinesis.put_record(StreamName=stream, PartitionKey=partition_key, Data=data)

    def report(self, ctx: DemoContext) -> DemoSection:
        section = DemoSection(self.name, accounted=True)
        list_name = ctx.physical_name(OPT_OUT_LIST)
        try:
            actual = opted_out_numbers(ctx.client("pinpoint-sms-voice-v2"), list_name)
        except (ClientError, BotoCoreError) as error:
            section.accounted = False
            section.problems.append(f"cannot read opt-out list {list_name} (is the SMS emulation running?): {error}")
            return section
        expected = self.plan.expected_opted_out
        invalid = ", ".join(str(record_number(position)) for position in self.plan.invalid_record_positions)
        section.lines.append(
            f"{len(self.plan.records)} DMS records for {DEMO_USERS} users, numbered from 1 in the order they were "
            f"put ({self.plan.ignored_records} to ignore; an invalid phone number in record {invalid}: the changes "
            "after it are delivered again while it is retried)"
        )
        section.lines += side_by_side(actual, expected)
        if actual != expected:
            section.accounted = False
            section.problems.append(
                f"opt-out list differs: missing {sorted(expected - actual)}, unexpected {sorted(actual - expected)}"
            )
        dead_lettered = self._check_invalid_records(ctx, section)
        invalid = len(self.plan.invalid_record_positions)
        section.figures = DemoFigures(records_in=len(self.plan.records), applied=len(self.plan.records) - invalid,
                                      on_failure=dead_lettered, lost=invalid - dead_lettered)
        return section

    def _check_invalid_records(self, ctx: DemoContext, section: DemoSection) -> int:
        """Check each record with an invalid phone number reached the on-failure destination; how many did."""
        stream = ctx.physical_name(STREAM)
        on_stream = read_stream(ctx.client("kinesis"), stream)
        batches = batches_of_stream(ctx.on_failure_records(), stream)
        dead_lettered = 0
        for position in self.plan.invalid_record_positions:
            data = self.plan.records[position][1]
            found = [record for record in on_stream if record.data == data]
            if found and all(in_failure_batches(record, batches) for record in found):
                dead_lettered += 1
                section.lines.append(f"  record {record_number(position)} (invalid phone number, sequence number "
                                     f"{found[0].sequence_number}): in an on-failure batch")
            else:
                section.accounted = False
                section.problems.append(f"record {record_number(position)} (invalid phone number) did not reach the "
                                        "on-failure destination")
        stats = function_mapping_stats(ctx, FUNCTION)
        if stats is not None:
            section.lines.append(
                f"  {FUNCTION}: {stats.records_in} records in, {stats.invocations} invocations, "
                f"{stats.retries} retries, {stats.records_to_destination} records on-failure"
            )
        return dead_lettered


def record_number(position: int) -> int:
    """A record's number in the report: from 1, in the order put (`ChangePlan` positions count from 0)."""
    return position + 1


def opted_out_numbers(client: Any, list_name: str) -> set[str]:
    """Every number on the opt-out list `list_name`, through a pinpoint-sms-voice-v2 client."""
    numbers: set[str] = set()
    for page in client.get_paginator("describe_opted_out_numbers").paginate(OptOutListName=list_name):
        numbers |= {entry["OptedOutNumber"] for entry in page["OptedOutNumbers"]}
    return numbers


def side_by_side(actual: set[str], expected: set[str]) -> list[str]:
    lines = [f"  {'number':<14} {'opt-out list':<13} expected", f"  {'-' * 14} {'-' * 13} {'-' * 8}"]
    for number in sorted(actual | expected):
        mark = "" if (number in actual) == (number in expected) else "   <- differs"
        lines.append(f"  {number:<14} {_yes(number in actual):<13} {_yes(number in expected)}{mark}")
    lines.append(f"  {len(actual)} opted out, {len(expected)} expected")
    return lines


def _yes(flag: bool) -> str:
    return "opted out" if flag else "-"


PIPELINE = OptInDemo()
