"""Refuse to talk to real AWS: every HTTP connection this process opens must go straight to loopback.

The tests and the local runtime run against moto's server on 127.0.0.1 with dummy credentials.
A mistake (a missing endpoint, a stray profile, a function's proxy settings) must fail loudly
instead of touching an account, so `use_local_endpoint` (the one way to install the guard) patches
the two places where this process's HTTP clients open a connection:

- urllib3's `HTTPConnection._new_conn`, HTTP and HTTPS: botocore (every boto3 client, the runtime's
  and the functions') and anything else built on urllib3;
- `http.client.HTTPConnection.connect`, HTTP and HTTPS: urllib.request (the layer's Confluent
  registry lookups, the emulator's reset) and http.client itself.

What is checked is the host and port the connection is about to resolve and connect to, after the
client has parsed the URL its own way. A URL string is never the evidence: parsers disagree
(`http://192.0.2.2:1\\@127.0.0.1/` is 127.0.0.1 to `urlsplit` and 192.0.2.2 to urllib3), the
connection's host does not. The host must be `localhost` or a loopback IP literal; it is never
resolved, so a refused host costs no name lookup either.

Proxies are refused, wherever they were configured (`HTTP(S)_PROXY` in the shell or in a function's
environment, botocore's `Config(proxies=...)`, urllib's ProxyHandler): a proxy carries requests past
loopback even when the proxy itself listens on loopback. A connection to a proxy (urllib3's
forwarding or tunnelling proxies, an http.client CONNECT tunnel) is refused before it opens, and a
request in absolute form, the way urllib asks a forwarding proxy, is refused before it is sent.
Behind a proxy, list loopback in NO_PROXY: the clients then connect to the emulator directly.

A refusal is `RealAwsRefused`, raised before any socket is created. botocore would wrap it in an
`HTTPClientError` (which its standard retry mode retries), so its session hands the refusal on as
itself.
"""

import http.client
import os
from typing import Any

import botocore.httpsession
import urllib3.connection
from botocore.exceptions import HTTPClientError
from urllib3.util import parse_url

from tributary_shared.loopback import is_loopback_host

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
_AMBIENT_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
# Request targets a server answers itself (RFC 9112 3.2): a path, a query, `*`. The absolute form
# (`http://host/path`) is what a forwarding proxy is asked.
_ORIGIN_FORM_STARTS = ("/", "?", "*")


class RealAwsRefused(RuntimeError):
    """Raised instead of connecting to anything but a loopback address, or through a proxy."""



def is_loopback_url(url: str) -> bool:
    """Whether `url`'s host is loopback as urllib3, which botocore sends through, reads the URL."""
    return is_loopback_host(parse_url(url).host or "")


def use_local_endpoint(endpoint_url: str) -> None:
    """Point every boto3 client of this process at `endpoint_url` with dummy credentials; guard every connection."""
    if not is_loopback_url(endpoint_url):
        raise RealAwsRefused(f"refusing endpoint {endpoint_url}: only loopback emulators are allowed")
    for name in _AMBIENT_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(DUMMY_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    _install()


def _refuse_unless_direct_to_loopback(connection: http.client.HTTPConnection, request_target: str = "/") -> None:
    """Raise `RealAwsRefused` unless `connection` goes straight to a loopback host (and `request_target` with it)."""
    host = getattr(connection, "_dns_host", connection.host)  # urllib3 resolves `_dns_host`, http.client `host`
    where = f"{host}:{connection.port}"
    tunnel = getattr(connection, "_tunnel_host", None)  # both: the destination behind a CONNECT proxy
    # urllib3 sets `proxy` on every connection to a proxy; urllib asks a forwarding proxy in absolute form.
    if getattr(connection, "proxy", None) or tunnel or not request_target.startswith(_ORIGIN_FORM_STARTS):
        behind = f" to {tunnel}:{getattr(connection, '_tunnel_port', '')}" if tunnel else ""
        raise RealAwsRefused(f"refusing to connect through the proxy at {where}{behind}: proxies are refused "
                             "(unset HTTP(S)_PROXY or list 127.0.0.1,localhost in NO_PROXY; no Config(proxies=...))")
    if not is_loopback_host(host):
        raise RealAwsRefused(f"refusing to connect to {where}: not loopback")


_original_urllib3_new_conn = urllib3.connection.HTTPConnection._new_conn
_original_http_client_connect = http.client.HTTPConnection.connect
_original_putrequest = http.client.HTTPConnection.putrequest
_original_botocore_send = botocore.httpsession.URLLib3Session.send


def _guarded_new_conn(self: urllib3.connection.HTTPConnection) -> Any:
    _refuse_unless_direct_to_loopback(self)
    return _original_urllib3_new_conn(self)


def _guarded_connect(self: http.client.HTTPConnection) -> None:
    _refuse_unless_direct_to_loopback(self)
    _original_http_client_connect(self)


def _guarded_putrequest(self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kwargs: Any) -> None:
    # http.client connects when the request is sent, after this: a forwarding proxy is caught unconnected.
    _refuse_unless_direct_to_loopback(self, url or "/")
    _original_putrequest(self, method, url, *args, **kwargs)


def _send_handing_refusals_on(self: botocore.httpsession.URLLib3Session, request: Any) -> Any:
    try:
        return _original_botocore_send(self, request)
    except HTTPClientError as error:
        refusal = error.kwargs.get("error")
        if isinstance(refusal, RealAwsRefused):
            raise refusal from None
        raise


def _install() -> None:
    """Patch the connection points (idempotent: the originals were taken at import)."""
    urllib3.connection.HTTPConnection._new_conn = _guarded_new_conn  # type: ignore[method-assign]
    http.client.HTTPConnection.connect = _guarded_connect  # type: ignore[method-assign]
    http.client.HTTPConnection.putrequest = _guarded_putrequest  # type: ignore[method-assign]
    botocore.httpsession.URLLib3Session.send = _send_handing_refusals_on  # type: ignore[method-assign]
