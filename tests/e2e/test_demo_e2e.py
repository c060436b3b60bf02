"""`tributary demo` end to end, run the way the README runs it: the installed command, from the repo root."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
        accounted = re.search(rf"{stream}: .*?accounted: (\d+) written \+ (\d+) in on-failure batches of (\d+), 0 lost",
                              report, re.S)  # fmt: skip
        assert accounted, report
        written, failed, total = map(int, accounted.groups())
        assert written + failed == total and failed >= poison
    assert report.count("on-failure: RetryAttemptsExhausted") >= 5
