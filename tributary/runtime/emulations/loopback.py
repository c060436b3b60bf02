"""The part every emulated AWS service shares: an HTTP server on loopback that boto3 clients reach.

botocore reads a service-specific endpoint variable (`AWS_ENDPOINT_URL_<SERVICE_ID>`), which wins
over `AWS_ENDPOINT_URL`; setting it points the functions' unchanged clients at the emulation while
every other service still goes to moto. A service answers an error by raising `ServiceError`; its
request handler (a `LoopbackRequestHandler`) renders it in the service's own protocol.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class ServiceError(Exception):
    """An error response of an emulated service: HTTP status, the error's code and its modeled members.

    ``members`` always holds ``Message``; the others are the error shape's own (Reason, ResourceType...).
    """

    def __init__(self, status: HTTPStatus, code: str, message: str, **members: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.members: dict[str, Any] = {"Message": message, **members}


class LoopbackRequestHandler(BaseHTTPRequestHandler):
    """What an emulation's request handler shares: writing a response, and no access log."""

    def send_body(self, status: HTTPStatus, body: bytes, *, content_type: str, request_id: str,
                  headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def content_length(self) -> int:
        return int(self.headers.get("Content-Length") or 0)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the runtime's counters and trace say what the functions did."""


class LoopbackService:
    """Start/stop a ThreadingHTTPServer on a free loopback port and own the endpoint variable."""

    endpoint_variable: ClassVar[str]
    service_name: ClassVar[str]

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._previous_endpoint: str | None = None

    def request_handler(self) -> type[LoopbackRequestHandler]:
        raise NotImplementedError

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"the {self.service_name} emulation is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, *, set_endpoint_variable: bool = True) -> Self:
        """Serve on a free loopback port; by default point this process's boto3 clients here."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.request_handler())
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.service_name}-emulation",
            daemon=True,
        ).start()
        if set_endpoint_variable:
            self._previous_endpoint = os.environ.get(self.endpoint_variable)
            os.environ[self.endpoint_variable] = self.endpoint_url
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        if os.environ.get(self.endpoint_variable) == self.endpoint_url:
            if self._previous_endpoint is None:
                os.environ.pop(self.endpoint_variable, None)
            else:
                os.environ[self.endpoint_variable] = self._previous_endpoint
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
