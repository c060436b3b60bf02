"""Ctrl-C and SIGTERM as a request to stop at the next safe point, for the long-running commands.

A KeyboardInterrupt raised at an arbitrary point is not a safe way to stop a boto3 program:
botocore's CRT request signer runs Python callbacks that swallow it, and urllib3's connection pool
can be left with its lock held, so the process hangs instead of stopping. The handler here only sets
a flag, which `up`, `produce` and `consume` read between steps; a second Ctrl-C still raises at once.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """Set by SIGINT or SIGTERM, read by the command between steps.

    A plain flag on purpose: the handler runs on the main thread at whatever point it interrupted,
    so it must not take a lock (a threading.Event's) the interrupted code may hold.
    """

    requested: bool = False


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set `requested`; the previous handlers come back after it."""
    stop = StopRequest()

    def request_stop(signum: int, frame: object) -> None:
        stop.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {number: signal.signal(number, request_stop) for number in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
