"""Writer-schema lookups: Glue (failures mapped to record errors) and Confluent REST on a local server.

Registration and compatibility checks are the producer's: `test_schema_registration.py`.
"""

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from uuid import uuid4

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from support import definition

from tributary.avro_encoding import encode_confluent
from tributary.emulator import free_loopback_port
from tributary_shared.avro_codec import RegistryDeserializer
from tributary_shared.avro_schemas import parse_definition
from tributary_shared.errors import ConfigurationError, PoisonRecordError, TransientError
from tributary_shared.retries import RetryPolicy
from tributary_shared.schema_registry import (
    LOOKUP_RETRY,
    ConfluentSchemaRegistry,
    GlueSchemaRegistry,
    RegistrySettings,
    secret_credentials,
)

PAYMENT_V1, PAYMENT_V2 = definition("payment_event_v1"), definition("payment_event_v2")
CUSTOMER_V1, CUSTOMER_V2 = definition("customer_v1"), definition("customer_v2")


def no_sleep(_: float) -> None:
    pass


def lookups(*, attempts: int = 3, sleep: Callable[[float], None] = no_sleep) -> RetryPolicy:
    return replace(LOOKUP_RETRY, max_attempts=attempts, sleep=sleep)


# ------------------------------------------------------------------------------------ Glue failures


