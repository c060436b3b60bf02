"""What a handler's cold start loads: never the X-Ray SDK unless tracing is on, and it still works traced.

Each handler is imported in a fresh interpreter with the environment the template gives it, as
Lambda's init phase would; `sys.modules` then says what was loaded.
"""

import json
import subprocess
import sys

import pytest
from support import REPO_ROOT

from benchmarks.bench_cold_start import FUNCTIONS, function_environment

REPORT_LOADED = (
    "import sys, json; sys.path[:0] = ['layers/shared', 'functions/{function}']; import app; "
    "print(json.dumps({{'xray': 'aws_xray_sdk' in sys.modules, 'avro': 'avro' in sys.modules, "
    "'handler': type(app.lambda_handler).__name__}}))"
)


def loaded_at_cold_start(function: str, **overrides: str) -> dict:
    env = {**function_environment(FUNCTIONS[function]), **overrides}
    run = subprocess.run(
        [sys.executable, "-c", REPORT_LOADED.format(function=function)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=120,
    )
    return json.loads(run.stdout.splitlines()[-1])


@pytest.mark.parametrize("function", FUNCTIONS)
def test_without_tracing_no_handler_loads_the_xray_sdk_or_producer_code(function):
    loaded = loaded_at_cold_start(function)
    assert loaded == {"xray": False, "avro": False, "handler": "function"}


def test_with_tracing_on_the_handler_runs_under_powertools_tracer():
    assert loaded_at_cold_start("stream_processor", POWERTOOLS_TRACE_DISABLED="false")["xray"] is True
