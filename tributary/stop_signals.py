"""Ctrl-C and SIGTERM as a request to stop at the next safe point, for the long-running commands.

A KeyboardInterrupt raised at an arbitrary point is not a safe way to stop a boto3 program:
botocore's CRT request signer runs Python callbacks that swallow it, and urllib3's connection pool
can be left with its lock held, so the process hangs instead of stopping. The handler here only sets
a flag, which `up`, `run`, `produce` and `consume` read between steps; a second Ctrl-C still raises
KeyboardInterrupt at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from time import monotonic, sleep

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SLEEP_SLICE_S = 0.1


@dataclass
class StopRequest:
    """Set by SIGINT or SIGTERM, read by the command between steps.

    A plain flag on purpose: the handler runs on the main thread at whatever point it interrupted,
    so it must not take a lock (a threading.Event's) the interrupted code may hold.
    """

    requested: bool = False
    by_interrupt: bool = False  # SIGINT (Ctrl-C), not SIGTERM: the command then ends as interrupted (exit 130)

    def sleep(self, seconds: float) -> None:
        """time.sleep that ends early once a stop is requested (a sleep resumes after a handled signal)."""
        end = monotonic() + seconds
        while not self.requested and (left := end - monotonic()) > 0:
            sleep(min(SLEEP_SLICE_S, left))


@contextlib.contextmanager
def stop_on_signals(notice: str = "") -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set `requested` (and print `notice` to stderr once)."""
    stop = StopRequest()

    def request_stop(signum: int, frame: object) -> None:
        if notice and not stop.requested:
            # os.write, not print: print could re-enter a stream the interrupted code is writing to.
            os.write(sys.__stderr__.fileno(), f"\n{notice}\n".encode())
        stop.requested = True
        stop.by_interrupt = stop.by_interrupt or signum == signal.SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {number: signal.signal(number, request_stop) for number in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for number in reversed(STOP_SIGNALS):  # SIGINT last: until then a second Ctrl-C is still a request
            signal.signal(number, previous[number])
