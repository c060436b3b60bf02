"""The `--trace FILE` writer: one JSON line per invocation and per on-failure delivery.

The file is truncated when the run starts: it holds one run. Every line has ``time`` (UTC, ISO 8601
with milliseconds, when it was written). Line shapes (``type`` tells them apart):

- ``{"type": "invocation", "function", "mapping", "shard", "lane", "sequenceNumbers": [...], "attempt",
  "window": {"start", "end"} | null, "final": bool, "outcome", "error", "checkpoint"}``; ``outcome`` is
  ``success``, ``partial`` (batchItemFailures), ``error`` (function error or invalid response);
  ``attempt`` counts invocations of exactly these records (1 = first try); ``checkpoint`` is the last
  sequence number of the lane known to be done after this invocation.
- ``{"type": "delivery", "function", "mapping", "shard", "condition", "destination", "batchInfo", "error"}``:
  a discarded batch, where its invocation record went (``destination`` null when none is configured)
  and, if sending failed, why.
- ``{"type": "fault", "fault", "function", "operation", "detail"}``: a fault `--faults` injected
  (tributary.runtime.faults): its kind (e.g. ``dynamodb.throttle``), the function whose request or
  invocation met it, the API operation (``Invoke`` for the lambda.* faults) and what happened.

The writer also keeps the latest lines in memory (`events()`, at most `KEPT_EVENTS`), for the console's
report timeline; with no target (`TraceWriter(None)`) it keeps them in memory only.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

KEPT_EVENTS = 20_000  # the latest lines kept in memory when asked: a demo's whole run


class TraceWriter:
    """Writes JSON lines to a file it truncates (or any text stream); safe to share between mappings and threads."""

    def __init__(self, target: str | Path | TextIO | None, clock: Callable[[], float] = time.time,
                 *, keep: int = KEPT_EVENTS) -> None:  # fmt: skip
        """`keep`: how many of the latest lines `events()` returns (0: none kept, for a long run with a file)."""
        self._clock = clock
        self._kept: deque[dict[str, Any]] = deque(maxlen=keep)
        self._stream: TextIO | None
        if target is None:
            self._stream = None
            self._owns_stream = False
        elif isinstance(target, str | Path):
            self._stream = Path(target).open("w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._owns_stream = True
        else:
            self._stream = target
            self._owns_stream = False
        self._lock = threading.Lock()

    def invocation(self, **fields: Any) -> None:
        self._write({"type": "invocation", **fields})

    def delivery(self, **fields: Any) -> None:
        self._write({"type": "delivery", **fields})

    def fault(self, **fields: Any) -> None:
        self._write({"type": "fault", **fields})

    def _write(self, line: dict[str, Any]) -> None:
        moment = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event = {"time": moment, **line}
        with self._lock:
            self._kept.append(event)
            if self._stream is not None:
                self._stream.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
                self._stream.flush()

    def events(self) -> list[dict[str, Any]]:
        """The latest lines written, oldest first, as dicts (a copy: safe to read while mappings write)."""
        with self._lock:
            return list(self._kept)

    def close(self) -> None:
        if self._owns_stream and self._stream is not None:
            self._stream.close()
