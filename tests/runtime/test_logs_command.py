"""`tributary logs`: a run's function log, read back readably (real Powertools output, metrics, filter, tail)."""

import _thread
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from test_cli import running_cli

from tributary.commands import main
from tributary.commands.logs import TAIL_POLL_S
from tributary.runtime import function_output
from tributary.runtime.functions import FunctionConfig, LocalFunction
from tributary.runtime.log_format import labelled_line
from tributary.user_errors import UserError

HANDLER = '''
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path="correlation_id")
def handler(event, context):
    logger.append_keys(shard_id=event["shard"])
    logger.info("batch processed", extra={"records": len(event["records"]), "sequence_number": "4959001"})
    metrics.add_metric(name="RecordsProcessed", unit=MetricUnit.Count, value=len(event["records"]))
    if event.get("fail"):
        try:
            int("not a number")
        except ValueError:
            logger.exception("record rejected")
        print("a plain line", end="")
        print(" in two writes")
        raise RuntimeError("gave up")
    return {"ok": True}
'''
TIME = r"\d\d:\d\d:\d\d\.\d{3}"


@pytest.fixture(autouse=True)
def no_forced_colour(monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)  # output to a pipe is plain text, unless forced


def local_function(code_dir: Path, logical_id: str) -> LocalFunction:
    name = f"tributary-{logical_id.lower()}"
    environment = {"POWERTOOLS_SERVICE_NAME": "tributary-test", "POWERTOOLS_METRICS_NAMESPACE": "Tributary"}
    return LocalFunction(FunctionConfig(
        logical_id=logical_id, name=name, arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        code_dir=code_dir, handler="app.handler", timeout_s=10, memory_mb=128, environment=environment,
    ))  # fmt: skip


@pytest.fixture(scope="module")
def run_log(tmp_path_factory) -> Path:
    """The function log of a run: two functions with Powertools, one failing, written as the runtime writes it."""
    code_dir = tmp_path_factory.mktemp("function")
    (code_dir / "app.py").write_text(HANDLER)
    path = code_dir / "run.log"
    processor, loader = local_function(code_dir, "ProcessorFunction"), local_function(code_dir, "LoaderFunction")
    with path.open("a", encoding="utf-8") as log:
        function_output.route_function_output(log)
        function_output.label_functions({f.config.name: f.config.logical_id for f in (processor, loader)})
        try:
            assert processor.invoke({"shard": "shardId-000000000001", "records": [1, 2, 3],
                                     "correlation_id": "order-7"}).function_error is None  # fmt: skip
            assert loader.invoke({"shard": "shardId-000000000002", "records": [1], "correlation_id": "csv-9",
                                  "fail": True}).function_error == "Unhandled"  # fmt: skip
        finally:
            function_output.route_function_output(None)
    return path


def logs(capsys, *arguments: str) -> list[str]:
    assert main(["logs", *arguments]) == 0
    return capsys.readouterr().out.splitlines()


def user_error(capsys, *arguments: str) -> str:
    """The message of the mistake `tributary logs <arguments>` reports (raised, or printed with exit 2)."""
    try:
        status = main(["logs", *arguments])
    except UserError as error:
        return str(error)
    assert status == 2
    return capsys.readouterr().err


def test_powertools_records_read_as_time_level_function_message_and_the_functions_own_keys(run_log, capsys):
    lines = logs(capsys, "--file", str(run_log))
    [processed] = [line for line in lines if "ProcessorFunction" in line and "batch processed" in line]
    assert re.fullmatch(rf"{TIME} ProcessorFunction  INFO     batch processed  correlation_id=order-7 "
                        r"shard_id=shardId-000000000001 records=3 sequence_number=4959001", processed), processed
    output = "\n".join(lines)
    for standard_key in ("function_request_id", "cold_start", "xray_trace_id", "location", '"level"'):
        assert standard_key not in output


def test_an_exception_is_shown_indented_under_its_record(run_log, capsys):
    lines = logs(capsys, "--file", str(run_log))
    rejected = next(index for index, line in enumerate(lines) if "record rejected" in line)
    assert re.match(rf"{TIME} LoaderFunction     ERROR    record rejected  correlation_id=csv-9 ", lines[rejected])
    trace = lines[rejected + 1 : rejected + 6]
    assert trace[0] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in trace)
    assert "    ValueError: invalid literal for int() with base 10: 'not a number'" in lines


def test_plain_lines_and_the_runtimes_traceback_are_shown_as_printed(run_log, capsys):
    lines = logs(capsys, "--file", str(run_log))
    assert any(re.fullmatch(rf"{TIME} LoaderFunction     a plain line in two writes", line) for line in lines)
    assert any(re.fullmatch(rf"{TIME} LoaderFunction     RuntimeError: gave up", line) for line in lines)


