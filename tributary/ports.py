"""The emulator's port: checked before the server starts, so a busy or impossible `--port` is one clear line.

moto's server binds its port on a thread of its own: when the port is taken it prints "Address
already in use" there and the command waits for a server that never comes. Binding a probe socket
the way the server binds (SO_REUSEADDR, like werkzeug) finds out first.
"""

import errno
import socket

from tributary.user_errors import UserError

PORT_RANGE = range(1, 65536)
LOOPBACK = "127.0.0.1"


def check_port_number(port: int) -> None:
    """A UserError unless `port` is a TCP port number (1..65535)."""
    if port not in PORT_RANGE:
        raise UserError(f"--port {port} is not a port number: pick one from 1 to 65535, or omit --port for a free one")


def ensure_port_free(port: int, host: str = LOOPBACK) -> None:
    """A UserError naming `port` if a server could not listen on it at `host` (in use, or not allowed)."""
    check_port_number(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(_cannot_listen(port, host, error)) from error


def _cannot_listen(port: int, host: str, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use by another program: pick another --port, or omit --port for a free one"
    if error.errno == errno.EACCES:
        return f"port {port} needs privileges on this machine: pick a port above 1023, or omit --port for a free one"
    return f"cannot listen on {host}:{port}: {error.strerror}: pick another --port, or omit --port for a free one"
