"""The embedded AWS: moto's server, in-process, on a loopback port, with the emulator fixes in moto_patches."""

import logging
import socket
import urllib.request
from typing import Self

from moto.server import ThreadedMotoServer

from tributary import moto_dynamodb_patch, moto_patches
from tributary.aws_guard import use_local_endpoint


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
        """Forget every resource: moto's documented reset endpoint."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
