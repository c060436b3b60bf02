"""The runtime's one invocation slot: functions run one at a time, and a function's synchronous call runs nested.

Environment variables, `sys.path` and `sys.modules` are process-wide, so the runtime serialises
invocations: a top-level invocation (a mapping's batch, an asynchronous event, a synchronous Invoke
from outside) takes the slot and keeps it until it ends.

A function that invokes another synchronously (RequestResponse, e.g. the redrive re-applying a record
through a pipeline's function) waits for the answer while holding the slot. That invocation runs
*nested* in the caller's slot, on the Lambda emulation's thread, as long as the caller is the
innermost invocation running (so it is the one waiting): the runtime's concurrency is still one
handler at a time. Any other call that finds the slot taken is refused (the emulation answers 429).

An invocation restores the process state it found only once every invocation nested in it has ended,
even when it timed out meanwhile: restoring earlier would pull the environment from under them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_SLOT = threading.RLock()
_NESTING = threading.Condition()
_running: list[str] = []  # names of the invocations running now, outermost first


@contextlib.contextmanager
def top_level(name: str) -> Iterator[None]:
    """Hold the slot (waiting for it) while invocation `name` runs."""
    with _SLOT:
        _enter(name)
        try:
            yield
        finally:
            _leave(name)


@contextlib.contextmanager
def slot_if_free() -> Iterator[bool]:
    """Hold the slot if no invocation is running now; yields whether it is held.

    For callers on other threads (the Lambda emulation's RequestResponse) that must not wait behind
    an invocation that may itself be waiting for them.
    """
    held = _SLOT.acquire(blocking=False)
    try:
        yield held
    finally:
        if held:
            _SLOT.release()


@contextlib.contextmanager
def nested_in(caller: str, name: str) -> Iterator[bool]:
    """Run invocation `name` nested in `caller`'s slot if `caller` is the innermost invocation running;
    yields whether it was admitted (if not, the caller is not waiting for it: take the slot or be refused)."""
    with _NESTING:
        admitted = bool(_running) and _running[-1] == caller
        if admitted:
            _running.append(name)
    try:
        yield admitted
    finally:
        if admitted:
            _leave(name)


def wait_for_nested(name: str) -> None:
    """Block until nothing runs nested in invocation `name` (the innermost running is `name` again)."""
    with _NESTING:
        _NESTING.wait_for(lambda: not _running or _running[-1] == name)


def running() -> list[str]:
    """The invocations running now, outermost first (for diagnostics)."""
    with _NESTING:
        return list(_running)


def _enter(name: str) -> None:
    with _NESTING:
        _running.append(name)


def _leave(name: str) -> None:
    with _NESTING:
        _NESTING.wait_for(lambda: _running[-1] == name)
        _running.pop()
        _NESTING.notify_all()
