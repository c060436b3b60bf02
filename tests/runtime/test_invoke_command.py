"""`tributary invoke`: one function of the template on one event, in-process, as `sam local invoke` runs it.

Every test that deploys takes `aws`: the command starts its own emulator, but moto's state is process-wide,
and the fixture resets it.
"""

import base64
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tributary.commands import main
from tributary.runtime.app import Runtime
from tributary_shared.aggregator.window_state import WindowState

REPO = Path(__file__).parents[2]
EVENTS = REPO / "events"
TEMPLATE = REPO / "template.yaml"
FIXTURES = Path(__file__).parent / "fixtures"
PIPELINE = FIXTURES / "pipeline.yaml"
ORDERS_KEY = "incoming/orders 2020-09-02.csv"  # the object events/s3-put-orders-csv.json names (URL-decoded)
PUT_ORDERS = ["--put-object", f"s3://OrdersSourceBucket/{ORDERS_KEY}={EVENTS / 'orders-2020-09-02.csv'}"]


def invoke(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, Any, str]:
    """(exit status, the JSON on stdout's last line or None, stderr)."""
    status = main(["invoke", *arguments])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return status, json.loads(lines[-1]) if lines else None, err


def event_of(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


# ---------------------------------------------------------------- every sample event, with its function


def no_failures(response: Any, event: dict) -> None:
    assert response == {"batchItemFailures": []}


def fails_at(index: int) -> Callable[[Any, dict], None]:
    """The function reports record `index` as its checkpoint (ReportBatchItemFailures)."""

    def check(response: Any, event: dict) -> None:
        checkpoint = event["Records"][index]["kinesis"]["sequenceNumber"]
        assert response == {"batchItemFailures": [{"itemIdentifier": checkpoint}]}

    return check


def firehose(results: list[str], **row: Any) -> Callable[[Any, dict], None]:
    """Firehose's transformation answer: every recordId once, in order, with its result; `row` in each Ok row."""

    def check(response: Any, event: dict) -> None:
        answered = response["records"]
        assert [r["recordId"] for r in answered] == [r["recordId"] for r in event["records"]]
        assert [r["result"] for r in answered] == results
        for entry, original in zip(answered, event["records"], strict=True):
            if entry["result"] == "Ok":
                assert entry["metadata"] == {"partitionKeys": {"transaction_date": "2020-09-02"}}
                assert row.items() <= json.loads(base64.b64decode(entry["data"])).items()
            elif entry["result"] == "ProcessingFailed":
                assert entry["data"] == original["data"]  # failed records keep their original data

    return check


def window_state_becomes(next_event: str) -> Callable[[Any, dict], None]:
    """A tumbling window's invocation returns the state the next sample event carries (migrated to v2)."""

    def check(response: Any, event: dict) -> None:
        assert response["batchItemFailures"] == []
        assert WindowState.from_json(response["state"]) == WindowState.from_json(event_of(next_event)["state"])

    return check


def final_window_stored(response: Any, event: dict) -> None:
    assert response == {"state": {}, "batchItemFailures": []}


def orders_loaded(response: Any, event: dict) -> None:
    assert (response["rows_loaded"], response["rows_rejected"], response["skipped"]) == (5, 0, [])
    assert [(f["key"], f["error"]) for f in response["files"]] == [(ORDERS_KEY, None)]


# file -> (function, extra arguments, what its response must be); a new events/*.json needs an entry here.
SAMPLE_EVENTS: dict[str, tuple[str, list[str], Callable[[Any, dict], None]]] = {
    "dms-control.json": ("OptInUpdaterFunction", [], no_failures),
    "dms-delete.json": ("OptInUpdaterFunction", [], no_failures),
    "dms-invalid-phone.json": ("OptInUpdaterFunction", [], fails_at(1)),
    "dms-optin-load.json": ("OptInUpdaterFunction", [], no_failures),
    "dms-optout-update.json": ("OptInUpdaterFunction", [], no_failures),
    "firehose-insert.json": ("FirehoseTransformFunction", [],
                             firehose(["Ok"], order_id="3801", item_id="23", change_type="INSERT", amount=12.5)),
    "firehose-malformed.json": ("FirehoseTransformFunction", [], firehose(["ProcessingFailed"] * 3)),
    "firehose-modify.json": ("FirehoseTransformFunction", [],
                             firehose(["Ok"], change_type="MODIFY", product="Kindle Paperwhite", amount=15.0)),
    "firehose-other-table.json": ("FirehoseTransformFunction", [], firehose(["Dropped"])),
    "firehose-remove.json": ("FirehoseTransformFunction", [], firehose(["Ok"], change_type="REMOVE", order_id="3801")),
    "kinesis-duplicates.json": ("StreamProcessorFunction", [], no_failures),
    "kinesis-error.json": ("StreamProcessorFunction", [], fails_at(2)),
    # Framed with the ids the embedded AWS gives payment-event's versions 1 and 2 (tributary.moto_glue_ids).
    "kinesis-payment-avro.json": ("PaymentProcessorFunction", [], no_failures),
    "kinesis-unicorn.json": ("StreamProcessorFunction", [], no_failures),
    "s3-put-orders-csv.json": ("CsvLoaderFunction", PUT_ORDERS, orders_loaded),
    "tumbling-window-first.json": ("AggregatorFunction", [], window_state_becomes("tumbling-window-middle.json")),
    "tumbling-window-middle.json": ("AggregatorFunction", [], window_state_becomes("tumbling-window-final.json")),
    "tumbling-window-final.json": ("AggregatorFunction", [], final_window_stored),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(path.name for path in EVENTS.glob("*.json")))
def test_every_sample_event_runs_through_its_function(name, aws, capsys):
    assert name in SAMPLE_EVENTS, f"events/{name} has no function and expected response in SAMPLE_EVENTS"
    function, extra, check = SAMPLE_EVENTS[name]
    status, response, err = invoke(capsys, function, "-e", str(EVENTS / name), "-t", str(TEMPLATE), *extra)
    assert status == 0, err
    check(response, event_of(name))
    assert f"{function} returned in" in err


# ---------------------------------------------------------------- what it prints, and how it fails


@pytest.mark.slow
def test_the_response_is_stdouts_last_line_and_the_functions_logs_are_on_stderr():
    completed = subprocess.run(
        [str(REPO / ".venv/bin/tributary"), "invoke", "StreamProcessorFunction", "-e", "events/kinesis-unicorn.json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.splitlines()[-1]) == {"batchItemFailures": []}
    assert "batch processed" in completed.stderr  # the function's Powertools log
    assert "batch processed" not in completed.stdout


@pytest.mark.slow
def test_a_function_error_is_lambdas_error_response_and_exit_1(aws, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO('{"action": "raise"}'))
    status, response, err = invoke(capsys, "MisbehavingFunction", "-e", "-", "-t", str(PIPELINE))
    assert status == 1
    assert set(response) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert (response["errorType"], response["errorMessage"]) == ("ValueError", "asked to fail")
    [frame] = response["stackTrace"]  # the handler's frame only, not the runtime's
    assert frame.startswith('  File "') and "misbehave/app.py" in frame and 'raise ValueError("asked to fail")' in frame
    assert [line for line in err.splitlines() if line.startswith("tributary invoke:")] == [
        line for line in err.splitlines() if "failed after" in line and "ValueError: asked to fail" in line
    ]


@pytest.mark.slow
def test_a_timeout_is_a_sandbox_timeout(aws, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO('{"action": "sleep", "seconds": 3}'))
    status, response, _ = invoke(capsys, "MisbehavingFunction", "-e", "-", "-t", str(PIPELINE))
    assert status == 1
    assert response["errorType"] == "Sandbox.Timedout"
    assert response["errorMessage"] == "Task timed out after 1.00 seconds"


@pytest.mark.slow
def test_env_vars_override_only_what_the_template_declares_the_functions_own_entry_winning(aws, capsys, tmp_path):
    env_vars = tmp_path / "env.json"
    env_vars.write_text(json.dumps({
        "Parameters": {"STAGE": "prod", "GREETING": "for everyone", "UNDECLARED": "x"},
        "GreeterA": {"GREETING": "hi"},
        "GreeterB": {"GREETING": "not mine"},
    }))  # fmt: skip
    status, response, err = invoke(capsys, "GreeterA", "-t", str(PIPELINE), "--env-vars", str(env_vars))
    assert status == 0, err
    assert (response["at_import"], response["now"], response["stage"]) == ("hi", "hi", "prod")
    assert "UNDECLARED" in err


@pytest.mark.slow
def test_parameter_overrides_on_the_command_line_win_over_the_config_env(aws, capsys, tmp_path):
    config = tmp_path / "samconfig.toml"
    config.write_text('[dev.local_invoke.parameters]\nparameter_overrides = "Prefix=cfg- Stage=dev"\n')
    status, response, err = invoke(capsys, "GreeterB", "-t", str(PIPELINE), "--config-env", "dev",
                                   "--config-file", str(config), "--parameter-overrides", "Stage=prod")  # fmt: skip
    assert status == 0, err
    assert (response["function_name"], response["stage"]) == ("cfg-greeter-b", "prod")


@pytest.mark.slow
def test_a_template_with_one_function_needs_no_name(aws, capsys, tmp_path, monkeypatch):
    template = tmp_path / "one.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Echo:\n    Type: AWS::Serverless::Function\n"
        f"    Properties:\n      CodeUri: {FIXTURES / 'functions' / 'context_echo'}\n      Handler: app.handler\n"
        "      Runtime: python3.13\n"
    )
    (tmp_path / "event.json").write_text('{"hello": "world"}')
    status, response, err = invoke(capsys, "-t", str(template), "-e", str(tmp_path / "event.json"))
    assert status == 0, err
    assert response["event"] == {"hello": "world"}


@pytest.mark.slow
def test_an_s3_event_naming_a_missing_object_says_which_and_how_to_put_it(aws, capsys):
    status, response, err = invoke(capsys, "CsvLoaderFunction", "-e", str(EVENTS / "s3-put-orders-csv.json"),
                                   "-t", str(TEMPLATE))  # fmt: skip
    assert (status, response) == (2, None)
    assert f"/{ORDERS_KEY}" in err and f"--put-object 's3://OrdersSourceBucket/{ORDERS_KEY}=FILE'" in err


# ---------------------------------------------------------------- mistakes, found before the emulator starts


@pytest.fixture
def emulator_never_starts(monkeypatch):
    def refuse(runtime):
        raise AssertionError("the emulator started")

    monkeypatch.setattr(Runtime, "start", refuse)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["NoSuchFunction"], "has no function 'NoSuchFunction'; its functions: WriterFunction, ListenerFunction"),
        ([], "name the function to invoke"),
        (["GreeterA", "-e", "/no/such/event.json"], "cannot read event file /no/such/event.json"),
        (["GreeterA", "-e", str(PIPELINE)], f"event file {PIPELINE} is not JSON"),
        (["GreeterA", "--put-object", "uploads/key=file"], "is not s3://BUCKET/KEY=FILE"),
        (["GreeterA", "--put-object", f"s3://NoBucket/k={PIPELINE}"], "has no bucket 'NoBucket'; its buckets: "),
        (["GreeterA", "--env-vars", str(PIPELINE)], "is not JSON"),
        (["GreeterA", "-e", "{deep}"], "nests arrays or objects too deeply to read"),
        (["GreeterA", "-e", "{latin1}"], "is not UTF-8 text: invalid start byte at byte 0"),
        (["GreeterA", "--env-vars", "{latin1}"], "is not UTF-8 text"),
    ],
)
def test_mistakes_are_one_line_and_exit_2_before_anything_starts(arguments, message, capsys, emulator_never_starts,
                                                                 tmp_path):
    hostile = {"deep": "[" * 100_000 + "]" * 100_000, "latin1": b"\xff\xfe{}"}
    for name, content in hostile.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    arguments = [argument.format(**{name: tmp_path / f"{name}.json" for name in hostile}) for argument in arguments]
    status, response, err = invoke(capsys, *arguments, "-t", str(PIPELINE))
    assert (status, response) == (2, None)
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_the_functions_are_listed_in_full(capsys, emulator_never_starts):
    _, _, err = invoke(capsys, "Nope", "-t", str(PIPELINE))
    assert err.strip().endswith("GreeterA, GreeterB, MisbehavingFunction")
