"""Writer-schema lookups: the AWS Glue Schema Registry and a Confluent-compatible REST registry.

Consumers look writer schemas up by the id a record's header carries: a Glue schema-version UUID
or a Confluent integer id. A lookup that fails for a reason that may pass (throttling, an outage,
a timeout, missing permissions) is retried a few times and then raised as `TransientError`, so
the batch is retried rather than the record discarded; a version the registry does not know is
a `PoisonRecordError`. Lookups are made from inside a record's decoding, where no deadline is at
hand: they are bounded by their attempts, and each attempt by its client's timeouts.

Registering schemas and checking their compatibility is the producer's, in the development package
(`tributary.schema_registration`). Importing this module loads only the standard library: boto3 is
imported when the Glue client is first needed, urllib when a Confluent registry is first asked.
"""

import base64
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit
from uuid import UUID

from tributary_shared.errors import ConfigurationError, PoisonRecordError, TransientError
from tributary_shared.loopback import is_loopback_host
from tributary_shared.retries import NO_DEADLINE, RetryPolicy
from tributary_shared.settings import Environ, bounded_int_env, optional_env

if TYPE_CHECKING:
    import urllib.error

GLUE_TRANSIENT_ERRORS = frozenset(
    {"ThrottlingException", "InternalServiceException", "ConcurrentModificationException", "ServiceUnavailable"}
)
GLUE_PERMANENT_ERRORS = frozenset({"EntityNotFoundException", "InvalidInputException"})
CONFLUENT_ACCEPT = "application/vnd.schemaregistry.v1+json, application/json"
# The registry's error_code in a 404 body for "schema not found"; any other 404 (a wrong base
# URL, a proxy's page) says nothing about the record, so it is retried rather than discarded.
CONFLUENT_SCHEMA_NOT_FOUND = 40403
CONFLUENT_TIMEOUT_S = 5.0
DEFAULT_CACHE_SIZE = 1000
# Three calls, the first retry after up to 0.2 s.
LOOKUP_RETRY = RetryPolicy(base_s=0.2, cap_s=2.0, max_attempts=3)

AuthProvider = Callable[[], tuple[str, str] | None]


@dataclass(frozen=True)
class RegistrySettings:
    """Where writer schemas come from and how records are read; every variable is optional.

    GLUE_REGISTRY_NAME             only accept writer schemas from this Glue registry
    CONFLUENT_REGISTRY_URL         base URL of a Confluent-compatible registry (for 0x00 records)
    CONFLUENT_REGISTRY_AUTH_SECRET Secrets Manager secret id holding basic-auth credentials
                                   ({"username": ..., "password": ...} or "user:password")
    READER_SCHEMA                  Avro schema JSON to project every record onto
    SCHEMA_CACHE_SIZE              writer schemas kept per framing (default 1000)

    The URL and the reader schema are checked when the codec is built, at the first framed record,
    so a function that only ever sees JSON never loads Avro.
    """

    glue_registry_name: str | None = None
    confluent_url: str | None = None
    confluent_auth_secret: str | None = None
    reader_schema: str | None = None
    cache_size: int = DEFAULT_CACHE_SIZE

    @classmethod
    def from_env(cls, environ: Environ | None = None) -> "RegistrySettings":
        return cls(
            glue_registry_name=optional_env("GLUE_REGISTRY_NAME", environ=environ),
            confluent_url=optional_env("CONFLUENT_REGISTRY_URL", environ=environ),
            confluent_auth_secret=optional_env("CONFLUENT_REGISTRY_AUTH_SECRET", environ=environ),
            reader_schema=optional_env("READER_SCHEMA", environ=environ),
            cache_size=bounded_int_env("SCHEMA_CACHE_SIZE", DEFAULT_CACHE_SIZE, 1, sys.maxsize, environ),
        )


# ------------------------------------------------------------------------------------------ Glue


