"""Ports asked for (`--port`, `--console-port`): checked before anything starts, so a busy or impossible
port is one clear line, not an OSError deep in a server (moto's own server, binding on a thread of its
own, would print "Address already in use" and leave the command waiting for ever). Binding a probe
socket the way the server binds (SO_REUSEADDR, like werkzeug) finds out first.
"""

import errno
import socket

from tributary.user_errors import UserError

PORT_RANGE = range(1, 65536)
LOOPBACK = "127.0.0.1"


def check_port_number(port: int, option: str = "--port") -> None:
    """A UserError unless `port` is a TCP port number (1..65535)."""
    if port not in PORT_RANGE:
        raise UserError(f"{option} {port} is not a port number: pick one from 1 to 65535, or omit {option} for a "
                        "free one")  # fmt: skip


def ensure_port_free(port: int, host: str = LOOPBACK, option: str = "--port") -> None:
    """A UserError naming `port` (and the `option` that asked for it) if a server could not listen on it at `host`."""
    check_port_number(port, option)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(_cannot_listen(port, host, error, option)) from error


def _cannot_listen(port: int, host: str, error: OSError, option: str) -> str:
    instead = f"or omit {option} for a free one"
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use by another program: pick another {option}, {instead}"
    if error.errno == errno.EACCES:
        return f"port {port} needs privileges on this machine: pick a port above 1023, {instead}"
    return f"cannot listen on {host}:{port}: {error.strerror}: pick another {option}, {instead}"
