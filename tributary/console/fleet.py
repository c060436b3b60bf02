"""The console's own readers of the fleet's streams: positions and trails from `wildrydes`, summaries from
`wildrydes-summary`.

Each follower reads its stream from TRIM_HORIZON with its own GetRecords iterators (tributary.consumer's
StreamTail: shards in order, a reshard's children after their parents), so it never takes records from
the event source mappings. Records are decoded as the functions decode them (tributary_shared.payloads);
a record the layer refuses (malformed, or a reading that reports an error) is counted, never drawn.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tributary.consumer import StreamTail, user_records
from tributary_shared.errors import RecordError
from tributary_shared.payloads import PayloadDecoder, reject_reported_error

TRAIL_LENGTH = 20
KEPT_SUMMARIES = 50
SHARD_REFRESH_READS = 10
# GetRecords rounds (one call per shard each) per read at most: a long backlog is caught up over a
# few collections rather than holding up one.
MAX_POLLS_PER_READ = 20
Decoder = Callable[[bytes], dict[str, Any]]


class StreamFollower:
    """Every record of one stream, decoded, in shard order; `read()` returns what arrived since the last call."""

    def __init__(self, kinesis: Any, stream_name: str, decode: Decoder | None = None) -> None:
        # No pause between reads: the console's collector paces its own rounds.
        self._tail = StreamTail(kinesis, stream_name, "TRIM_HORIZON", min_interval=0.0, sleep=lambda _s: None)
        self._decode = decode or PayloadDecoder().decode
        self._reads = 0

    def read(self) -> list[tuple[dict[str, Any] | None, str | None]]:
        """(value, None) for each record that decodes, (None, reason) for each the layer refuses."""
        if self._reads % SHARD_REFRESH_READS == 0:
            self._tail.refresh_shards()
        self._reads += 1
        decoded = []
        for _ in range(MAX_POLLS_PER_READ):  # to the stream's tip, so the map shows the latest readings
            result = self._tail.poll()
            decoded += [self._decoded(user_record) for record in result.records for user_record in user_records(record)]
            if result.caught_up:
                break
        return decoded

    def _decoded(self, record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        try:
            if record.get("Problem"):
                raise RecordError(record["Problem"])
            value = self._decode(record["Data"])
            reject_reported_error(value)
        except RecordError as error:
            return None, error.reason
        return value, None


@dataclass
class Fleet:
    """Each unicorn's latest readings (its trail, newest last) and what the summary stream said."""

    trails: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)
    readings: int = 0
    refused: int = 0
    summaries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT_SUMMARIES))
    summary_records: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_reading(self, value: dict[str, Any]) -> None:
        position = _position(value)
        if position is None:
            self.refused += 1
            return
        with self._lock:
            trail = self.trails.setdefault(str(value["Name"]), deque(maxlen=TRAIL_LENGTH))
            trail.append(position)
            self.readings += 1

    def add_summary(self, value: dict[str, Any]) -> None:
        with self._lock:
            self.summaries.append(value)
            self.summary_records += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            unicorns = [
                {"name": name, "latest": trail[-1], "trail": list(trail)}
                for name, trail in sorted(self.trails.items())
            ]
            return {
                "unicorns": unicorns,
                "readings": self.readings,
                "refused": self.refused,
                "summaryRecords": self.summary_records,
                "latestSummaries": list(self.summaries)[-10:][::-1],
            }


def _position(value: dict[str, Any]) -> dict[str, Any] | None:
    """The reading's point on the map; None when it names no unicorn or has no coordinates."""
    try:
        latitude, longitude = float(value["Latitude"]), float(value["Longitude"])
    except (KeyError, TypeError, ValueError):
        return None
    if not value.get("Name") or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return {"lat": latitude, "lon": longitude, "time": str(value.get("StatusTime", ""))}


class FleetWatch:
    """The followers of `wildrydes` and `wildrydes-summary` feeding one `Fleet`."""

    def __init__(self, kinesis: Any, readings_stream: str | None, summary_stream: str | None) -> None:
        self.fleet = Fleet()
        self._readings = StreamFollower(kinesis, readings_stream) if readings_stream else None
        self._summaries = StreamFollower(kinesis, summary_stream) if summary_stream else None

    def read(self) -> None:
        if self._readings is not None:
            for value, _reason in self._readings.read():
                if value is None:
                    self.fleet.refused += 1
                else:
                    self.fleet.add_reading(value)
        if self._summaries is not None:
            for value, _reason in self._summaries.read():
                if value is not None:
                    self.fleet.add_summary(value)
