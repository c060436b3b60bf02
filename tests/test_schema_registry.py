"""Registry clients: Glue on moto (lookups, registration, compatibility) and Confluent REST on a local server."""

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from uuid import uuid4

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from support import definition

from tributary.emulator import free_loopback_port
from tributary_shared.avro_codec import RegistryDeserializer, canonical_definition, encode_confluent, parse_definition
from tributary_shared.errors import PoisonRecordError, TransientError
from tributary_shared.schema_registry import (
    ConfluentSchemaRegistry,
    GlueSchemaRegistry,
    IncompatibleSchemaError,
    SchemaRegistrationError,
    check_compatibility,
    secret_credentials,
)

PAYMENT_V1, PAYMENT_V2 = definition("payment_event_v1"), definition("payment_event_v2")
CUSTOMER_V1, CUSTOMER_V2 = definition("customer_v1"), definition("customer_v2")


def customer_with(*extra_fields: dict) -> str:
    schema = json.loads(CUSTOMER_V1)
    schema["fields"] += list(extra_fields)
    return canonical_definition(schema)


def no_sleep(_: float) -> None:
    pass


# ------------------------------------------------------------------------------------ Glue on moto


@pytest.fixture
def registry(aws) -> GlueSchemaRegistry:
    return GlueSchemaRegistry("tributary", boto3.client("glue"), sleep=no_sleep)


def test_first_use_creates_the_registry_and_schema_and_reuses_the_version(registry):
    version_id = registry.version_for("payment-event", PAYMENT_V1, compatibility="FULL")
    assert registry.version_for("payment-event", PAYMENT_V1) == version_id
    schema = registry.client.get_schema(SchemaId={"RegistryName": "tributary", "SchemaName": "payment-event"})
    assert (schema["Compatibility"], schema["DataFormat"]) == ("FULL", "AVRO")
    assert registry.schema_definition(version_id) == PAYMENT_V1


def test_a_compatible_new_version_is_registered(registry):
    v1 = registry.version_for("payment-event", PAYMENT_V1, compatibility="BACKWARD")
    v2 = registry.version_for("payment-event", PAYMENT_V2)
    assert v1 != v2
    assert registry.schema_definition(v2) == PAYMENT_V2


def test_an_incompatible_version_is_refused_naming_the_field(registry):
    registry.version_for("customer", CUSTOMER_V1, compatibility="BACKWARD")
    breaking = customer_with({"name": "email", "type": "string"})
    with pytest.raises(IncompatibleSchemaError, match="email") as refused:
        registry.version_for("customer", breaking)
    assert "reader_field_missing_default_value" in str(refused.value)
    latest = registry.client.get_schema(SchemaId={"RegistryName": "tributary", "SchemaName": "customer"})
    assert latest["LatestSchemaVersion"] == 1


def test_backward_all_checks_every_previous_version(registry):
    registry.version_for("customer", CUSTOMER_V1, compatibility="BACKWARD_ALL")
    registry.version_for("customer", CUSTOMER_V2)
    # Compatible with v2 (full_name has a default) but not with v1, which has no 'nickname'.
    v3 = customer_with({"name": "full_name", "type": ["null", "string"], "default": None},
                       {"name": "nickname", "type": "string"})
    with pytest.raises(IncompatibleSchemaError, match="nickname"):
        registry.version_for("customer", v3)


def test_disabled_and_no_auto_registration_refuse_new_versions(registry):
    registry.version_for("customer", CUSTOMER_V1, compatibility="DISABLED")
    with pytest.raises(SchemaRegistrationError, match="DISABLED"):
        registry.version_for("customer", CUSTOMER_V2)
    with pytest.raises(SchemaRegistrationError, match="auto-registration is off"):
        registry.version_for("other", CUSTOMER_V1, auto_register=False)
    with pytest.raises(SchemaRegistrationError, match="compatibility must be one of"):
        registry.version_for("customer", CUSTOMER_V1, compatibility="SIDEWAYS")


def test_unknown_schema_versions_are_poison_records(registry):
    registry.version_for("customer", CUSTOMER_V1)
    with pytest.raises(PoisonRecordError, match="EntityNotFoundException"):
        registry.schema_definition(uuid4())


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
    assert GlueSchemaRegistry("tributary", glue, sleep=delays.append).schema_definition(uuid4()) == CUSTOMER_V1
    assert glue.calls == 3 and len(delays) == 2


