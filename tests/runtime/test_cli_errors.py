"""The `tributary` command's conventions: one line per error, exit statuses, --debug, --version, Ctrl-C, `| head`."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoRegionError

from tributary import producer
from tributary.aws_guard import RealAwsRefused
from tributary.commands import main as tributary
from tributary.commands.errors import describe
from tributary.emulator import free_loopback_port
from tributary.ports import check_port_number, ensure_port_free
from tributary.user_errors import UserError

REPO = Path(__file__).parents[2]


def cli(*arguments: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`tributary <arguments>` in a child process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tributary.cli", *arguments],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ),
    )  # fmt: skip


def at_emulator(aws) -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": aws.endpoint_url}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


# ------------------------------------------------------------------------------------ in-process


@pytest.mark.parametrize("option", ["--version", "-V"])
def test_version_prints_the_installed_version(option, capsys):
    from importlib.metadata import version

    assert tributary([option]) == 0
    assert capsys.readouterr().out == f"tributary {version('tributary')}\n"


def test_a_user_error_is_one_line_naming_the_command_and_exit_2(capsys):
    assert tributary(["produce", "orders", "--file", "/nonexistent/orders.csv"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "tributary produce: cannot read --file /nonexistent/orders.csv: No such file or directory\n"


def test_a_missing_module_of_our_own_is_a_bug_not_an_install_step():
    line, status = describe(ModuleNotFoundError("No module named 'tributary.nope'", name="tributary.nope"), "up")
    assert line.startswith("unexpected ModuleNotFoundError") and status == 1


def test_an_unexpected_error_is_called_a_bug_with_the_debug_hint(monkeypatch, capsys):
    def broken(command: str, argv: list[str]) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(producer, "main", broken)
    assert tributary(["produce"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("tributary produce: unexpected ZeroDivisionError: division by zero. This is a bug")
    assert "rerun with --debug (`tributary --debug produce ...`)" in err


@pytest.mark.parametrize("how", ["option", "variable"])
def test_debug_shows_the_traceback_then_the_line(how, monkeypatch, capsys):
    arguments = ["produce", "orders", "--file", "/nonexistent/orders.csv"]
    if how == "option":
        arguments.insert(0, "--debug")
    else:
        monkeypatch.setenv("TRIBUTARY_DEBUG", "1")
    assert tributary(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "FileNotFoundError" in err
    assert err.endswith("tributary produce: cannot read --file /nonexistent/orders.csv: No such file or directory\n")


def test_no_emulator_on_the_loopback_port_says_how_to_start_one(monkeypatch, capsys):
    port = free_loopback_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")  # restored after the test
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no retries of the refused connection
    assert tributary(["consume", "--stream", "wildrydes"]) == 2
    assert capsys.readouterr().err == (
        f"tributary consume: nothing answers at http://127.0.0.1:{port}: no `tributary up` is running on port {port}."
        f" Start one in another terminal (`tributary up --port {port}`), or set AWS_ENDPOINT_URL (or --endpoint-url)"
        " to the endpoint a running `tributary up` printed\n"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoRegionError(), "no AWS region is set: to use the local emulator, start `tributary up`"),
        (RealAwsRefused("refusing to connect to kinesis.us-east-1.amazonaws.com:443: not loopback"),
         "not loopback (tributary talks only to a local emulator on 127.0.0.1)"),
        (EndpointConnectionError(endpoint_url="https://kinesis.eu-west-1.amazonaws.com/"),
         "cannot connect to https://kinesis.eu-west-1.amazonaws.com/: check the network, or to use the local"),
        (UserError("first\nsecond"), "first; second"),
        (ModuleNotFoundError("No module named 'moto'", name="moto"),
         "the Python module 'moto' is not installed: the local runtime and the producer need the development"),
    ],
)
def test_aws_slips_and_multi_line_messages_are_one_actionable_line(error, expected):
    line, status = describe(error, "consume")
    assert expected in line and "\n" not in line
    assert status == 2


# ------------------------------------------------------------------------------------ ports


def test_a_busy_port_is_named(busy_port):
    with pytest.raises(UserError, match=f"port {busy_port} is in use by another program: pick another --port"):
        ensure_port_free(busy_port)


def test_a_free_port_passes():
    ensure_port_free(free_loopback_port())


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_a_port_outside_1_to_65535_is_refused(port):
    with pytest.raises(UserError, match=f"--port {port} is not a port number: pick one from 1 to 65535"):
        check_port_number(port)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["up", "demo"])
def test_up_and_demo_on_a_busy_port_exit_at_once_naming_it(command, busy_port):
    started = time.monotonic()
    run = cli(command, "--port", str(busy_port), timeout=30)
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == (
        f"tributary {command}: port {busy_port} is in use by another program: pick another --port,"
        " or omit --port for a free one"
    )
    assert "Traceback" not in run.stderr and time.monotonic() - started < 20


# ------------------------------------------------------------------------------------ as a process


@pytest.mark.slow
def test_version_and_debug_from_the_console(tmp_path):
    assert cli("--version").stdout.startswith("tributary ")
    quiet = cli("produce", "orders", "--file", str(tmp_path / "missing.csv"))
    loud = cli("--debug", "produce", "orders", "--file", str(tmp_path / "missing.csv"))
    assert quiet.returncode == loud.returncode == 2
    assert quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr
    assert "Traceback (most recent call last)" in loud.stderr and loud.stderr.endswith(quiet.stderr)


@pytest.mark.slow
def test_no_region_without_an_emulator_is_one_line(tmp_path):
    # Nothing is sent: botocore needs a region before it builds a request.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    run = cli("produce", "unicorns", "--msgs", "1", env=env)
    assert run.returncode == 2
    assert run.stderr.startswith("tributary produce: no AWS region is set: to use the local emulator")
    assert run.stderr.count("\n") == 1


def put_unicorns(count: int) -> None:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="wildrydes", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="wildrydes", WaiterConfig={"Delay": 0.1})
    for first in range(0, count, 500):
        records = [{"PartitionKey": "k", "Data": b'{"n": %d}' % n} for n in range(first, min(count, first + 500))]
        kinesis.put_records(StreamName="wildrydes", Records=records)


@pytest.mark.slow
def test_consume_into_head_ends_quietly(aws):
    """`tributary consume ... | head -3`: once head has its lines, consume ends with no traceback."""
    put_unicorns(3000)
    consume = subprocess.Popen(
        [sys.executable, "-m", "tributary.cli", "consume", "--from", "TRIM_HORIZON", "--idle-exit", "30"],
        cwd=REPO, env=at_emulator(aws), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    head = subprocess.run(["head", "-3"], stdin=consume.stdout, capture_output=True, timeout=60)
    consume.stdout.close()  # head's end is the only reader left: once head is gone, writes fail
    assert consume.wait(timeout=30) == 1
    assert head.stdout.splitlines() == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert consume.stderr.read() == b""


@pytest.mark.slow
def test_ctrl_c_ends_consume_with_one_line_and_exit_130(aws):
    put_unicorns(1)
    consume = subprocess.Popen(
        [sys.executable, "-m", "tributary.cli", "consume", "--from", "TRIM_HORIZON"],
        cwd=REPO, env=at_emulator(aws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert consume.stdout.readline() == '{"n": 0}\n'  # tailing now
        consume.send_signal(signal.SIGINT)
        assert consume.wait(timeout=15) == 130
        assert consume.stderr.read() == "interrupted\n"
    finally:
        if consume.poll() is None:
            consume.kill()
            consume.wait()


@pytest.mark.slow
def test_after_ctrl_c_a_thread_left_running_does_not_hold_the_process_open():
    script = (
        "import sys, threading, time\n"
        "from tributary import cli, producer\n"
        "def interrupted_leaving_a_thread(command, argv):\n"
        "    threading.Thread(target=time.sleep, args=(3600,)).start()\n"  # not a daemon: exit would wait for it
        "    raise KeyboardInterrupt\n"
        "producer.main = interrupted_leaving_a_thread\n"
        "sys.argv = ['tributary', 'produce']\n"
        "sys.exit(cli.main())\n"
    )
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stderr) == (130, "interrupted\n")
    assert time.monotonic() - started < 30
