"""Cold start: each handler as Lambda's init phase loads it, against `import boto3` + one client.

A Python function's floor is importing boto3 and creating a client; everything a handler imports
beyond that (Powertools, fastavro, the layer's own code) is what this benchmark charges to it.
Two figures per handler, each in a fresh interpreter configured by the environment the template
gives the function with default parameters (tracing off):

- *import*: `import app`, Lambda's init phase;
- *+ first invocation*: the init phase and then the handler on its sample event from `events/`,
  with every AWS endpoint refusing connections on loopback, so the clients, codecs and lazy imports
  the first invocation needs are paid for too (its AWS calls fail at once and are not timed).

Contenders run in turns over several rounds and the medians are compared. Also measured: the
stream processor with `Tracing=Active` (the X-Ray SDK loads), and the layer's size as `sam build`
builds it.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse

from benchmarks.common import REPO_ROOT, interleaved_medians, python_startup_seconds
from tributary_shared.invocation import DEADLINE_MARGIN_S
from tributary_shared.retries import CALL_BUDGET_S

ROUNDS = 7
TARGET_RATIO = 1.3
BASELINE = "import boto3; boto3.client('dynamodb')"
# Each handler directory, the function the template deploys from it, and its sample event.
FUNCTIONS = {
    "stream_processor": "StreamProcessorFunction",
    "aggregator": "AggregatorFunction",
    "csv_loader": "CsvLoaderFunction",
    "firehose_transform": "FirehoseTransformFunction",
    "optin_updater": "OptInUpdaterFunction",
}
SAMPLE_EVENTS = {
    "stream_processor": "kinesis-unicorn.json",
    "aggregator": "tumbling-window-first.json",
    "csv_loader": "s3-put-orders-csv.json",
    "firehose_transform": "firehose-insert.json",
    "optin_updater": "dms-optout-update.json",
}
# Port 9 (discard) on loopback: nothing listens, so every call is refused at once and nothing leaves the machine.
REFUSING_ENDPOINT = "http://127.0.0.1:9"
LAMBDA_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_ENDPOINT_URL": REFUSING_ENDPOINT,
    # A refused call is not retried by botocore (the layer's own clients make one attempt anyway).
    "AWS_MAX_ATTEMPTS": "1",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "POWERTOOLS_METRICS_NAMESPACE": "Tributary",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "GLUE_REGISTRY_NAME": "tributary",
    "CONFLUENT_REGISTRY_URL": "",
    "CONFLUENT_REGISTRY_AUTH_SECRET": "",
}
# The invocation's deadline leaves room for one call (the layer starts a call only if it can end in
# time) and 20 ms more: enough for the first call of each client, never for a retry after a backoff.
REMAINING_MS = round((DEADLINE_MARGIN_S + CALL_BUDGET_S) * 1000) + 20
FIRST_INVOCATION = """
import json, time
class Context:
    function_name = memory_limit_in_mb = aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    started = time.monotonic()
    def get_remaining_time_in_millis(self):
        # Time for the first call of each kind to start, none for a retry's backoff: it is not cold start.
        return int({remaining_ms} - (time.monotonic() - self.started) * 1000)
try:
    app.lambda_handler(json.load(open("events/{event}")), Context())
except Exception:
    pass  # an AWS call refused by the loopback endpoint; what was loaded to make it is what counts
"""


def function_environment(resource: str) -> dict[str, str]:
    """The function's own variables from the template; a `!Ref` becomes a placeholder name."""
    template = yaml_parse((REPO_ROOT / "template.yaml").read_text())
    variables = template["Resources"][resource]["Properties"]["Environment"]["Variables"]
    own = {name: value if isinstance(value, str) else f"bench-{name.lower()}" for name, value in variables.items()}
    return {"PATH": os.environ["PATH"], **LAMBDA_ENVIRONMENT, "AWS_LAMBDA_FUNCTION_NAME": resource, **own}


def handler_import(function: str) -> str:
    return f"import sys; sys.path[:0] = ['layers/shared', 'functions/{function}']; import app"


def contenders() -> dict[str, Any]:
    runs: dict[str, Any] = {"boto3 + client": lambda: python_startup_seconds(BASELINE, LAMBDA_ENVIRONMENT)}
    for function, resource in FUNCTIONS.items():
        env = function_environment(resource)
        imported = handler_import(function)
        invoked = imported + "\n" + FIRST_INVOCATION.format(event=SAMPLE_EVENTS[function], remaining_ms=REMAINING_MS)
        runs[f"{function}: import"] = lambda code=imported, env=env: python_startup_seconds(code, env)
        runs[f"{function}: + first invocation"] = lambda code=invoked, env=env: python_startup_seconds(code, env)
    traced = {**function_environment("StreamProcessorFunction"), "POWERTOOLS_TRACE_DISABLED": "false"}
    traced_import = handler_import("stream_processor")
    runs["stream_processor, Tracing=Active: import"] = lambda: python_startup_seconds(traced_import, traced)
    return runs


def built_layer_size() -> str:
    sam = shutil.which("sam") or str(Path(sys.executable).parent / "sam")
    with tempfile.TemporaryDirectory() as build_dir:
        subprocess.run(
            [sam, "build", "SharedLayer", "--build-dir", build_dir, "--template", "template.yaml"],
            cwd=REPO_ROOT, check=True, capture_output=True,
        )
        layer = Path(build_dir) / "SharedLayer" / "python"
        total = sum(path.stat().st_size for path in layer.rglob("*") if path.is_file())
        ours = sum(path.stat().st_size for path in (layer / "tributary_shared").rglob("*.py"))
    return f"{total / 2**20:.1f} MiB unzipped, of which tributary_shared's own source {ours / 1024:.0f} KiB"


def main() -> None:
    timings = interleaved_medians(contenders(), rounds=ROUNDS)
    floor = timings.pop("boto3 + client")
    print(f"cold start, median of {ROUNDS} fresh interpreters; floor `{BASELINE}`: {floor * 1000:.0f} ms")
    for name, seconds in timings.items():
        ratio = seconds / floor
        verdict = "" if "Active" in name else ("  ok" if ratio <= TARGET_RATIO else f"  (target ≤ {TARGET_RATIO}x)")
        print(f"  {name:44} {seconds * 1000:5.0f} ms = {ratio:.2f}x the floor{verdict}")
    print(f"shared layer as built by `sam build`: {built_layer_size()}")
