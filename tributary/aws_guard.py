"""Refuse to talk to real AWS: every request must go to a loopback endpoint.

The tests and the local runtime run against moto's server on 127.0.0.1 with dummy credentials.
A mistake (a missing endpoint, a stray profile) must fail loudly instead of touching an account,
so `install()` patches botocore's HTTP layer to reject any request whose host is not loopback.
"""

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

import botocore.httpsession

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
_AMBIENT_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


class RealAwsRefused(RuntimeError):
    """Raised instead of sending a request to anything but a loopback address."""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def use_local_endpoint(endpoint_url: str) -> None:
    """Point every boto3 client of this process at `endpoint_url` with dummy credentials."""
    if not is_loopback_url(endpoint_url):
        raise RealAwsRefused(f"refusing endpoint {endpoint_url}: only loopback emulators are allowed")
    for name in _AMBIENT_AWS_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(DUMMY_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    install()


_original_send = botocore.httpsession.URLLib3Session.send


def _loopback_only_send(self: botocore.httpsession.URLLib3Session, request: Any) -> Any:
    if not is_loopback_url(request.url):
        raise RealAwsRefused(f"refusing to send a request to {urlsplit(request.url).hostname}: not loopback")
    return _original_send(self, request)


def install() -> None:
    """Make every botocore HTTP request in this process fail unless it targets loopback."""
    botocore.httpsession.URLLib3Session.send = _loopback_only_send  # type: ignore[method-assign]