class GlueSchemaRegistry:
    """Writer-schema lookups by version UUID in Glue.

    `registry_name`, when given, is an allow-list: a version id from another registry is refused.
    `client` defaults to a toolkit Glue client, whose own retries are off, so `retry` alone bounds
    the time a lookup may take.
    """

    def __init__(
        self, registry_name: str | None = None, client: Any = None, *, retry: RetryPolicy = LOOKUP_RETRY
    ) -> None:
        self.registry_name = registry_name
        self._client = client
        self.retry = retry

    @property
    def client(self) -> Any:
        if self._client is None:
            from tributary_shared import aws_clients  # boto3, loaded by the first Glue lookup only

            self._client = aws_clients.client("glue")
        return self._client

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
        registry = registry_of(response.get("SchemaArn", ""))
        if self.registry_name and registry != self.registry_name:
            raise PoisonRecordError(
                f"schema version {version_id} belongs to registry {registry!r}, not {self.registry_name!r}"
            )
        return str(response["SchemaDefinition"])

    def _call(self, operation: str, subject: str, **params: Any) -> dict[str, Any]:
        """Call a Glue operation, retrying what may pass; map failures to the record error classes."""
        from botocore.exceptions import BotoCoreError, ClientError

        calls = 0
        while True:
            calls += 1
            try:
                return dict(getattr(self.client, operation)(**params))
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "Unknown")
                if code in GLUE_PERMANENT_ERRORS:
                    raise PoisonRecordError(f"registry has no {subject}: {code}") from error
                failure, cause = TransientError(f"registry lookup of {subject} failed: {code}"), error
                if code not in GLUE_TRANSIENT_ERRORS:
                    raise failure from cause
            except BotoCoreError as error:
                failure, cause = TransientError(f"registry unreachable looking up {subject}: {error}"), error
            if not self.retry.wait_before_retry(calls, NO_DEADLINE):
                raise failure from cause


def registry_of(schema_arn: str) -> str:
    """arn:aws:glue:region:account:schema/REGISTRY/SCHEMA -> REGISTRY."""
    resource = schema_arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) == 3 else ""


# ----------------------------------------------------------------------------------- Confluent


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
        timeout: float = CONFLUENT_TIMEOUT_S,
        retry: RetryPolicy = LOOKUP_RETRY,
    ) -> None:
        scheme = urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ConfigurationError(f"Confluent registry URL must be http(s), got {base_url!r}")
        if auth is not None and scheme == "http" and not is_loopback_host(_connection_host(base_url)):
            # Basic auth is the password itself, readable by anyone on the path: only TLS, or loopback, carries it.
            raise ConfigurationError(
                f"Confluent registry credentials go over https only (or to loopback): {base_url!r} is plain http"
            )
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._authorization: str | None = None
        self._auth_loaded = False
        self.timeout = timeout
        self.retry = retry

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> "ConfluentSchemaRegistry":
        """The registry at CONFLUENT_REGISTRY_URL, with the credentials of its secret, if one is named."""
        if not settings.confluent_url:
            raise ConfigurationError("no Confluent registry is configured: set CONFLUENT_REGISTRY_URL")
        secret_id = settings.confluent_auth_secret
        return cls(settings.confluent_url, auth=(lambda: secret_credentials(secret_id)) if secret_id else None)

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
        calls = 0
        while True:
            calls += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _json_object(response.read(), subject)
            except urllib.error.HTTPError as error:
                if not (error.code == 429 or error.code >= 500):
                    _raise_http_error(error, subject)
                cause: Exception = error
            # URLError, timeouts and resets are OSErrors; a garbled or cut-off answer is an HTTPException.
            except (OSError, http.client.HTTPException) as error:
                cause = error
            if not self.retry.wait_before_retry(calls, NO_DEADLINE):
                if isinstance(cause, urllib.error.HTTPError):
                    _raise_http_error(cause, subject)
                raise TransientError(
                    f"registry unreachable (or not answering HTTP) looking up {subject}: "
                    f"{type(cause).__name__}: {cause}"
                ) from cause


def _connection_host(url: str) -> str:
    """The host urllib will connect to for `url`, as urllib and http.client read it (never resolved)."""
    import http.client  # here, not at the top: only a registry with credentials over plain http gets here
    import urllib.request

    try:
        return http.client.HTTPConnection(urllib.request.Request(url).host).host
    except (ValueError, http.client.InvalidURL) as error:  # say, a port that is not a number
        raise ConfigurationError(f"Confluent registry URL {url!r} names no host to connect to: {error}") from error



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
        from tributary_shared import aws_clients

        # Fetched once per process, outside any retry loop of ours: botocore's own retries stay on.
        client = aws_clients.client("secretsmanager", botocore_retries=True)
    secret = client.get_secret_value(SecretId=secret_id)["SecretString"]
    if secret.lstrip().startswith("{"):
        fields = json.loads(secret)
        return str(fields["username"]), str(fields["password"])
    user, separator, password = secret.partition(":")
    if not separator:
        raise ConfigurationError(f"secret {secret_id} must be JSON with username/password or 'user:password'")
    return user, password
