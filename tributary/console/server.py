"""The console's web server: a Flask app serving the page, its static files, snapshots, live events, actions.

    GET  /                      the console page (everything it loads is served from here: no CDN)
    GET  /console/static/<f>    its script and style
    GET  /console/api/snapshot  the latest snapshot (JSON)
    GET  /console/api/events    Server-Sent Events: a `snapshot` event each time a newer one is collected
    POST /console/api/burst     {"unicorns": 5, "perUnicorn": 10, "poison": false}: put readings on the stream
    POST /console/api/redrive   {"dryRun": false}: start the redrive state machine

By default it answers on the embedded AWS's own port (EmbeddedAws.browser_app: unsigned requests for
these paths); with a port of its own it runs a werkzeug server on 127.0.0.1 there. Every request must
name 127.0.0.1 or localhost as its Host, so a site whose name is made to resolve to 127.0.0.1 (DNS
rebinding) reads and does nothing; actions accept JSON bodies only and refuse another origin, so a page
on another site cannot post to them either. An action that fails answers JSON with the reason, never a
traceback on `up`'s terminal.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer

from tributary.console.actions import MAX_BURST, start_redrive
from tributary.console.snapshot import ConsoleState, snapshot_json
from tributary.emulator import serve_wsgi
from tributary.runtime.app import Runtime
from tributary.user_errors import UserError

STATIC = files("tributary.console") / "static"
HEARTBEAT_S = 15.0  # a comment line now and then: proxies and browsers keep an idle stream open
DEFAULT_BURST = {"unicorns": 5, "perUnicorn": 10}
MAX_UNICORNS = 100
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})


def static_text(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def create_app(state: ConsoleState) -> Flask:
    app = Flask("tributary.console", static_folder=None)

    @app.before_request
    def loopback_names_only() -> Response | None:
        if request.host.rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
            return Response("the console answers to 127.0.0.1 and localhost only", status=403, mimetype="text/plain")
        return None

    @app.get("/")
    def page() -> Response:
        return Response(static_text("index.html"), mimetype="text/html")

    @app.get("/console/static/<path:name>")
    def static_file(name: str) -> Response:
        path = STATIC.joinpath(*name.split("/"))
        if ".." in name.split("/") or not path.is_file():
            return Response("not found", status=404, mimetype="text/plain")
        mimetype = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}.get(name.rsplit(".", 1)[-1])
        return Response(path.read_bytes(), mimetype=mimetype or "text/plain")

    @app.get("/console/api/snapshot")
    def snapshot() -> Response:
        return Response(snapshot_json(state.refresh()), mimetype="application/json")

    @app.get("/console/api/events")
    def events() -> Response:
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return Response(_event_stream(state), mimetype="text/event-stream", headers=headers)

    @app.post("/console/api/burst")
    def burst() -> Any:
        names, per_unicorn, poison = _burst_request(_json_body())
        made = state.bursts.produce(names, per_unicorn, poison=poison)
        return jsonify({"stream": made.stream, "sent": made.sent, "poison": made.poison, "failed": made.failed})

    @app.post("/console/api/redrive")
    def redrive() -> Any:
        body = _json_body()
        arn = start_redrive(state.runtime, state.clients["stepfunctions"], dry_run=bool(body.get("dryRun")))
        return jsonify({"execution": arn})

    @app.errorhandler(UserError)
    def refused(error: UserError) -> Any:
        return jsonify({"error": str(error)}), 400

    @app.errorhandler(Exception)
    def failed(error: Exception) -> Any:
        if isinstance(error, HTTPException):  # 404, 405...: as Flask answers them
            return error
        return jsonify({"error": f"{type(error).__name__}: {error}"}), 500

    return app


def _json_body() -> dict[str, Any]:
    origin = request.headers.get("Origin")
    if origin is not None and origin != request.host_url.rstrip("/"):
        raise UserError(f"actions are taken from the console's own page, not from {origin}")
    body = request.get_json(silent=True)
    if not request.is_json or not isinstance(body, dict):
        raise UserError("send a JSON object (Content-Type: application/json)")
    return body


def _burst_request(body: dict[str, Any]) -> tuple[list[str], int, bool]:
    """(unicorn names, readings per unicorn, poison) from a burst request: names, or a count of Unicorn-N."""
    try:
        count = int(body.get("unicorns", DEFAULT_BURST["unicorns"]))
        per_unicorn = int(body.get("perUnicorn", DEFAULT_BURST["perUnicorn"]))
    except (TypeError, ValueError) as error:
        raise UserError(f"unicorns and perUnicorn are whole numbers: {error}") from error
    names = body.get("names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)):
        raise UserError("names is a list of unicorn names")
    count = len(names) if names else count
    if not 1 <= count <= MAX_UNICORNS or per_unicorn < 1 or count * per_unicorn > MAX_BURST:
        raise UserError(f"a burst is 1 to {MAX_UNICORNS} unicorns and 1 to {MAX_BURST} records: "
                        f"{count} unicorns x {per_unicorn} asked")  # fmt: skip
    return names or [f"Unicorn-{number}" for number in range(1, count + 1)], per_unicorn, bool(body.get("poison"))


def _event_stream(state: ConsoleState) -> Iterator[str]:
    state.watching(+1)
    try:
        state.refresh()  # what a new viewer sees first is now, not what was collected before anyone watched
        version, text = state.latest()
        yield f"event: snapshot\ndata: {text}\n\n"
        while not state.stopped:
            newer, text = state.wait_newer(version, HEARTBEAT_S)
            if newer == version:
                yield ": still here\n\n"
                continue
            version = newer
            yield f"event: snapshot\ndata: {text}\n\n"
    finally:  # the browser went away (the write failed) or the console stopped
        state.watching(-1)


class ConsoleServer:
    """The console of a started runtime: collecting, and served on the emulator's port or its own."""

    def __init__(self, runtime: Runtime, port: int | None = None, interval_s: float | None = None) -> None:
        self.runtime = runtime
        self.state = ConsoleState(runtime, **({"interval_s": interval_s} if interval_s else {}))
        self.app = create_app(self.state)
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        port = self.port if self.port is not None else self.runtime.aws.port
        return f"http://127.0.0.1:{port}/"

    def start(self) -> ConsoleServer:
        if self.port is None:
            self.state.start()
            self.runtime.aws.browser_app = self.app
            return self
        try:
            self._server, self._thread = serve_wsgi(self.app, self.port, name="console-server")
        except OSError as error:
            raise UserError(f"cannot serve the console on 127.0.0.1:{self.port}: {error.strerror}: pick another "
                            "--console-port, or leave it out to serve the console on the emulator's port") from error
        self.port = int(self._server.server_address[1])  # 0 asks for a free one
        self.state.start()
        return self

    def stop(self) -> None:
        """Stop collecting and serving; open event streams end. Before the runtime stops."""
        self.state.stop()
        if self._server is None:
            self.runtime.aws.browser_app = None
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_console(runtime: Runtime, port: int | None = None) -> ConsoleServer:
    """Serve the console of a started runtime (on its emulator's port, or on `port`); `.url`, `.stop()`."""
    return ConsoleServer(runtime, port).start()
