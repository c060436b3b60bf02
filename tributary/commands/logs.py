"""`tributary logs`: the functions' logs of a local run, readably, as `sam logs` shows CloudWatch's.

    tributary logs [FUNCTION] [--file PATH] [--tail] [--since 10m] [--metrics]

It reads the newest function log in .tributary/logs/ (what `up`, `run` and `demo` write; `--file`
for another, e.g. one named with `--logs`). Each line shows its time (local), the function's logical
id and what the function printed: a Powertools JSON record as level, message and the keys the
function added (k=v), its exception's traceback indented below; anything else as it was printed.
EMF metric documents are hidden; `--metrics` adds, after the logs, each function's metrics summed
(with `--tail`: when Ctrl-C ends it). `--tail` follows the file as the run writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.text import Text

from tributary.runtime.log_format import (
    FUNCTION_LOG_DIRECTORY,
    LogLine,
    MetricSummary,
    is_metric_document,
    json_object,
    log_record,
    parse_log_line,
)
from tributary.user_errors import UserError

TAIL_POLL_S = 0.25
_LEVEL_STYLES = {"DEBUG": "dim", "INFO": "green", "WARNING": "yellow", "WARN": "yellow",
                 "ERROR": "bold red", "CRITICAL": "bold red"}  # fmt: skip
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def main(command: str, argv: list[str]) -> int:
    arguments = _parser(command).parse_args(argv)
    path = arguments.file or newest_function_log()
    if not path.is_file():
        raise UserError(f"no function log {path}: pass the file `tributary up --logs` wrote, or leave --file out")
    view = LogView(Console(highlight=False), arguments.function, _since(arguments.since))
    # What functions print is not always UTF-8: show such bytes as U+FFFD rather than stop reading the log.
    with path.open(encoding="utf-8", errors="replace", newline="\n") as handle:
        lines = [parse_log_line(line) for line in handle]
        _check_function(arguments.function, lines, path, arguments.tail)
        view.width = max((len(line.function or "") for line in lines), default=0)
        view.show(lines)
        if arguments.tail:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a tail ends
                view.show(parse_log_line(line) for line in follow(handle))
    if arguments.metrics:
        view.show_metrics()
    return 0


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"tributary {command}", description="The functions' logs of a local run.")
    parser.add_argument("function", nargs="?", help="only this function's lines (its logical id)")
    parser.add_argument("--file", type=Path, default=None,
                        help=f"the function log to read (default: the newest in {FUNCTION_LOG_DIRECTORY})")
    parser.add_argument("--tail", action="store_true", help="follow the log as it is written; Ctrl-C ends")
    parser.add_argument("--since", metavar="DURATION", help="only lines of the last DURATION, e.g. 30s, 10m, 2h, 1d")
    parser.add_argument("--metrics", action="store_true",
                        help="after the logs, each function's EMF metrics summed (metric lines are hidden either way)")
    return parser


def newest_function_log() -> Path:
    """The function log written last in .tributary/logs/ under the current directory."""
    logs = sorted(FUNCTION_LOG_DIRECTORY.glob("*.log"), key=lambda path: path.stat().st_mtime)
    if not logs:
        raise UserError(f"no function logs in {FUNCTION_LOG_DIRECTORY}: run `tributary up` (or run, demo) in this "
                        f"directory first, or pass --file PATH")  # fmt: skip
    return logs[-1]


def _since(duration: str | None) -> datetime | None:
    if duration is None:
        return None
    match = _DURATION.fullmatch(duration.strip())
    if match is None:
        raise UserError(f"--since {duration!r}: give a number and a unit, e.g. 30s, 10m, 2h or 1d")
    return datetime.now().astimezone() - timedelta(seconds=float(match[1]) * _SECONDS_PER_UNIT[match[2]])


def _check_function(function: str | None, lines: list[LogLine], path: Path, tail: bool) -> None:
    """An unknown FUNCTION is a mistake, unless --tail may yet see it (then it is said, not refused)."""
    seen = sorted({line.function for line in lines if line.function is not None})
    if function is None or function in seen:
        return
    known = f"functions in {path}: {', '.join(seen)}" if seen else f"no function has written to {path} yet"
    if not tail:
        raise UserError(f"no lines from function {function!r}; {known}")
    Console(stderr=True, highlight=False).print(f"no lines from {function} yet ({known}); following", soft_wrap=True)


def follow(handle: TextIO, poll_s: float = TAIL_POLL_S) -> Iterator[str]:
    """The lines appended to `handle` from where it is, as they are written (forever); a line is yielded
    once its newline is there."""
    pending = ""
    while True:
        chunk = handle.readline()
        if not chunk:
            time.sleep(poll_s)
            continue
        pending += chunk
        if pending.endswith("\n"):
            yield pending
            pending = ""


@dataclass
class LogView:
    """Prints log lines readably on `console` (colour on a terminal only), keeping the metrics aside."""

    console: Console
    function: str | None = None  # only this function's lines
    since: datetime | None = None
    width: int = 0  # of the function column
    metrics: MetricSummary = field(default_factory=MetricSummary)

    def show(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            if self.function is not None and line.function != self.function:
                continue
            if self.since is not None and line.time is not None and line.time < self.since:
                continue
            self._show(line)

    def _show(self, line: LogLine) -> None:
        document = json_object(line.text)
        if document is not None and is_metric_document(document):
            self.metrics.add(line.function or "", line.text)
            return
        record = log_record(document) if document is not None else None
        if line.function is None:
            self.console.print(Text(line.text), soft_wrap=True)
            return
        text = self._prefix(line)
        if record is None:
            text.append(line.text)
        else:
            text.append(f"{record.level:<8} ", style=_LEVEL_STYLES.get(record.level.upper(), ""))
            text.append(record.message)
            if record.fields:
                text.append("  " + record.fields_text(), style="dim")
        self.console.print(text, soft_wrap=True)
        for trace_line in (record.trace.splitlines() if record is not None and record.trace else []):
            self.console.print(Text("    " + trace_line, style="red"), soft_wrap=True)

    def _prefix(self, line: LogLine) -> Text:
        text = Text()
        if line.time is not None:
            text.append(line.time.astimezone().strftime("%H:%M:%S.%f")[:-3] + " ", style="dim")
        text.append(f"{line.function:<{self.width}}  ", style="cyan")
        return text

    def show_metrics(self) -> None:
        rows = self.metrics.lines()
        self.console.print(Text("metrics (EMF, summed per function):", style="bold"), soft_wrap=True)
        for row in rows or ["none"]:
            self.console.print(Text("  " + row), soft_wrap=True)
