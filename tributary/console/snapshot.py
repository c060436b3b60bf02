"""The console's state: one snapshot of fleet, figures, pipelines and data, collected on its own thread.

The collector reads the runtime (copies, never live iteration) and the embedded AWS (its APIs, through a
boto3 session of its own: sessions are not thread-safe, clients are) once per interval and publishes the
snapshot as JSON with a version number; the server's event streams wait for a newer version. A part that
fails to collect (a table gone with a reset) is reported in the snapshot's ``errors``, the rest goes on.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3

from tributary.console import data_views
from tributary.console.actions import READINGS_STREAM, Bursts, redrive_executions
from tributary.console.fleet import FleetWatch
from tributary.console.pipelines import PipelineView, alarm_states
from tributary.fleet_queries import fleet_minutes
from tributary.runtime.app import Runtime

COLLECT_INTERVAL_S = 1.0
LAKE_EVERY_ROUNDS = 5  # the lake reads every Parquet object: not every second
SUMMARY_STREAM = "WildrydesSummaryStream"
AGGREGATION_TABLE = "UnicornAggregationTable"


def snapshot_json(value: Any) -> str:
    """JSON a browser's JSON.parse takes: NaN and infinities (a DuckDB double, a decoded record) become null."""
    return json.dumps(_finite(value), default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class ConsoleState:
    """Collects snapshots of `runtime`; `latest()` and `wait_newer()` serve them to any thread."""

    def __init__(self, runtime: Runtime, interval_s: float = COLLECT_INTERVAL_S) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        session = boto3.session.Session()  # made on the caller's thread: the collector only uses its clients
        # Every client the collector uses, made here: a client made on the collector's thread would read the
        # process environment while a function's invocation has it swapped for the function's own.
        services = ("kinesis", "dynamodb", "sqs", "stepfunctions", "glue", "athena", "s3")
        self.clients = {name: session.client(name) for name in services}
        self.fleet = FleetWatch(self.clients["kinesis"], self._name(READINGS_STREAM), self._name(SUMMARY_STREAM))
        self.pipelines = PipelineView(runtime, self.clients["kinesis"], self.clients["glue"])
        self.bursts = Bursts(runtime, self.clients["kinesis"])
        self._lake: dict[str, Any] = {"tables": [], "namedQueries": [], "currentView": {"rows": []}}
        self._rounds = 0
        self.viewers = 0  # open event streams
        self._json = "{}"
        self._version = 0
        self._changed = threading.Condition()
        self._collecting = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _name(self, logical_id: str) -> str | None:
        template = self.runtime.template
        return template.physical_name(logical_id) if logical_id in template.resources else None

    # ------------------------------------------------------------ collecting

    def start(self) -> ConsoleState:
        # Nothing collected until someone looks (the first viewer's request collects): `up` starts no slower.
        self._thread = threading.Thread(target=self._run, name="console-collector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        # Nobody watching, nothing collected: the runtime's own loop keeps the machine to itself.
        while not self._stop.wait(self.interval_s):
            if self.viewers > 0:
                self.refresh()

    def watching(self, change: int) -> None:
        """An event stream opened (+1) or closed (-1)."""
        with self._changed:
            self.viewers += change

    def refresh(self) -> dict[str, Any]:
        """Collect a snapshot now and publish it (one collection at a time: the stream readers keep state)."""
        with self._collecting:
            snapshot = self.collect()
        text = snapshot_json(snapshot)
        with self._changed:
            self._json, self._version = text, self._version + 1
            self._changed.notify_all()
        return snapshot

    def collect(self) -> dict[str, Any]:
        errors: dict[str, str] = {}
        runtime, clients = self.runtime, self.clients
        if self._rounds % LAKE_EVERY_ROUNDS == 0:
            read_lake = functools.partial(data_views.order_lake, clients["glue"], clients["athena"], clients["s3"])
            self._lake = _part(errors, "lake", read_lake, self._lake)
        self._rounds += 1
        return {
            "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "endpoint": runtime.aws.endpoint_url,
            "fleet": _part(errors, "fleet", self._fleet, {"unicorns": []}),
            "figures": _part(errors, "figures", self._figures, []),
            "pipelines": _part(errors, "pipelines", self.pipelines.snapshot, []),
            "alarms": _part(errors, "alarms", lambda: alarm_states(runtime), []),
            "queues": _part(errors, "queues", lambda: data_views.queue_depths(runtime, clients["sqs"]), []),
            "redrive": _part(errors, "redrive", lambda: redrive_executions(runtime, clients["stepfunctions"]),
                             {"available": False, "executions": []}),
            "data": {
                "readModels": _part(errors, "readModels", lambda: data_views.read_models(runtime, clients["dynamodb"]),
                                    []),
                "lake": self._lake,
                "optOuts": _part(errors, "optOuts", lambda: data_views.opt_out_lists(runtime), []),
            },
            "errors": errors,
        }

    def _fleet(self) -> dict[str, Any]:
        self.fleet.read()
        return self.fleet.fleet.snapshot()

    def _figures(self) -> list[dict[str, Any]]:
        table = self._name(AGGREGATION_TABLE)
        if table is None:
            return []
        return [
            {"name": row.name, "window": row.window_start, "count": row.figures.count,
             "distance": float(row.figures.distance),
             "minMagic": float(row.figures.min_magic_points), "maxMagic": float(row.figures.max_magic_points),
             "minHealth": float(row.figures.min_health_points), "maxHealth": float(row.figures.max_health_points),
             "parts": row.parts, "partial": row.partial}
            for row in fleet_minutes(table, client=self.clients["dynamodb"])
        ]  # fmt: skip

    # ------------------------------------------------------------ serving

    def latest(self) -> tuple[int, str]:
        with self._changed:
            return self._version, self._json

    def wait_newer(self, version: int, timeout_s: float) -> tuple[int, str]:
        """The snapshot after `version`, or the same one when `timeout_s` passes (or the console stops)."""
        with self._changed:
            self._changed.wait_for(lambda: self._version > version or self._stop.is_set(), timeout=timeout_s)
            return self._version, self._json


def _part(errors: dict[str, str], name: str, collect: Callable[[], Any], fallback: Any) -> Any:
    """One part of the snapshot; on any error its fallback, and the error named (the console keeps going)."""
    try:
        return collect()
    except Exception as error:
        errors[name] = f"{type(error).__name__}: {error}"
        return fallback

