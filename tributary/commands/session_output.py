"""What a runtime session prints while it runs: live counters, drain progress, and the console both go to.

On a terminal, `up`'s counters are one table redrawn in place (rich.live) and a drain shows a spinner
with a bar per tumbling window it waits for (rich.progress). Anywhere else (a pipe, a test, CI) the same
facts come as plain lines, and the counters only as the lines that changed since the last update.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tributary.runtime.alarms import summary_line

PIPED_WIDTH = 120  # rich's default is 80 off a terminal: too narrow for a table of counters
# What runtime.drain's `notify` says about a tumbling window it waits for (tributary.runtime.esm.windows).
WINDOW_WAIT = re.compile(r"window (?P<start>\S+Z)\.\.(?P<end>\S+Z) of (?P<function>\S+) on (?P<shard>\S+)")


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stdout_console() -> Console:
    """A console on stdout: rich on a terminal, plain and wide enough for tables elsewhere.

    No markup: what it prints is data (lake values, error messages, names), and `[/]` in a value must
    print as itself, not end a style (or raise MarkupError).
    """
    terminal = stdout_is_terminal()
    return Console(file=sys.stdout, width=None if terminal else PIPED_WIDTH, highlight=False, markup=False)


# ---------------------------------------------------------------- counters


def counter_lines(counters: Mapping[str, Any]) -> list[str]:
    """The counters as plain lines: one per mapping (and its stuck reasons), emulation, faults, alarms."""
    lines = []
    for key, item in counters["mappings"].items():
        lines.append(
            f"{key:<40} {item['source']:<24} in={item['records_in']:<6} invocations={item['invocations']:<5} "
            f"errors={item['errors']:<4} retries={item['retries']:<4} age={item['iterator_age_ms']}ms "
            f"on-failure={item['to_on_failure']}"
        )
        lines += [f"    {reason}" for reason in item.get("stuck", [])]
        if item.get("last_error"):
            lines.append(f"    last function error: {item['last_error']}")
    for name, item in counters["emulations"].items():
        lines.append(f"{name:<40} " + " ".join(f"{key}={value}" for key, value in item.items()))
    if counters.get("faults"):
        injected = " ".join(f"{kind}={count}" for kind, count in counters["faults"].items())
        lines.append(f"{'faults injected':<40} {injected}")
    if counters.get("alarms"):
        lines.append(summary_line(counters["alarms"]))
    return lines


def changed_lines(lines: list[str], shown: list[str]) -> list[str]:
    """The lines not shown last time: what a piped update prints."""
    before = set(shown)
    return [line for line in lines if line not in before]


def counters_table(counters: Mapping[str, Any]) -> RenderableType:
    """The counters as `up` redraws them on a terminal: a table of mappings, then emulations, faults, alarms."""
    mappings = Table(title="event source mappings", title_justify="left", expand=False)
    for column in ("mapping", "source"):
        mappings.add_column(column, no_wrap=True)
    for column in ("records in", "invocations", "errors", "retries", "iterator age", "on-failure"):
        mappings.add_column(column, justify="right")
    notes: list[Text] = []
    for key, item in counters["mappings"].items():
        mappings.add_row(key, item["source"], str(item["records_in"]), str(item["invocations"]), str(item["errors"]),
                         str(item["retries"]), f"{item['iterator_age_ms']} ms", str(item["to_on_failure"]))
        notes += [Text(f"{key}: {reason}", style="yellow") for reason in item.get("stuck", [])]
        if item.get("last_error"):
            notes.append(Text(f"{key}: last function error: {item['last_error']}", style="red"))
    parts: list[RenderableType] = [mappings, *notes]
    if counters["emulations"]:
        emulations = Table(title="emulations", title_justify="left", show_header=False)
        emulations.add_column("emulation", no_wrap=True)
        emulations.add_column("counters")
        for name, item in counters["emulations"].items():
            emulations.add_row(name, "  ".join(f"{key} {value}" for key, value in item.items()))
        parts.append(emulations)
    if counters.get("faults"):
        parts.append(Text("faults injected: " + ", ".join(f"{kind} {n}" for kind, n in counters["faults"].items())))
    if counters.get("alarms"):
        parts.append(Text(summary_line(counters["alarms"])))
    parts.append(Text(f"updated {time.strftime('%H:%M:%S')}; Ctrl-C stops", style="dim"))
    return Group(*parts)


class CounterDisplay:
    """Shows counters as they change: redrawn in place on a terminal, changed lines only elsewhere."""

    def __init__(self, console: Console, terminal: bool) -> None:
        self.console = console
        self.terminal = terminal
        self.shown: list[str] = []
        self._live: Any = None

    def __enter__(self) -> CounterDisplay:
        if self.terminal:
            from rich.live import Live

            self._live = Live(console=self.console, auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc_info)

    def show(self, counters: Mapping[str, Any]) -> None:
        lines = counter_lines(counters)
        if lines == self.shown:
            return
        if self._live is not None:
            self._live.update(counters_table(counters), refresh=True)
        else:
            stamp = time.strftime("%H:%M:%S")
            for line in changed_lines(lines, self.shown):
                self.console.print(f"{stamp} {line.rstrip()}", markup=False, soft_wrap=True)
            self.console.file.flush()
        self.shown = lines


# ---------------------------------------------------------------- draining


class WindowCountdownColumn(ProgressColumn):
    """Seconds left until a waited-for window ends, read from the clock at each refresh."""

    def render(self, task: Task) -> Text:
        ends = task.fields.get("ends")
        if ends is None:
            return Text("")
        return Text(f"ends in {max(0.0, ends - time.time()):.0f} s")


class ClockBarColumn(BarColumn):
    """A bar filled by the clock between a window's start and end (the drain reports no other progress)."""

    def render(self, task: Task) -> RenderableType:
        start, ends = task.fields.get("window_start"), task.fields.get("ends")
        if start is not None and ends is not None and ends > start:
            task.total, task.completed = ends - start, min(ends - start, max(0.0, time.time() - start))
        return super().render(task)


@contextlib.contextmanager
def drain_feedback(console: Console, terminal: bool, what: str = "draining",
                   quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A `notify` for runtime.drain: a spinner with a bar per waited-for window on a terminal, else lines
    (`quiet`: no line saying the drain starts and ends, only the windows it waits for)."""
    if not terminal:
        def print_line(message: str) -> None:
            console.print(message, markup=False, soft_wrap=True)
            console.file.flush()

        if not quiet:
            print_line(f"{what}: until every mapping and emulation has processed what it was given")
        yield print_line
        return
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), ClockBarColumn(bar_width=30),
                        WindowCountdownColumn(), TimeElapsedColumn(), console=console, transient=True)
    with progress:
        progress.add_task(f"{what}: every mapping and emulation", total=None)

        def notify(message: str) -> None:
            window = WINDOW_WAIT.search(message)
            if window is None:
                progress.console.print(message, markup=False)
                return
            start, ends = (_epoch(window[name]) for name in ("start", "end"))
            progress.add_task(f"window of {window['function']} on {window['shard']}", total=ends - start,
                              window_start=start, ends=ends)

        yield notify
    if not quiet:
        console.print(f"{what}: done", markup=False)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
