"""Schema registry clients: AWS Glue Schema Registry (primary) and a Confluent-compatible REST registry.

Consumers look writer schemas up by the id a record's header carries: a Glue schema-version UUID
or a Confluent integer id. A lookup that fails for a reason that may pass (throttling, an outage,
a timeout, missing permissions) is retried a few times and then raised as `TransientError`, so
the batch is retried rather than the record discarded; a version the registry does not know is
a `PoisonRecordError`. Producers find or register their schema's version under a compatibility
mode, checked on the client first with the Apache Avro library's compatibility checker, because
a registry emulator does not enforce compatibility and a breaking change must not ship.

Lambda's consume path imports only the standard library from here; boto3 is imported when the
Glue client is first needed, and the `avro` package only by the producer-side check.
"""

import base64
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit
from uuid import UUID

from tributary_shared.errors import PoisonRecordError, TransientError

if TYPE_CHECKING:
    import urllib.error

COMPATIBILITY_MODES = ("NONE", "DISABLED", "BACKWARD", "BACKWARD_ALL", "FORWARD", "FORWARD_ALL", "FULL", "FULL_ALL")
GLUE_TRANSIENT_ERRORS = frozenset(
    {"ThrottlingException", "InternalServiceException", "ConcurrentModificationException", "ServiceUnavailable"}
)
GLUE_PERMANENT_ERRORS = frozenset({"EntityNotFoundException", "InvalidInputException"})
CONFLUENT_ACCEPT = "application/vnd.schemaregistry.v1+json, application/json"
# The registry's error_code in a 404 body for "schema not found"; any other 404 (a wrong base
# URL, a proxy's page) says nothing about the record, so it is retried rather than discarded.
CONFLUENT_SCHEMA_NOT_FOUND = 40403

Sleep = Callable[[float], None]


class SchemaRegistrationError(Exception):
    """A producer's schema could not be found or registered; the message says why."""


