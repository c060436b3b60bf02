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
from collections.abc import Iterator
from typing import TextIO

_function_threads: dict[int, str] = {}  # thread ident -> name of the function whose code it runs
_function_log: TextIO | None = None


@contextlib.contextmanager
def function_thread(function_name: str) -> Iterator[None]:
    """Mark this thread as running `function_name`'s code while the block runs."""
    ident = threading.get_ident()
    _function_threads[ident] = function_name
    try:
        yield
    finally:
        _function_threads.pop(ident, None)


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
        if threading.get_ident() in _function_threads:
            if _function_log is not None:
                _function_log.write(text)
            return len(text)
        return self.passthrough.write(text)

    def flush(self) -> None:
        if _function_log is not None and not _function_log.closed:
            _function_log.flush()
        if not self.passthrough.closed:  # a stand-in outlives what it stood in front of (pytest's capture)
            self.passthrough.flush()

    def isatty(self) -> bool:
        return self.passthrough.isatty()


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
