"""Whether a host is this machine: the one rule the layer and the development guard both apply."""

import ipaddress


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP literal (127.0.0.0/8, ::1), exactly as a connection names it.

    A name is never resolved here: what a resolver might answer is not evidence. A form socket
    accepts but `ipaddress` does not (`127.1`) is refused.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
