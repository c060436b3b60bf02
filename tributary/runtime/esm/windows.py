"""Tumbling windows (TumblingWindowInSeconds), as the Lambda developer guide describes them.

Records are grouped per (virtual) shard into windows of floor(arrival / W) * W; a batch never
crosses a window's edge. The event gains window/state/shardId/eventSourceARN/isFinalInvokeForWindow/
isWindowTerminatedEarly, and a response without a ``state`` object is a function error. The final
invoke (no records, isFinalInvokeForWindow true) happens once a record of a later window is read, or
the clock has passed the window end and the shard is read to its current tip, or at once when the
shard has ended (closed by resharding and read to its end: AWS considers the window closed and the
child shards start their own windows); it is retried until it succeeds (AWS: "pauses further
processing until a successful invocation"). A returned state over 1 MB ends the window early: a
final invoke with isWindowTerminatedEarly true, then the same window continues with a fresh state.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from tributary.runtime.destinations import iso_seconds

STATE_LIMIT_BYTES = 1024 * 1024


def window_start(arrival: float, window_s: int) -> float:
    return math.floor(arrival / window_s) * window_s


def has_state(response: Any) -> bool:
    """Whether a windowed function's response carries the ``state`` object the next invoke gets."""
    return isinstance(response, dict) and isinstance(response.get("state"), dict)


@dataclass
class OpenWindow:
    start: float
    end: float
    state: dict[str, Any] = field(default_factory=dict)
    terminated_early: bool = False
    final_attempts: int = 0
    final_error: str | None = None

    @classmethod
    def around(cls, arrival: float, window_s: int) -> OpenWindow:
        """The window a record arriving at `arrival` belongs to."""
        start = window_start(arrival, window_s)
        return cls(start, start + window_s)

    def keep_state(self, state: dict[str, Any]) -> None:
        """Carry a successful invocation's state to the next; a state over the limit ends the window early."""
        self.state = state
        self.terminated_early = _json_size(state) > STATE_LIMIT_BYTES

    def after_final_invoke(self) -> OpenWindow | None:
        """What follows a successful final invoke: the same window afresh if it ended early, else none."""
        return OpenWindow(self.start, self.end) if self.terminated_early else None

    def event_fields(self, shard_id: str, stream_arn: str, *, final: bool) -> dict[str, Any]:
        return {
            "window": {"start": iso_seconds(self.start), "end": iso_seconds(self.end)},
            "state": self.state,
            "shardId": shard_id,
            "eventSourceARN": stream_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": final and self.terminated_early,
        }

    def describe_final_retry(self, shard_id: str) -> str:
        return (f"{shard_id}: final invoke of window ending {iso_seconds(self.end)}, "
                f"attempt {self.final_attempts}, last error: {self.final_error}")

    def describe_wait(self, function_name: str, shard_id: str) -> str:
        return (f"window {iso_seconds(self.start)}..{iso_seconds(self.end)} of {function_name} on {shard_id} "
                f"to end at {time.strftime('%H:%M:%S', time.localtime(self.end))}")


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())