class IncompatibleSchemaError(SchemaRegistrationError):
    """The new schema breaks the compatibility mode; `problems` name the offending fields."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = list(problems)


def _backoff(attempt: int, base: float = 0.1, cap: float = 2.0) -> float:
    """Full-jitter exponential backoff before retry number `attempt` (1-based)."""
    # Imported here: this module must not load boto3 before a registry is actually called.
    from tributary_shared.aws_clients import full_jitter_backoff

    return full_jitter_backoff(attempt, base, cap)


# ------------------------------------------------------------------------------------------ Glue


class GlueSchemaRegistry:
    """One Glue registry: writer-schema lookups by version UUID, and producer registration.

    `registry_name` is the registry producers register in; for lookups it is also an allow-list
    (a version id from another registry is refused). `client` defaults to a boto3 Glue client
    whose own retries are off, so `attempts` alone bounds the time a lookup may take.
    """

    def __init__(
        self,
        registry_name: str | None = None,
        client: Any = None,
        *,
        attempts: int = 3,
        sleep: Sleep = time.sleep,
        pending_polls: int = 10,
    ) -> None:
        self.registry_name = registry_name
        self._client = client
        self.attempts = attempts
        self.sleep = sleep
        self.pending_polls = pending_polls

    @property
    def client(self) -> Any:
        if self._client is None:
            from tributary_shared import aws_clients

            self._client = aws_clients.client("glue")
        return self._client

    # ------------------------------------------------------------------ consumers

    def schema_definition(self, version_id: UUID) -> str:
        """The Avro definition of schema version `version_id`; Poison/TransientError on failure."""
        response = self._call("get_schema_version", f"schema version {version_id}", SchemaVersionId=str(version_id))
        status = response.get("Status")
        if status == "PENDING":
            raise TransientError(f"schema version {version_id} is still PENDING its compatibility check")
        if status != "AVAILABLE":
            raise PoisonRecordError(f"schema version {version_id} is {status}, not AVAILABLE")
        if response.get("DataFormat", "AVRO") != "AVRO":
            raise PoisonRecordError(f"schema version {version_id} is {response['DataFormat']}, not AVRO")
        registry = _registry_of(response.get("SchemaArn", ""))
        if self.registry_name and registry != self.registry_name:
            raise PoisonRecordError(
                f"schema version {version_id} belongs to registry {registry!r}, not {self.registry_name!r}"
            )
        return str(response["SchemaDefinition"])

    def _call(self, operation: str, subject: str, **params: Any) -> dict[str, Any]:
        """Call a Glue operation, retrying what may pass; map failures to the record error classes."""
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(1, self.attempts + 1):
            try:
                return dict(getattr(self.client, operation)(**params))
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "Unknown")
                if code in GLUE_PERMANENT_ERRORS:
                    raise PoisonRecordError(f"registry has no {subject}: {code}") from error
                if code not in GLUE_TRANSIENT_ERRORS or attempt == self.attempts:
                    raise TransientError(f"registry lookup of {subject} failed: {code}") from error
            except BotoCoreError as error:
                if attempt == self.attempts:
                    raise TransientError(f"registry unreachable looking up {subject}: {error}") from error
            self.sleep(_backoff(attempt))
        raise AssertionError("unreachable: the loop returns or raises")

    # ------------------------------------------------------------------ producers

    def version_for(
        self,
        schema_name: str,
        definition: str,
        *,
        compatibility: str = "BACKWARD",
        auto_register: bool = True,
    ) -> UUID:
        """The version id of `definition` under `schema_name`, registering it if allowed.

        A new schema is created under `compatibility`; a new version of an existing schema is
        checked on the client against the schema's own compatibility mode before registration.
        """
        if compatibility not in COMPATIBILITY_MODES:
            raise SchemaRegistrationError(f"compatibility must be one of {', '.join(COMPATIBILITY_MODES)}")
        schema = self._existing_schema(schema_name)
        if schema is None:
            if not auto_register:
                raise SchemaRegistrationError(
                    f"schema {schema_name!r} is not in registry {self._registry()!r} and auto-registration is off"
                )
            return self._create_schema(schema_name, definition, compatibility)
        found = self._version_by_definition(schema_name, definition)
        if found:
            return found
        if not auto_register:
            raise SchemaRegistrationError(
                f"this definition is not a version of schema {schema_name!r} and auto-registration is off"
            )
        mode = str(schema.get("Compatibility", "NONE"))
        previous = self._previous_definitions(schema_name, int(schema["LatestSchemaVersion"]), mode)
        check_compatibility(definition, previous, mode)
        return self._register_version(schema_name, definition)

    def _registry(self) -> str:
        if not self.registry_name:
            raise SchemaRegistrationError("a registry name is needed to find or register schemas")
        return self.registry_name

    def _schema_id(self, schema_name: str) -> dict[str, str]:
        return {"RegistryName": self._registry(), "SchemaName": schema_name}

    def _producer_call(self, operation: str, **params: Any) -> dict[str, Any] | None:
        """A Glue call for the producer; None when the entity does not exist."""
        from botocore.exceptions import ClientError

        try:
            return dict(getattr(self.client, operation)(**params))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "EntityNotFoundException":
                return None
            raise SchemaRegistrationError(f"Glue {operation} failed: {error}") from error

    def _existing_schema(self, schema_name: str) -> dict[str, Any] | None:
        return self._producer_call("get_schema", SchemaId=self._schema_id(schema_name))

    def _version_by_definition(self, schema_name: str, definition: str) -> UUID | None:
        found = self._producer_call(
            "get_schema_by_definition", SchemaId=self._schema_id(schema_name), SchemaDefinition=definition
        )
        if found and found.get("Status") == "AVAILABLE":
            return UUID(found["SchemaVersionId"])
        return None

    def _previous_definitions(self, schema_name: str, latest: int, mode: str) -> list[str]:
        """Definitions the new version must be compatible with: the latest, or all for *_ALL modes."""
        if mode in ("NONE", "DISABLED"):
            return []
        numbers = range(1, latest + 1) if mode.endswith("_ALL") else [latest]
        definitions = []
        for number in numbers:
            version = self._producer_call(
                "get_schema_version",
                SchemaId=self._schema_id(schema_name),
                SchemaVersionNumber={"VersionNumber": number},
            )
            if version:
                definitions.append(str(version["SchemaDefinition"]))
        return definitions

    def _create_schema(self, schema_name: str, definition: str, compatibility: str) -> UUID:
        registry = self._registry()
        if self._producer_call("get_registry", RegistryId={"RegistryName": registry}) is None:
            self._producer_call("create_registry", RegistryName=registry)
        created = self._producer_call(
            "create_schema",
            RegistryId={"RegistryName": registry},
            SchemaName=schema_name,
            DataFormat="AVRO",
            Compatibility=compatibility,
            SchemaDefinition=definition,
        )
        if created is None:
            raise SchemaRegistrationError(f"registry {registry!r} vanished while creating {schema_name!r}")
        return self._await_available(UUID(created["SchemaVersionId"]), str(created.get("SchemaVersionStatus")))

    def _register_version(self, schema_name: str, definition: str) -> UUID:
        registered = self._producer_call(
            "register_schema_version", SchemaId=self._schema_id(schema_name), SchemaDefinition=definition
        )
        if registered is None:
            raise SchemaRegistrationError(f"schema {schema_name!r} vanished while registering a version")
        return self._await_available(UUID(registered["SchemaVersionId"]), str(registered.get("Status")))

    def _await_available(self, version_id: UUID, status: str) -> UUID:
        """Glue checks compatibility asynchronously: wait for the verdict on a new version."""
        for attempt in range(self.pending_polls):
            if status == "AVAILABLE":
                return version_id
            if status != "PENDING":
                raise SchemaRegistrationError(f"registry refused schema version {version_id}: status {status}")
            self.sleep(_backoff(attempt + 1, base=0.5))
            response = self._producer_call("get_schema_version", SchemaVersionId=str(version_id))
            status = str((response or {}).get("Status", "DELETED"))
        raise SchemaRegistrationError(f"schema version {version_id} still {status} after {self.pending_polls} polls")


def _registry_of(schema_arn: str) -> str:
    """arn:aws:glue:region:account:schema/REGISTRY/SCHEMA -> REGISTRY."""
    resource = schema_arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) == 3 else ""


# ------------------------------------------------------------------------------- compatibility


def check_compatibility(new_definition: str, previous: Sequence[str], mode: str) -> None:
    """Refuse `new_definition` if it breaks `mode` against `previous` (oldest first).

    BACKWARD: the new schema reads data written with the previous ones; FORWARD: the previous
    schemas read data written with the new one; FULL: both. `previous` holds the latest version
    for the plain modes and every version for the *_ALL modes. Uses the Apache Avro library's
    ReaderWriterCompatibilityChecker; raises IncompatibleSchemaError naming each offending field.
    """
    if mode == "DISABLED":
        raise SchemaRegistrationError("the schema's compatibility mode is DISABLED: no new versions may be added")
    if mode == "NONE" or not previous:
        return
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    new = avro.schema.parse(new_definition)
    problems: list[str] = []
    for number, old_definition in enumerate(previous, start=1):
        old = avro.schema.parse(old_definition)
        directions = []
        if mode.startswith(("BACKWARD", "FULL")):
            directions.append(("new schema cannot read old data", new, old, json.loads(new_definition)))
        if mode.startswith(("FORWARD", "FULL")):
            directions.append(("old schema cannot read new data", old, new, json.loads(old_definition)))
        for what, reader, writer, reader_json in directions:
            result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
            if result.compatibility is SchemaCompatibilityType.incompatible:
                # The checker's merged result also carries the root "/" of its compatible parts.
                located = [loc for loc in result.locations if loc != "/"] or ["/"]
                fields = ", ".join(sorted({_field_path(reader_json, loc) for loc in located}))
                kinds = ", ".join(sorted({kind.value for kind in result.incompatibilities}))
                details = "; ".join(sorted(result.messages))
                problems.append(f"{what} (vs previous #{number}) at field {fields}: {kinds} ({details})")
    if problems:
        raise IncompatibleSchemaError(f"schema is not {mode} compatible: " + " | ".join(problems), problems)


def _field_path(schema: Any, location: str) -> str:
    """Turn the checker's '/fields/3/type' location into the dotted field names it points at."""
    names: list[str] = []
    node = schema
    tokens = [token for token in location.split("/") if token]
    for index, token in enumerate(tokens):
        if isinstance(node, dict) and token == "fields":
            continue
        if isinstance(node, dict) and isinstance(node.get("fields"), list) and token.isdigit():
            node = node["fields"][int(token)]
            names.append(str(node.get("name")))
        elif isinstance(node, dict) and token in ("type", "items", "values"):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        elif index == len(tokens) - 1 and token in ("name", "size", "symbols"):
            names.append(f"<{token}>")
    return ".".join(names) or "<record>"


