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
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


class TraceWriter:
    """Writes JSON lines to a file it truncates (or any text stream); safe to share between mappings and threads."""

    def __init__(self, target: str | Path | TextIO, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        if isinstance(target, str | Path):
            self._stream: TextIO = Path(target).open("w", encoding="utf-8")  # noqa: SIM115 - closed in close()
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
        text = json.dumps({"time": moment, **line}, separators=(",", ":"), default=str)
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._owns_stream:
            self._stream.close()
