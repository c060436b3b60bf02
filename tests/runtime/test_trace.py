"""The --trace file: one run per file, every line timed."""

import json

from tributary.runtime.trace import TraceWriter


def test_a_trace_file_holds_one_run_and_every_line_says_when(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text('{"type": "invocation", "from": "the previous run"}\n')

    trace = TraceWriter(path, clock=lambda: 1_800_000_000.25)
    trace.invocation(function="f", outcome="success")
    trace.delivery(function="f", condition="RetryAttemptsExhausted")
    trace.close()

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["type"], line["time"]) for line in lines] == [
        ("invocation", "2027-01-15T08:00:00.250Z"),
        ("delivery", "2027-01-15T08:00:00.250Z"),
    ]
