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
def test_demo_accounts_for_every_record_and_exits_zero(tmp_path):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    html = tmp_path / "report.html"
    demo = subprocess.run(
        [*tributary_command(), "demo", "--report", str(html)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    report = demo.stdout
    assert demo.returncode == 0, report + demo.stderr
    assert "demo passed" in report
    assert report.rstrip().endswith(f"report: {html.resolve().as_uri()}")
    page = html.read_text()
    assert "stream processor: unicorns and payments" in page and "http://" not in page.split("<body", 1)[0]
    assert_summary_table_comes_first(report)
    assert "## stream processor: unicorns and payments: ok" in report
    assert "FAILED" not in report
    for stream, table, poison in (("wildrydes", "UnicornSensorData", 3), ("payments", "Payments", 2)):
        assert re.search(rf"{stream}: \d+ records put by this demo \({poison} poison\)", report)
        assert re.search(rf"{table}: \d+ items", report)
        accounted = re.search(
            rf"{stream}: .*?accounted for: (\d+) applied \+ (\d+) on-failure \(in dead-lettered batches\) "
            rf"of (\d+) user records, 0 lost",
            report, re.S,
        )  # fmt: skip
        assert accounted, report
        written, failed, total = map(int, accounted.groups())
        assert written + failed == total and failed >= poison
    assert report.count("on-failure: RetryAttemptsExhausted") >= 5
    assert_unicorns_went_aggregated(report)


def assert_summary_table_comes_first(report: str) -> None:
    """One summary table before any section: a row per pipeline, the main one first, nothing lost."""
    table = report[report.index("where every record went"):report.index("\n## ")]
    rows = [line for line in table.splitlines() if re.search(r"\d+\s*│\s*\d+\s*│\s*\d+\s*│\s*\d+", line)]
    assert rows and "stream processor" in rows[0], table
    for row in rows:
        records_in, applied, on_failure, lost = map(int, re.findall(r"│\s*(\d+)\s*(?=│)", row)[:4])
        assert lost == 0 and applied + on_failure == records_in, row
    verdicts = " ".join(line.split("│")[-2].strip() for line in table.splitlines() if line.startswith("│"))
    assert verdicts.split() == ["ok:", "none", "lost"] * len(rows), verdicts
    assert report.index("## stream processor") < report.index("## redrive")


def assert_unicorns_went_aggregated(report: str) -> None:
    """The unicorns' producer aggregates: each unicorn's readings in one Kinesis record, each poison pill plain;
    the functions open every aggregate, and every user record on the stream is accounted for."""
    aggregation = re.search(
        r"KPL-aggregated, one partition key per aggregate: (\d+) user records in (\d+) Kinesis records "
        r"\((\d+) PutRecords calls?\); on the stream (\d+) aggregates hold (\d+) user records, (\d+) of them applied",
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
    accounted = re.search(r"wildrydes: .*?accounted for: (\d+) applied \+ (\d+) on-failure \(in dead-lettered "
                          r"batches\) of (\d+) user records, 0 lost", report, re.S)  # fmt: skip
    assert accounted and int(accounted.group(3)) == user_records > stream_records