class FailingGlue:
    """A Glue client whose get_schema_version raises the queued errors, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def get_schema_version(self, SchemaVersionId: str) -> dict:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"Status": "AVAILABLE", "DataFormat": "AVRO", "SchemaDefinition": CUSTOMER_V1,
                "SchemaArn": "arn:aws:glue:us-east-1:123456789012:schema/tributary/customer"}


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetSchemaVersion")


def test_throttling_is_retried_then_succeeds():
    glue = FailingGlue(client_error("ThrottlingException"), client_error("InternalServiceException"))
    delays: list[float] = []
    registry = GlueSchemaRegistry("tributary", glue, retry=lookups(sleep=delays.append))
    assert registry.schema_definition(uuid4()) == CUSTOMER_V1
    assert glue.calls == 3 and len(delays) == 2


@pytest.mark.parametrize(
    "error",
    [client_error("ThrottlingException"), EndpointConnectionError(endpoint_url="http://127.0.0.1:1")],
    ids=["throttled", "unreachable"],
)
def test_a_registry_that_stays_down_is_a_transient_error(error):
    glue = FailingGlue(error, error, error)
    with pytest.raises(TransientError, match="registry"):
        GlueSchemaRegistry(client=glue, retry=lookups(attempts=3)).schema_definition(uuid4())
    assert glue.calls == 3


def test_missing_permissions_are_transient_and_not_retried():
    glue = FailingGlue(client_error("AccessDeniedException"))
    with pytest.raises(TransientError, match="AccessDeniedException"):
        GlueSchemaRegistry(client=glue, retry=lookups()).schema_definition(uuid4())
    assert glue.calls == 1


def test_a_pending_version_is_transient_and_a_deleted_one_poison():
    answers = {"PENDING": TransientError, "DELETING": PoisonRecordError, "FAILURE": PoisonRecordError}
    for status, error_class in answers.items():
        glue = FailingGlue()
        glue.get_schema_version = lambda status=status, **_: {"Status": status, "SchemaArn": ""}
        with pytest.raises(error_class, match=status):
            GlueSchemaRegistry(client=glue).schema_definition(uuid4())


# ------------------------------------------------------------------------------------ Confluent REST


class ConfluentHandler(BaseHTTPRequestHandler):
    schemas: ClassVar[dict[int, dict]] = {}
    failures: ClassVar[list[int]] = []
    credentials = "Basic " + base64.b64encode(b"reader:s3cret").decode()
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path.startswith("/garbled/"):
            self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
        elif not self.path.startswith("/schemas/"):  # a wrong base URL: the server's own 404 page
            self._answer_html(404, b"<html><body>Not Found</body></html>")
        elif self.failures:
            self._answer(self.failures.pop(0), {"error_code": 50001, "message": "busy"})
        elif self.headers.get("Authorization") != self.credentials:
            self._answer(401, {"error_code": 401, "message": "Unauthorized"})
        elif self.path.startswith("/schemas/ids/") and int(self.path.rsplit("/", 1)[1]) in self.schemas:
            self._answer(200, self.schemas[int(self.path.rsplit("/", 1)[1])])
        else:
            self._answer(404, {"error_code": 40403, "message": "Schema not found"})

    def _answer(self, status: int, body: dict) -> None:
        self._answer_html(status, json.dumps(body).encode(), "application/vnd.schemaregistry.v1+json")

    def _answer_html(self, status: int, payload: bytes, content_type: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def confluent() -> Iterator[str]:
    ConfluentHandler.schemas = {
        7: {"schema": CUSTOMER_V2},
        8: {"schema": "syntax = 'proto3';", "schemaType": "PROTOBUF"},
    }
    ConfluentHandler.failures = []
    ConfluentHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ConfluentHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def registry_at(url: str, *, attempts: int = 3, **options) -> ConfluentSchemaRegistry:
    return ConfluentSchemaRegistry(url, auth=lambda: ("reader", "s3cret"), retry=lookups(attempts=attempts), **options)


def test_confluent_schema_by_id_with_basic_auth(confluent):
    assert registry_at(confluent).schema_definition(7) == CUSTOMER_V2
    assert ConfluentHandler.requests == ["/schemas/ids/7"]


def test_confluent_failures_map_to_record_errors(confluent):
    with pytest.raises(PoisonRecordError, match=r"schema id 99.*404, error_code 40403"):
        registry_at(confluent).schema_definition(99)
    with pytest.raises(PoisonRecordError, match="PROTOBUF"):
        registry_at(confluent).schema_definition(8)
    with pytest.raises(TransientError, match="HTTP 401"):
        ConfluentSchemaRegistry(confluent, auth=lambda: ("reader", "wrong")).schema_definition(7)


def test_a_404_that_is_not_schema_not_found_is_transient(confluent):
    with pytest.raises(TransientError, match=r"HTTP 404 without error_code 40403.*registry URL"):
        registry_at(confluent + "/wrong-prefix").schema_definition(7)


def test_a_garbled_answer_is_retried_then_transient(confluent):
    with pytest.raises(TransientError, match=r"unreachable.*NOT HTTP"):
        registry_at(confluent + "/garbled", attempts=2).schema_definition(7)
    assert len(ConfluentHandler.requests) == 2


def test_confluent_server_errors_are_retried_then_transient(confluent):
    ConfluentHandler.failures = [503, 429]
    assert registry_at(confluent).schema_definition(7) == CUSTOMER_V2
    ConfluentHandler.failures = [503, 503, 503]
    with pytest.raises(TransientError, match="HTTP 503"):
        registry_at(confluent, attempts=3).schema_definition(7)


def test_an_unreachable_confluent_registry_is_transient():
    with pytest.raises(TransientError, match="unreachable"):
        registry_at(f"http://127.0.0.1:{free_loopback_port()}", timeout=1).schema_definition(7)


def test_confluent_urls_must_be_http():
    with pytest.raises(ConfigurationError, match="http"):
        ConfluentSchemaRegistry("file:///etc/passwd")


def test_the_settings_read_confluent_credentials_from_secrets_manager(aws, confluent):
    boto3.client("secretsmanager").create_secret(
        Name="registry-auth", SecretString=json.dumps({"username": "reader", "password": "s3cret"})
    )
    settings = RegistrySettings.from_env(
        {"CONFLUENT_REGISTRY_URL": confluent, "CONFLUENT_REGISTRY_AUTH_SECRET": "registry-auth"}
    )
    deserializer = RegistryDeserializer.from_settings(settings)
    record = {"first_name": "Ada", "last_name": "Lovelace", "full_name": None}
    assert deserializer(encode_confluent(record, parse_definition(CUSTOMER_V2), 7)) == record


def test_plain_secret_strings_are_user_colon_password(aws):
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="plain", SecretString="reader:pa:ss")
    secrets.create_secret(Name="broken", SecretString="no separator")
    assert secret_credentials("plain") == ("reader", "pa:ss")
    with pytest.raises(ConfigurationError, match="user:password"):
        secret_credentials("broken")


def test_a_secret_that_cannot_be_read_is_transient(confluent):
    def failing() -> tuple[str, str]:
        raise client_error("AccessDeniedException")

    with pytest.raises(TransientError, match="credentials"):
        ConfluentSchemaRegistry(confluent, auth=failing).schema_definition(7)



@pytest.mark.parametrize(
    "url",
    ["http://registry.example.com:8081", "http://192.0.2.4:8081", "HTTP://192.0.2.4",
     "http://127.0.0.1@192.0.2.4/", "http://192.0.2.2:9\\@127.0.0.1/"],
)  # fmt: skip
def test_credentials_are_refused_over_plain_http_off_loopback(url):
    fetched = []
    with pytest.raises(ConfigurationError, match="Confluent registry"):
        ConfluentSchemaRegistry(url, auth=lambda: fetched.append(True) or ("reader", "s3cret"))
    assert fetched == []  # the secret is not even read


@pytest.mark.parametrize(
    "url", ["https://registry.example.com", "http://127.0.0.1:8081", "http://localhost:8081", "http://[::1]:8081"]
)
def test_credentials_go_over_https_or_to_loopback(url):
    ConfluentSchemaRegistry(url, auth=lambda: ("reader", "s3cret"))


def test_a_registry_without_credentials_may_be_plain_http():
    ConfluentSchemaRegistry("http://registry.example.com:8081")


def test_the_settings_refuse_a_secret_for_a_plain_http_registry():
    settings = RegistrySettings.from_env(
        {"CONFLUENT_REGISTRY_URL": "http://registry.example.com:8081", "CONFLUENT_REGISTRY_AUTH_SECRET": "auth"}
    )
    with pytest.raises(ConfigurationError, match="https only"):
        ConfluentSchemaRegistry.from_settings(settings)
