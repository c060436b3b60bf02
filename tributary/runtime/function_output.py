"""Where what a function prints goes: the function log, never the runtime's own output.

Function code runs on threads marked as the function's (`function_thread`), and so do the threads that
code starts; while an invocation runs (`stdout_routed`), `sys.stdout` is a stand-in that sends what those
threads write to the function log (`route_function_output`: `--logs FILE`, or none) and lets every other
thread print as before. Fault injection (faults.py) tells the functions' clients apart the same way
(`current_function_name`).

The log gets whole lines, each labelled with the time and the function's logical id (log_format.py),
or, unlabelled, exactly as printed (`tributary invoke` shows them on stderr, as `sam local invoke` does).
A thread's text after its last newline waits for the rest of its line; it is written as a line of its
own when the thread stops running the function.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TextIO

from tributary.runtime.log_format import labelled_line

_function_threads: dict[int, str] = {}  # thread ident -> name of the function whose code it runs
_function_log: TextIO | None = None
_labelled = True
_logical_ids: dict[str, str] = {}  # function name -> its logical id in the template, the log's label
_log_lock = threading.Lock()  # a function's own threads write concurrently
# Hears each whole line a function writes (function name, line): how the runtime reads their EMF metrics.
_line_listener: Callable[[str, str], None] | None = None
_partial_lines: dict[int, str] = {}  # thread ident -> what it wrote after its last newline
_thread_start = threading.Thread.start


@contextlib.contextmanager
def function_thread(function_name: str) -> Iterator[None]:
    """Mark this thread as running `function_name`'s code while the block runs."""
    ident = threading.get_ident()
    previous = _function_threads.get(ident)
    _function_threads[ident] = function_name
    try:
        yield
    finally:
        rest = _partial_lines.pop(ident, "")
        if rest:
            _hand_on(function_name, [rest])
        if previous is None:
            _function_threads.pop(ident, None)
        else:
            _function_threads[ident] = previous


def current_function_name() -> str | None:
    """The function whose code this thread is running (its import or its handler), or None for the runtime's own."""
    return _function_threads.get(threading.get_ident())


def _start_as_callers_function(thread: threading.Thread) -> None:
    """Thread.start while functions run: a thread started by a function's code runs that function's code."""
    function_name = current_function_name()
    if function_name is not None:
        run = thread.run

        def run_as_function() -> None:
            with function_thread(function_name):
                run()

        thread.run = run_as_function  # type: ignore[method-assign]
    _thread_start(thread)


class _ThreadRoutedStream(io.TextIOBase):
    """stdout stand-in: writes from function threads go to the function log, others pass through.

    A function's logger may keep the instance it saw at import for good, so routing is decided by
    module-level state at each write, not by the instance.
    """

    def __init__(self, passthrough: TextIO) -> None:
        self.passthrough = passthrough

    def write(self, text: str) -> int:
        ident = threading.get_ident()
        function_name = _function_threads.get(ident)
        if function_name is None:
            return self.passthrough.write(text)
        if _function_log is not None or _line_listener is not None:
            # print() writes a line and its newline in two calls: only whole lines are handed on.
            *lines, rest = (_partial_lines.pop(ident, "") + text).split("\n")
            if rest:
                _partial_lines[ident] = rest
            _hand_on(function_name, lines)
        return len(text)

    def flush(self) -> None:
        log = _function_log
        if log is not None and not log.closed:
            log.flush()
        if not self.passthrough.closed:  # a stand-in outlives what it stood in front of (pytest's capture)
            self.passthrough.flush()

    def isatty(self) -> bool:
        return self.passthrough.isatty()


def _hand_on(function_name: str, lines: list[str]) -> None:
    """Whole lines a function wrote: to the function log and the listener."""
    if not lines:
        return
    log, listener = _function_log, _line_listener
    if log is not None:
        if _labelled:
            label, now = _logical_ids.get(function_name, function_name), time.time()
            text = "".join(labelled_line(label, now, line) for line in lines)
        else:
            text = "".join(f"{line}\n" for line in lines)
        with _log_lock:
            if not log.closed:
                log.write(text)
                log.flush()  # `tributary logs --tail` reads it while the run goes on
    if listener is not None:
        for line in lines:
            listener(function_name, line)


def listen_to_function_lines(listener: Callable[[str, str], None] | None) -> None:
    """Hand every whole line a function writes to `listener` (function name, line); None stops it."""
    global _line_listener
    _line_listener = listener


def route_function_output(function_log: TextIO | None, labelled: bool = True) -> None:
    """Send what functions print to `function_log` (None discards it), each line labelled with the time and
    the function (else exactly as printed); other threads print as before."""
    global _function_log, _labelled
    _function_log, _labelled = function_log, labelled
    _partial_lines.clear()
    if function_log is None:
        _logical_ids.clear()


def label_functions(logical_ids: Mapping[str, str]) -> None:
    """The log's label for each function name: the function's logical id in the template."""
    _logical_ids.clear()
    _logical_ids.update(logical_ids)


@contextlib.contextmanager
def stdout_routed() -> Iterator[None]:
    previous = sys.stdout
    routes = not isinstance(previous, _ThreadRoutedStream)
    if routes:
        sys.stdout = _ThreadRoutedStream(previous)
        threading.Thread.start = _start_as_callers_function  # type: ignore[method-assign]
    try:
        yield
    finally:
        if routes:
            threading.Thread.start = _thread_start  # type: ignore[method-assign]
        sys.stdout = previous

