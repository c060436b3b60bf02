"""The README's "Run it locally" walkthrough, run exactly as printed, so it cannot rot.

The test reads the two code blocks the README marks (`walkthrough-up`: the `tributary up` command of
the first terminal; `walkthrough`: the second terminal's commands), starts the first and, once it
serves, runs the second with bash, stopping at the first command that fails. Only the port may
differ: when 4566 is taken on this machine, every `4566` of both blocks becomes a free port.
"""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tributary.emulator import free_loopback_port
from tributary.ports import ensure_port_free
from tributary.user_errors import UserError

REPO = Path(__file__).resolve().parents[2]
README_PORT = "4566"
SERVING_TIMEOUT_S = 120
WALKTHROUGH_TIMEOUT_S = 300


def marked_block(readme: str, marker: str) -> str:
    """The fenced bash block right after `<!-- {marker}: ... -->`."""
    match = re.search(rf"<!-- {re.escape(marker)}: [^>]*-->\n```bash\n(.*?)```", readme, re.DOTALL)
    assert match, f"README.md has no ```bash block marked <!-- {marker}: ... -->"
    return match.group(1)


def port_for_this_run() -> str:
    try:
        ensure_port_free(int(README_PORT))
    except UserError:
        return str(free_loopback_port())
    return README_PORT


def lines_of(stream) -> "queue.Queue[str]":
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_until_serving(up: subprocess.Popen, lines: "queue.Queue[str]") -> list[str]:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=SERVING_TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"`tributary up` did not start serving within {SERVING_TIMEOUT_S} s: {seen}")
        seen.append(line)
        if line.startswith("running; Ctrl-C stops"):
            return seen
        if up.poll() is not None:
            pytest.fail(f"`tributary up` ended with {up.returncode}: {''.join(seen)}")


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_printed():
    readme = (REPO / "README.md").read_text()
    port = port_for_this_run()
    up_command = marked_block(readme, "walkthrough-up").strip().replace(README_PORT, port)
    walkthrough = marked_block(readme, "walkthrough").replace(README_PORT, port)
    assert up_command.startswith(".venv/bin/tributary up") and "\n" not in up_command
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    up = subprocess.Popen(up_command.split(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=environment)  # fmt: skip
    try:
        start = wait_until_serving(up, lines_of(up.stdout))
        assert any("10 s tumbling windows; the first summary is due" in line for line in start)
        console_url = next(line.split()[1] for line in start if line.startswith("console: "))
        assert console_url == f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(console_url, timeout=30) as page:
            assert page.status == 200 and b"<title>" in page.read()
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", walkthrough], cwd=REPO, capture_output=True,
                              text=True, timeout=WALKTHROUGH_TIMEOUT_S, env=environment)  # fmt: skip
    finally:
        up.send_signal(signal.SIGINT)
        stopped = up.wait(timeout=60)
    assert done.returncode == 0, f"the walkthrough failed:\n{done.stdout}\n{done.stderr}"
    assert stopped == 130  # Ctrl-C: stopped cleanly, reported as interrupted
    output = done.stdout
    assert "sent 20, retried 0, failed 0" in done.stderr  # the producer's summary, beside its progress
    summaries = [line for line in output.splitlines() if line.startswith('{"Name": "Unicorn-')]
    assert len(summaries) == 5 and all('"MaxHealthPoints"' in line for line in summaries)
    assert re.search(r"put s3://\S+-1-orders\.csv: \d+ lines of 50 orders", output)
    counts = output.split("order_lines\torders\n", 1)[1].splitlines()[0]
    assert counts.split("\t")[1] == "50", output  # every order is in the lake
    assert "transaction_date\tproduct\torder_lines\tsales" in output
    assert "CsvLoaderFunction" in output and "load segment done" in output  # the logs, readable
    assert "Traceback" not in done.stderr, done.stderr


if __name__ == "__main__":  # print the blocks as the test reads them
    text = (REPO / "README.md").read_text()
    sys.stdout.write(marked_block(text, "walkthrough-up") + marked_block(text, "walkthrough"))