@pytest.mark.parametrize(
    "error",
    [client_error("ThrottlingException"), EndpointConnectionError(endpoint_url="http://127.0.0.1:1")],
    ids=["throttled", "unreachable"],
)
def test_a_registry_that_stays_down_is_a_transient_error(error):
    glue = FailingGlue(error, error, error)
    with pytest.raises(TransientError, match="registry"):
        GlueSchemaRegistry(client=glue, attempts=3, sleep=no_sleep).schema_definition(uuid4())
    assert glue.calls == 3


def test_missing_permissions_are_transient_and_not_retried():
    glue = FailingGlue(client_error("AccessDeniedException"))
    with pytest.raises(TransientError, match="AccessDeniedException"):
        GlueSchemaRegistry(client=glue, sleep=no_sleep).schema_definition(uuid4())
    assert glue.calls == 1


def test_a_pending_version_is_transient_and_a_deleted_one_poison():
    answers = {"PENDING": TransientError, "DELETING": PoisonRecordError, "FAILURE": PoisonRecordError}
    for status, error_class in answers.items():
        glue = FailingGlue()
        glue.get_schema_version = lambda status=status, **_: {"Status": status, "SchemaArn": ""}
        with pytest.raises(error_class, match=status):
            GlueSchemaRegistry(client=glue).schema_definition(uuid4())


# ------------------------------------------------------------------------------------ compatibility


def test_compatibility_modes_follow_the_direction_they_name():
    added_optional = CUSTOMER_V2
    removed_required = canonical_definition(
        {"type": "record", "name": "Customer", "namespace": "tributary.examples",
         "fields": [{"name": "first_name", "type": "string"}]}
    )
    check_compatibility(added_optional, [CUSTOMER_V1], "FULL")
    check_compatibility(removed_required, [CUSTOMER_V1], "BACKWARD")
    with pytest.raises(IncompatibleSchemaError, match=r"old schema cannot read new data.*last_name"):
        check_compatibility(removed_required, [CUSTOMER_V1], "FORWARD")
    check_compatibility(removed_required, [CUSTOMER_V1], "NONE")


def test_a_type_change_names_the_field():
    schema = json.loads(PAYMENT_V1)
    schema["fields"][3]["type"] = "int"
    with pytest.raises(IncompatibleSchemaError, match=r"field currency: type_mismatch") as refused:
        check_compatibility(canonical_definition(schema), [PAYMENT_V1], "BACKWARD")
    assert refused.value.problems


def test_removing_an_enum_symbol_is_not_backward_compatible():
    schema = json.loads(PAYMENT_V1)
    schema["fields"][4]["type"]["symbols"].remove("REFUNDED")
    with pytest.raises(IncompatibleSchemaError, match=r"status.*missing_enum_symbols"):
        check_compatibility(canonical_definition(schema), [PAYMENT_V1], "BACKWARD")


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


def registry_at(url: str, **options) -> ConfluentSchemaRegistry:
    return ConfluentSchemaRegistry(url, auth=lambda: ("reader", "s3cret"), sleep=no_sleep, **options)


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
    with pytest.raises(ValueError, match="http"):
        ConfluentSchemaRegistry("file:///etc/passwd")


def test_from_env_reads_confluent_credentials_from_secrets_manager(aws, confluent):
    boto3.client("secretsmanager").create_secret(
        Name="registry-auth", SecretString=json.dumps({"username": "reader", "password": "s3cret"})
    )
    deserializer = RegistryDeserializer.from_env(
        {"CONFLUENT_REGISTRY_URL": confluent, "CONFLUENT_REGISTRY_AUTH_SECRET": "registry-auth"}
    )
    record = {"first_name": "Ada", "last_name": "Lovelace", "full_name": None}
    assert deserializer(encode_confluent(record, parse_definition(CUSTOMER_V2), 7)) == record


def test_plain_secret_strings_are_user_colon_password(aws):
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="plain", SecretString="reader:pa:ss")
    secrets.create_secret(Name="broken", SecretString="no separator")
    assert secret_credentials("plain") == ("reader", "pa:ss")
    with pytest.raises(ValueError, match="user:password"):
        secret_credentials("broken")


def test_a_secret_that_cannot_be_read_is_transient(confluent):
    def failing() -> tuple[str, str]:
        raise client_error("AccessDeniedException")

    with pytest.raises(TransientError, match="credentials"):
        ConfluentSchemaRegistry(confluent, auth=failing).schema_definition(7)

