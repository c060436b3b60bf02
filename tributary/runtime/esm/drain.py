"""Draining: poll mappings and emulations until everything they were given has been delivered."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from tributary.runtime.esm.engine import EventSourceMapping


class Pollable(Protocol):
    def poll(self) -> bool: ...

    def is_drained(self) -> bool: ...


def drain(pollables: Sequence[Pollable], *, timeout_s: float, sleep: Callable[[float], None] = time.sleep,
          notify: Callable[[str], None] | None = None) -> None:
    """Poll until a whole round does no work and everything is drained."""
    deadline = time.monotonic() + timeout_s
    announced: set[str] = set()
    while True:
        worked = _poll_round(pollables)
        if not worked and all(pollable.is_drained() for pollable in pollables):
            _wake(pollables)  # shards backing off since an empty read may have been written to since
            worked = _poll_round(pollables)
            if not worked and all(pollable.is_drained() for pollable in pollables):
                return
        if time.monotonic() > deadline:
            stuck = [_describe(pollable) for pollable in pollables if not pollable.is_drained()]
            raise TimeoutError(f"not drained after {timeout_s} s: {'; '.join(stuck) or 'still working'}")
        if notify is not None:
            _announce_windows(pollables, announced, notify)
        if not worked:
            sleep(0.05)


def _poll_round(pollables: Sequence[Pollable]) -> bool:
    worked = False
    for pollable in pollables:
        worked |= pollable.poll()
    return worked


def _wake(pollables: Sequence[Pollable]) -> None:
    for pollable in pollables:
        if isinstance(pollable, EventSourceMapping):
            pollable.wake()


def _announce_windows(pollables: Sequence[Pollable], announced: set[str], notify: Callable[[str], None]) -> None:
    for pollable in pollables:
        if isinstance(pollable, EventSourceMapping):
            for window in pollable.waiting_windows():
                if window not in announced:
                    announced.add(window)
                    notify(f"waiting for {window}")


def _describe(pollable: Pollable) -> str:
    if isinstance(pollable, EventSourceMapping):
        config = pollable.config
        reasons = pollable.stuck()
        return f"{config.function_name} <- {config.source_arn}" + (f" ({'; '.join(reasons)})" if reasons else "")
    return repr(pollable)
