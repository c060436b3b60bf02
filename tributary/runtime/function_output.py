"""Where what a function prints goes: the function log, never the runtime's own output.

Function code runs on threads marked as the function's (`function_thread`); while an invocation runs
(`stdout_routed`), `sys.stdout` is a stand-in that sends what those threads write to the function log
(`route_function_output`: `--logs FILE`, or none) and lets every other thread print as before. Fault
injection (faults.py) tells the functions' clients apart the same way (`current_function_name`).
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

_function_threads: dict[int, str] = {}  # thread ident -> name of the function whose code it runs
_function_log: TextIO | None = None
# Hears each whole line a function writes (function name, line): how the runtime reads their EMF metrics.
_line_listener: Callable[[str, str], None] | None = None
_partial_lines: dict[int, str] = {}  # thread ident -> what it wrote after its last newline


@contextlib.contextmanager
def function_thread(function_name: str) -> Iterator[None]:
    """Mark this thread as running `function_name`'s code while the block runs."""
    ident = threading.get_ident()
    _function_threads[ident] = function_name
    try:
        yield
    finally:
        _function_threads.pop(ident, None)
        rest = _partial_lines.pop(ident, "")
        if rest and _line_listener is not None:
            _line_listener(function_name, rest)


def current_function_name() -> str | None:
    """The function whose code this thread is running (its import or its handler), or None for the runtime's own."""
    return _function_threads.get(threading.get_ident())


class _ThreadRoutedStream(io.TextIOBase):
    """stdout stand-in: writes from function threads go to the function log, others pass through.

    A function's logger may keep the instance it saw at import for good, so routing is decided by
    module-level state at each write, not by the instance.
    """

    def __init__(self, passthrough: TextIO) -> None:
        self.passthrough = passthrough

    def write(self, text: str) -> int:
        ident = threading.get_ident()
        if ident in _function_threads:
            if _function_log is not None:
                _function_log.write(text)
            if _line_listener is not None:
                _hear_lines(ident, text)
            return len(text)
        return self.passthrough.write(text)

    def flush(self) -> None:
        if _function_log is not None and not _function_log.closed:
            _function_log.flush()
        if not self.passthrough.closed:  # a stand-in outlives what it stood in front of (pytest's capture)
            self.passthrough.flush()

    def isatty(self) -> bool:
        return self.passthrough.isatty()


def _hear_lines(ident: int, text: str) -> None:
    # print() writes a line and its newline in two calls: only whole lines are handed on.
    *lines, rest = (_partial_lines.pop(ident, "") + text).split("\n")
    if rest:
        _partial_lines[ident] = rest
    listener, function_name = _line_listener, _function_threads.get(ident)
    if listener is None or function_name is None:
        return
    for line in lines:
        listener(function_name, line)


def listen_to_function_lines(listener: Callable[[str, str], None] | None) -> None:
    """Hand every whole line a function writes to `listener` (function name, line); None stops it."""
    global _line_listener
    _line_listener = listener
    _partial_lines.clear()


def route_function_output(function_log: TextIO | None) -> None:
    """Send what functions print to `function_log` (None discards it); other threads print as before."""
    global _function_log
    _function_log = function_log


@contextlib.contextmanager
def stdout_routed() -> Iterator[None]:
    previous = sys.stdout
    if not isinstance(previous, _ThreadRoutedStream):
        sys.stdout = _ThreadRoutedStream(previous)
    try:
        yield
    finally:
        sys.stdout = previous
