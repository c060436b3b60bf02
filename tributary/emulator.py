"""The embedded AWS: moto's server on a loopback port, with the emulator fixes in moto_patches.

`EmbeddedAws` runs it in this process; `SeparateProcessAws` runs the same server in a child process,
for work whose own threads must not share an interpreter lock with moto's (a benchmark of parallel
writes: in one process, moto answering a request stops every client thread).
"""

import contextlib
import logging
import multiprocessing
import socket
import urllib.request
from multiprocessing.connection import Connection
from typing import Self

from moto.server import ThreadedMotoServer

from tributary import moto_dynamodb_patch, moto_patches
from tributary.aws_guard import use_local_endpoint

# How long a child process may take to import moto and start serving.
CHILD_START_TIMEOUT_S = 60.0


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reset_emulator(endpoint_url: str) -> None:
    """Forget every resource: moto's documented reset endpoint."""
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


class EmbeddedAws:
    """moto's server on 127.0.0.1; `start()` also points this process's boto3 clients at it."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_loopback_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> Self:
        # werkzeug logs every request at INFO; the runtime reports what matters itself.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # Before the first request. On a moto other than the pinned one it warns and serves moto unpatched.
        moto_patches.apply()
        moto_dynamodb_patch.apply()
        use_local_endpoint(self.endpoint_url)
        self._server.start()
        return self

    def reset(self) -> None:
        reset_emulator(self.endpoint_url)

    def stop(self) -> None:
        self._server.stop()

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