def test_metric_lines_are_hidden_and_summed_per_function_with_metrics(run_log, capsys):
    assert "_aws" in run_log.read_text()
    lines = logs(capsys, "--file", str(run_log))
    assert not any("_aws" in line or "RecordsProcessed" in line for line in lines)

    with_metrics = logs(capsys, "--file", str(run_log), "--metrics")
    assert with_metrics[: len(lines)] == lines
    assert with_metrics[len(lines) :] == [
        "metrics (EMF, summed per function):",
        "  LoaderFunction     Tributary/RecordsProcessed  sum=1 count=1 Count",
        "  ProcessorFunction  Tributary/RecordsProcessed  sum=3 count=1 Count",
    ]


def test_function_shows_only_that_functions_lines_and_metrics(run_log, capsys):
    lines = logs(capsys, "ProcessorFunction", "--file", str(run_log), "--metrics")
    assert lines[-1] == "  ProcessorFunction  Tributary/RecordsProcessed  sum=3 count=1 Count"
    assert all(" ProcessorFunction " in line for line in lines[:-2])
    assert any("batch processed" in line for line in lines)


def test_an_unknown_function_is_a_user_error_naming_the_functions_seen(run_log, capsys):
    message = user_error(capsys, "StreamProcessor", "--file", str(run_log))
    assert "'StreamProcessor'" in message and "LoaderFunction, ProcessorFunction" in message


def test_without_a_log_directory_it_says_to_run_up(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    message = user_error(capsys)
    assert "tributary up" in message and "--file" in message


def test_it_reads_the_newest_log_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / ".tributary" / "logs"
    directory.mkdir(parents=True)
    for age_s, name in ((60, "old"), (0, "new")):
        path = directory / f"up-{name}.log"
        path.write_text(labelled_line("Function", time.time(), f"from the {name} run"))
        os.utime(path, (time.time() - age_s, time.time() - age_s))
    assert [line.split("  ", 1)[1] for line in logs(capsys)] == ["from the new run"]


def test_since_leaves_out_older_lines_and_unlabelled_lines_are_shown_as_they_are(tmp_path, capsys):
    path = tmp_path / "functions.log"
    path.write_text(labelled_line("Function", time.time() - 3600, "an hour ago")
                    + labelled_line("Function", time.time(), "just now") + "a line of an older log\n")  # fmt: skip
    lines = logs(capsys, "--file", str(path), "--since", "10m")
    assert [line.split("  ", 1)[-1] for line in lines] == ["just now", "a line of an older log"]
    assert "--since" in user_error(capsys, "--file", str(path), "--since", "ten minutes")


def test_bytes_that_are_not_utf8_show_as_replacement_characters(tmp_path, capsys):
    path = tmp_path / "functions.log"
    not_utf8 = b"Function 2026-12-02T00:00:00Z \xff\xfe\n"
    path.write_bytes(labelled_line("Function", time.time(), "caf\u00e9").encode() + not_utf8)
    lines = logs(capsys, "--file", str(path))
    assert lines[0].endswith("café") and lines[1].endswith("\ufffd\ufffd")


def test_tail_follows_the_file_until_ctrl_c_then_sums_the_metrics(tmp_path, capsys):
    path = tmp_path / "functions.log"
    path.write_text(labelled_line("ProcessorFunction", time.time(), "before the tail"))
    metric = '{"_aws":{"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]},"M":2}'

    def a_running_function_then_ctrl_c() -> None:
        time.sleep(0.3)
        with path.open("a") as log:
            log.write(labelled_line("ProcessorFunction", time.time(), "appended"))
            log.write(labelled_line("ProcessorFunction", time.time(), metric))
        time.sleep(4 * TAIL_POLL_S)
        _thread.interrupt_main()  # what Ctrl-C does

    threading.Thread(target=a_running_function_then_ctrl_c, daemon=True).start()
    lines = logs(capsys, "--file", str(path), "--tail", "--metrics")
    assert [line.split("  ", 1)[-1] for line in lines] == [
        "before the tail", "appended",
        "metrics (EMF, summed per function):", "ProcessorFunction  N/M  sum=2 count=1 None",  # CloudWatch's unit
    ]


@pytest.mark.slow
def test_tail_shows_lines_as_they_are_appended_until_interrupted(tmp_path):
    path = tmp_path / "functions.log"
    path.write_text(labelled_line("ProcessorFunction", time.time(), "before the tail"))
    with running_cli("logs", "ProcessorFunction", "--file", str(path), "--tail") as (process, tail):
        tail.until(lambda line: line.rstrip().endswith("before the tail"), limit_s=30)
        with path.open("a") as log:
            log.write(labelled_line("LoaderFunction", time.time(), "another function's line"))
            log.write(labelled_line("ProcessorFunction", time.time(), '{"level":"WARNING","message":"appended"')[:-1])
            log.flush()
            time.sleep(0.5)  # half a line written: the tail waits for the rest
            log.write(',"shard_id":"shardId-1"}\n')
        line = tail.until(lambda line: "appended" in line, limit_s=10)
        assert re.fullmatch(rf"{TIME} ProcessorFunction  WARNING  appended  shard_id=shardId-1", line.rstrip())
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    assert not any("another function" in line for line in tail.seen)

