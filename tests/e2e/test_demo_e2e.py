"""`tributary demo` end to end, run the way the README runs it: the installed command, from the repo root."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tributary.demos.stream_processor import UNICORN_POISON, UNICORN_READINGS, UNICORNS

REPO = Path(__file__).parents[2]


def tributary_command() -> list[str]:
    installed = REPO / ".venv" / "bin" / "tributary"
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "tributary.cli"]


@pytest.mark.slow
def test_demo_accounts_for_every_record_and_exits_zero():
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    demo = subprocess.run(
        [*tributary_command(), "demo"], cwd=REPO, capture_output=True, text=True, timeout=300, env=environment
    )
    report = demo.stdout
    assert demo.returncode == 0, report + demo.stderr
    assert "demo passed" in report
    assert "## stream processor: unicorns and payments  [accounted]" in report
    assert "NOT ACCOUNTED" not in report
    for stream, table, poison in (("wildrydes", "UnicornSensorData", 3), ("payments", "Payments", 2)):
        assert re.search(rf"{stream}: \d+ records put by this demo \({poison} poison\)", report)
        assert re.search(rf"{table}: \d+ items", report)
        accounted = re.search(
            rf"{stream}: .*?accounted: (\d+) written \+ (\d+) in on-failure batches of (\d+), 0 lost",
            report, re.S,
        )  # fmt: skip
        assert accounted, report
        written, failed, total = map(int, accounted.groups())
        assert written + failed == total and failed >= poison
    assert report.count("on-failure: RetryAttemptsExhausted") >= 5
    assert_unicorns_went_aggregated(report)


def assert_unicorns_went_aggregated(report: str) -> None:
    """The unicorns' producer aggregates: each unicorn's readings in one Kinesis record, each poison pill plain;
    the functions open every aggregate, and every user record on the stream is accounted for."""
    aggregation = re.search(
        r"KPL-aggregated, one partition key per aggregate: (\d+) user records in (\d+) Kinesis records "
        r"\((\d+) PutRecords calls?\); on the stream (\d+) aggregates hold (\d+) user records, (\d+) of them written",
        report,
    )
    assert aggregation, report
    put, kinesis_records, calls, aggregates, in_aggregates, written = map(int, aggregation.groups())
    assert put == UNICORN_READINGS + len(UNICORN_POISON)
    assert kinesis_records == len(UNICORNS) + len(UNICORN_POISON)  # ten small readings fit one aggregate
    assert calls == 1
    assert (aggregates, in_aggregates) == (len(UNICORNS), UNICORN_READINGS)
    assert written == UNICORN_READINGS  # no fault injected: every valid reading written, none dead-lettered whole
    on_stream = re.search(r"wildrydes: \d+ records put .*?, (\d+) user records on the stream in (\d+) Kinesis", report)
    assert on_stream, report
    user_records, stream_records = map(int, on_stream.groups())
    accounted = re.search(r"wildrydes: .*?accounted: (\d+) written \+ (\d+) in on-failure batches of (\d+), 0 lost",
                          report, re.S)  # fmt: skip
    assert accounted and int(accounted.group(3)) == user_records > stream_records