# ----------------------------------------------------------------------------------- Confluent

AuthProvider = Callable[[], tuple[str, str] | None]


class ConfluentSchemaRegistry:
    """A Confluent-compatible registry's REST API: writer schemas by integer id.

    `auth` returns (user, password) for HTTP basic auth, or None; it is called once, on the first
    request, so a secret is fetched only by processes that meet a Confluent-framed record.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthProvider | None = None,
        timeout: float = 5.0,
        attempts: int = 3,
        sleep: Sleep = time.sleep,
    ) -> None:
        scheme = urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"Confluent registry URL must be http(s), got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._authorization: str | None = None
        self._auth_loaded = False
        self.timeout = timeout
        self.attempts = attempts
        self.sleep = sleep

    def schema_definition(self, schema_id: int) -> str:
        """GET /schemas/ids/{id} -> the Avro definition; Poison/TransientError on failure."""
        body = self._get(f"/schemas/ids/{schema_id}", f"schema id {schema_id}")
        schema_type = body.get("schemaType", "AVRO")
        if schema_type != "AVRO":
            raise PoisonRecordError(f"schema id {schema_id} is {schema_type}, not AVRO")
        definition = body.get("schema")
        if not isinstance(definition, str):
            raise TransientError(f"registry answer for schema id {schema_id} has no 'schema' string")
        return definition

    def _headers(self) -> dict[str, str]:
        if not self._auth_loaded:
            try:
                credentials = self._auth() if self._auth else None
            except Exception as error:  # any failure to read the secret may pass: retry the batch
                raise TransientError(f"could not load the registry's credentials: {error}") from error
            if credentials:
                token = base64.b64encode(":".join(credentials).encode()).decode()
                self._authorization = f"Basic {token}"
            self._auth_loaded = True
        headers = {"Accept": CONFLUENT_ACCEPT}
        if self._authorization:
            headers["Authorization"] = self._authorization
        return headers

    def _get(self, path: str, subject: str) -> dict[str, Any]:
        # Imported on the first Confluent lookup: urllib.request costs a cold start ~20 ms.
        import http.client
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.base_url + path, headers=self._headers())
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _json_object(response.read(), subject)
            except urllib.error.HTTPError as error:
                retry = error.code == 429 or error.code >= 500
                if not retry or attempt == self.attempts:
                    _raise_http_error(error, subject)
            # URLError, timeouts and resets are OSErrors; a garbled or cut-off answer is an HTTPException.
            except (OSError, http.client.HTTPException) as error:
                if attempt == self.attempts:
                    raise TransientError(
                        f"registry unreachable (or not answering HTTP) looking up {subject}: "
                        f"{type(error).__name__}: {error}"
                    ) from error
            self.sleep(_backoff(attempt))
        raise AssertionError("unreachable: the loop returns or raises")


def _json_object(raw: bytes, subject: str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise TransientError(f"registry answer for {subject} is not JSON") from error
    if not isinstance(body, dict):
        raise TransientError(f"registry answer for {subject} is not a JSON object")
    return body


def _raise_http_error(error: "urllib.error.HTTPError", subject: str) -> NoReturn:
    if error.code == 404:
        error_code = _confluent_error_code(error)
        if error_code == CONFLUENT_SCHEMA_NOT_FOUND:
            raise PoisonRecordError(f"registry has no {subject} (HTTP 404, error_code {error_code})") from error
        raise TransientError(
            f"registry lookup of {subject} got HTTP 404 without error_code {CONFLUENT_SCHEMA_NOT_FOUND} "
            f"(error_code {error_code}): is the registry URL right?"
        ) from error
    if error.code in (401, 403) or error.code == 429 or error.code >= 500:
        raise TransientError(f"registry lookup of {subject} failed: HTTP {error.code}") from error
    raise PoisonRecordError(f"registry refused the lookup of {subject}: HTTP {error.code}") from error


def _confluent_error_code(error: "urllib.error.HTTPError") -> int | None:
    """The `error_code` of a Confluent error body ({"error_code": 40403, "message": ...}), if any."""
    import http.client

    try:
        body = json.loads(error.read(64 * 1024))
    except (ValueError, OSError, http.client.HTTPException):
        return None
    code = body.get("error_code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


def secret_credentials(secret_id: str, client: Any = None) -> tuple[str, str]:
    """Basic-auth credentials from a Secrets Manager secret: JSON {"username","password"} or "user:pass"."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    secret = client.get_secret_value(SecretId=secret_id)["SecretString"]
    if secret.lstrip().startswith("{"):
        fields = json.loads(secret)
        return str(fields["username"]), str(fields["password"])
    user, separator, password = secret.partition(":")
    if not separator:
        raise ValueError(f"secret {secret_id} must be JSON with username/password or 'user:password'")
    return user, password
