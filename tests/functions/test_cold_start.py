"""What a handler's cold start loads: never the X-Ray SDK unless tracing is on, and it still works traced;
never the KPL de-aggregation's protobuf runtime, which only an aggregated record loads.

Each handler is imported in a fresh interpreter with the environment the template gives it, as
Lambda's init phase would; `sys.modules` then says what was loaded.
"""

import json
import subprocess
import sys

import pytest
from support import REPO_ROOT, kinesis_event

from benchmarks.bench_cold_start import FIRST_INVOCATION, FUNCTIONS, REMAINING_MS, SAMPLE_EVENTS, function_environment
from tributary.kpl_aggregation import OutgoingUserRecord, encode_aggregate

# Each test starts a fresh interpreter to import a handler: end to end, a second or more each.
pytestmark = pytest.mark.slow

IMPORT_HANDLER = "import sys, json; sys.path[:0] = ['layers/shared', 'functions/{function}']; import app"
REPORT_LOADED = (
    "print(json.dumps({{'xray': 'aws_xray_sdk' in sys.modules, 'avro': 'avro' in sys.modules, "
    "'kpl': any(name.startswith(('google.protobuf', 'aws_kinesis_agg')) for name in sys.modules), "
    "'handler': type(app.lambda_handler).__name__}}))"
)


def loaded_after(function: str, code: str = "", **overrides: str) -> dict:
    """What the handler's cold start, and then `code` (say, a first invocation), loaded."""
    env = {**function_environment(FUNCTIONS[function]), **overrides}
    script = "\n".join([IMPORT_HANDLER.format(function=function), code, REPORT_LOADED.format()])
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=120,
    )
    return json.loads(run.stdout.splitlines()[-1])


def loaded_at_cold_start(function: str, **overrides: str) -> dict:
    return loaded_after(function, **overrides)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_without_tracing_no_handler_loads_the_xray_sdk_producer_code_or_the_kpl_runtime(function):
    loaded = loaded_at_cold_start(function)
    assert loaded == {"xray": False, "avro": False, "kpl": False, "handler": "function"}


@pytest.mark.parametrize("function", ["stream_processor", "aggregator", "optin_updater"])
def test_a_first_invocation_on_plain_records_loads_no_kpl_runtime(function):
    invoked = FIRST_INVOCATION.format(event=SAMPLE_EVENTS[function], remaining_ms=REMAINING_MS)
    assert loaded_after(function, invoked)["kpl"] is False


def test_an_aggregated_record_loads_the_kpl_runtime_when_it_arrives(tmp_path):
    data = encode_aggregate([OutgoingUserRecord("k", f'{{"Name": "A", "StatusTime": "{n}"}}'.encode()) for n in "12"])
    path = tmp_path / "aggregated.json"
    path.write_text(json.dumps(kinesis_event([("k", data)])))
    invoked = FIRST_INVOCATION.replace("events/{event}", str(path)).format(remaining_ms=REMAINING_MS)
    assert loaded_after("stream_processor", invoked)["kpl"] is True


def test_with_tracing_on_the_handler_runs_under_powertools_tracer():
    assert loaded_at_cold_start("stream_processor", POWERTOOLS_TRACE_DISABLED="false")["xray"] is True
