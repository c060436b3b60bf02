"""The loopback guard: each way past it a security review found is refused before a connection opens.

No test here sends a packet. The addresses are TEST-NET-1's (192.0.2.0/24, RFC 5737, reserved for
documentation), and `no_network` fails the test if a socket connects or a name is looked up.
"""

import http.client
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from tributary.aws_guard import RealAwsRefused, is_loopback_host, is_loopback_url, use_local_endpoint
from tributary.emulator import free_loopback_port
from tributary.runtime.functions import load_functions
from tributary.runtime.template import Template
from tributary_shared.schema_registry import ConfluentSchemaRegistry

FIXTURES = Path(__file__).parent / "fixtures"
# urlsplit reads 127.0.0.1 here (after the "@"); urllib3, which botocore sends through, connects to 192.0.2.2.
DISAGREEING_URL = "http://192.0.2.2:9\\@127.0.0.1/"
PROXY = "http://192.0.2.3:3128"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")  # and their lower-case forms


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with none of the shell's proxy settings, in either case."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple]]:
    """Any connection or name lookup fails the test."""
    attempts: list[tuple] = []

    def reached(*arguments: object, **_: object) -> None:
        attempts.append(arguments)
        raise AssertionError(f"the guard let a connection through: {arguments}")

    monkeypatch.setattr(socket.socket, "connect", reached)
    monkeypatch.setattr(socket.socket, "connect_ex", reached)
    monkeypatch.setattr(socket, "create_connection", reached)
    monkeypatch.setattr(socket, "getaddrinfo", reached)
    yield attempts
    assert attempts == [], "a connection was attempted"


# ------------------------------------------------------------------ the host is the connection's


def test_a_url_the_parsers_read_differently_is_refused_where_urllib3_would_connect(no_network):
    client = boto3.client("sqs", endpoint_url=DISAGREEING_URL)

    with pytest.raises(RealAwsRefused, match=r"refusing to connect to 192\.0\.2\.2:9: not loopback"):
        client.list_queues()


def test_the_endpoint_check_reads_a_url_as_urllib3_does(no_network):
    assert not is_loopback_url(DISAGREEING_URL)
    with pytest.raises(RealAwsRefused, match="only loopback emulators"):
        use_local_endpoint(DISAGREEING_URL)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "::1", "localhost"])
def test_loopback_hosts_are_allowed(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    ["192.0.2.2", "0.0.0.0", "::", "localhost.", "localhost.example", "127.1", "2130706433", "[::1]", "",
     "::ffff:192.0.2.2"],
)
def test_anything_else_is_refused_without_being_resolved(host, no_network):
    assert not is_loopback_host(host)


def test_urllib_to_a_non_loopback_host_is_refused(no_network):
    with pytest.raises(RealAwsRefused, match=r"192\.0\.2\.4:8081: not loopback"):
        urllib.request.build_opener().open("http://192.0.2.4:8081/", timeout=1)


# ------------------------------------------------------------------ the layer's Confluent lookups (urllib)


@pytest.mark.parametrize("url", ["http://192.0.2.4:8081", "https://192.0.2.4"])
def test_a_confluent_registry_off_loopback_is_refused(url, no_network):
    registry = ConfluentSchemaRegistry(url)

    with pytest.raises(RealAwsRefused, match=r"192\.0\.2\.4:(8081|443): not loopback"):
        registry.schema_definition(1)


def test_a_confluent_lookup_through_an_environment_proxy_is_refused(monkeypatch, no_network):
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen builds its opener, and reads proxies, anew

    with pytest.raises(RealAwsRefused, match="proxies are refused"):
        ConfluentSchemaRegistry("http://127.0.0.1:8081").schema_definition(1)


# ------------------------------------------------------------------ proxies


@pytest.mark.parametrize(
    ("variable", "endpoint"),
    [("HTTP_PROXY", "http://127.0.0.1:1"), ("HTTPS_PROXY", "https://127.0.0.1:1"), ("http_proxy", "http://127.0.0.1:1")],
)
def test_a_proxy_from_the_environment_is_refused(variable, endpoint, monkeypatch, no_network):
    monkeypatch.setenv(variable, PROXY)
    client = boto3.client("sqs", endpoint_url=endpoint)

    with pytest.raises(RealAwsRefused, match=r"through the proxy at 192\.0\.2\.3:3128"):
        client.list_queues()


def test_a_proxy_in_botocore_config_is_refused(no_network):
    client = boto3.client("sqs", config=Config(proxies={"http": PROXY, "https": PROXY}))

    with pytest.raises(RealAwsRefused, match=r"through the proxy at 192\.0\.2\.3:3128"):
        client.list_queues()


def test_a_proxy_on_loopback_is_refused_too(monkeypatch, no_network):
    # It would forward the request wherever the request says.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")

    with pytest.raises(RealAwsRefused, match=r"through the proxy at 127\.0\.0\.1:3128"):
        boto3.client("sqs").list_queues()


def test_urllib_through_a_forwarding_proxy_on_loopback_is_refused_before_sending(no_network):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": "http://127.0.0.1:3128"}))

    with pytest.raises(RealAwsRefused, match=r"through the proxy at 127\.0\.0\.1:3128"):
        opener.open("http://192.0.2.4/", timeout=1)


def test_an_http_client_tunnel_is_refused(no_network):
    connection = http.client.HTTPSConnection("127.0.0.1", 3128, timeout=1)
    connection.set_tunnel("192.0.2.5", 443)

    with pytest.raises(RealAwsRefused, match=r"through the proxy at 127\.0\.0\.1:3128 to 192\.0\.2\.5:443"):
        connection.request("GET", "/")


@pytest.mark.parametrize("client", ["boto3", "urllib"])
def test_a_functions_proxy_environment_is_refused(client, monkeypatch, no_network):
    monkeypatch.setattr(urllib.request, "_opener", None)  # as in a fresh process: the function's urlopen reads it
    function = load_functions(Template.load(FIXTURES / "proxied.yaml"))["ProxiedFunction"]

    result = function.invoke({"client": client, "url": "http://127.0.0.1:1/"})

    assert result.function_error == "Unhandled"
    assert result.error_message.startswith("RealAwsRefused: refusing")
    assert "proxies are refused" in result.error_message


def test_a_proxy_that_no_proxy_bypasses_for_loopback_is_not_used(monkeypatch):
    # How a developer behind a proxy runs the tests: the emulator is reached directly.
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    reached: list[tuple] = []
    connect = socket.socket.connect

    def recorded_connect(sock: socket.socket, address: tuple) -> None:
        reached.append(address)
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recorded_connect)
    client = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{free_loopback_port()}",
                          config=Config(retries={"total_max_attempts": 1}))

    with pytest.raises(EndpointConnectionError):  # nothing listens there: the attempt is the point
        client.list_queues()

    assert reached and {address[0] for address in reached} == {"127.0.0.1"}


# ------------------------------------------------------------------ loopback still works


def test_requests_to_the_emulator_on_loopback_go_through(aws):
    boto3.client("sqs").create_queue(QueueName="guarded")
    assert boto3.client("sqs").list_queues()["QueueUrls"][0].endswith("/guarded")
    aws.reset()  # urllib, on loopback
