"""The embedded AWS: moto's server on a loopback port, with the emulator fixes in moto_patches (and its
neighbours moto_dynamodb_patch and moto_glue_ids).

The same port can serve a browser app beside it (`EmbeddedAws.browser_app`, the local console): a request
with no AWS signature (no `Authorization` header, no presigned query) for `/` or `/console/...` goes to
that app, every other request to moto.

`EmbeddedAws` runs it in this process; `SeparateProcessAws` runs the same server in a child process,
for work whose own threads must not share an interpreter lock with moto's (a benchmark of parallel
writes: in one process, moto answering a request stops every client thread).
"""

import contextlib
import logging
import multiprocessing
import socket
import threading
import urllib.request
from multiprocessing.connection import Connection
from typing import Any, Self

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from tributary import moto_dynamodb_patch, moto_glue_ids, moto_patches
from tributary.aws_guard import use_local_endpoint
from tributary.ports import ensure_port_free

# How long a child process may take to import moto and start serving.
CHILD_START_TIMEOUT_S = 60.0
BROWSER_PATH_PREFIX = "/console/"
# A presigned URL carries its signature in the query string instead of an Authorization header.
PRESIGNED_QUERY_MARKERS = ("X-Amz-Signature=", "X-Amz-Credential=", "Signature=", "AWSAccessKeyId=")
LISTEN_BACKLOG = 128
WsgiApp = Any  # a WSGI application: (environ, start_response) -> iterable of bytes


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reset_emulator(endpoint_url: str) -> None:
    """Forget every resource: moto's documented reset endpoint."""
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def serve_wsgi(app: WsgiApp, port: int, *, name: str,
               request_handler: Any = None) -> tuple[BaseWSGIServer, threading.Thread]:
    """A threaded werkzeug server for `app` on 127.0.0.1:`port` (0: a free one), serving on a daemon thread.

    The port is bound here, on the caller's thread, so a taken port raises OSError to the caller
    (werkzeug binding it itself would print a message and exit the process).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds: TIME_WAIT is no obstacle
        listener.bind(("127.0.0.1", port))
        listener.listen(LISTEN_BACKLOG)
        # werkzeug serves a duplicate of this socket's descriptor; this one closes when the block ends.
        server = make_server("127.0.0.1", listener.getsockname()[1], app, threaded=True,
                             request_handler=request_handler, fd=listener.fileno())
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return server, thread


def is_browser_request(environ: dict[str, Any]) -> bool:
    """An unsigned request for the console's paths: no AWS client sends one (every AWS request is signed)."""
    path = environ.get("PATH_INFO", "")
    if path != "/" and not path.startswith(BROWSER_PATH_PREFIX):
        return False
    query = environ.get("QUERY_STRING", "")
    return "HTTP_AUTHORIZATION" not in environ and not any(marker in query for marker in PRESIGNED_QUERY_MARKERS)


class EmbeddedAws:
    """moto's server on 127.0.0.1; `start()` also points this process's boto3 clients at it.

    `browser_app`, when set (before or after start), answers the browser's requests on the same port.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_loopback_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.browser_app: WsgiApp | None = None
        self._moto_app = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        # werkzeug logs every request at INFO; the runtime reports what matters itself.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # Before the first request. On a moto other than the pinned one it warns and serves moto unpatched.
        moto_patches.apply()
        moto_dynamodb_patch.apply()
        moto_glue_ids.apply()
        ensure_port_free(self.port)  # a UserError naming the port, before moto's server would fail on it
        use_local_endpoint(self.endpoint_url)
        # What moto's ThreadedMotoServer does, with the dispatch in front of moto's application.
        self._server, self._thread = serve_wsgi(self._dispatch, self.port, name="embedded-aws",
                                                request_handler=MotoRequestHandler)
        return self

    def _dispatch(self, environ: dict[str, Any], start_response: Any) -> Any:
        browser_app = self.browser_app
        if browser_app is not None and is_browser_request(environ):
            return browser_app(environ, start_response)
        return self._moto_app(environ, start_response)

    def reset(self) -> None:
        reset_emulator(self.endpoint_url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _serve_until_told(port: int, control: Connection) -> None:
    """The child process: an `EmbeddedAws`, serving until the parent says stop (or goes away)."""
    with EmbeddedAws(port):
        control.send("serving")
        with contextlib.suppress(EOFError):  # EOF: the parent is gone
            control.recv()


class SeparateProcessAws:
    """An `EmbeddedAws` in a child process; `start()` points this process's boto3 clients at it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_loopback_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        # A fresh interpreter: a forked copy of this one would share its locks and threads' state.
        context = multiprocessing.get_context("spawn")
        self._control, child_end = context.Pipe()
        self._process = context.Process(target=_serve_until_told, args=(self.port, child_end), daemon=True)

    def start(self) -> Self:
        self._process.start()
        try:
            serving = self._control.poll(CHILD_START_TIMEOUT_S) and self._control.recv() == "serving"
        except EOFError:  # the child ended before it served (its error is on stderr)
            serving = False
        if not serving:
            self._process.kill()
            raise RuntimeError(f"the emulator's process did not start serving on {self.endpoint_url}")
        use_local_endpoint(self.endpoint_url)
        return self

    def reset(self) -> None:
        reset_emulator(self.endpoint_url)

    def stop(self) -> None:
        if self._process.is_alive():
            self._control.send("stop")
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
