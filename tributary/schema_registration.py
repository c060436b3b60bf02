"""A producer's side of the AWS Glue Schema Registry: find its schema's version, or register it.

A new schema is created under the compatibility mode the producer asks for; a new version of an
existing schema is checked on the client, against the schema's own mode, with the Apache Avro
library's compatibility checker before it is registered: a registry emulator does not enforce
compatibility, and a breaking change must not ship. Glue checks compatibility asynchronously, so a
new version is waited for until it is AVAILABLE.

Development only: the functions look writer schemas up (`tributary_shared.schema_registry`) and
never register them, and the `avro` package is not in the layer.
"""

import json
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from tributary_shared.retries import full_jitter_backoff

COMPATIBILITY_MODES = ("NONE", "DISABLED", "BACKWARD", "BACKWARD_ALL", "FORWARD", "FORWARD_ALL", "FULL", "FULL_ALL")
PENDING_POLLS = 10
# Polls of a PENDING version: the first after up to 1 s, growing to at most 2 s.
PENDING_POLL_BASE_S = 0.5
PENDING_POLL_CAP_S = 2.0


class SchemaRegistrationError(Exception):
    """A producer's schema could not be found or registered; the message says why."""


class IncompatibleSchemaError(SchemaRegistrationError):
    """The new schema breaks the compatibility mode; `problems` name the offending fields."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = list(problems)


class SchemaRegistration:
    """One Glue registry as a producer uses it: the registry producers register in, through `client`."""

    def __init__(
        self,
        registry_name: str | None,
        client: Any,
        *,
        sleep: Callable[[float], None] = time.sleep,
        pending_polls: int = PENDING_POLLS,
    ) -> None:
        self.registry_name = registry_name
        self.client = client
        self.sleep = sleep
        self.pending_polls = pending_polls

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

    def _call(self, operation: str, **params: Any) -> dict[str, Any] | None:
        """A Glue call; None when the entity does not exist."""
        from botocore.exceptions import ClientError

        try:
            return dict(getattr(self.client, operation)(**params))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "EntityNotFoundException":
                return None
            raise SchemaRegistrationError(f"Glue {operation} failed: {error}") from error

    def _existing_schema(self, schema_name: str) -> dict[str, Any] | None:
        return self._call("get_schema", SchemaId=self._schema_id(schema_name))

    def _version_by_definition(self, schema_name: str, definition: str) -> UUID | None:
        schema_id = self._schema_id(schema_name)
        found = self._call("get_schema_by_definition", SchemaId=schema_id, SchemaDefinition=definition)
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
            version = self._call(
                "get_schema_version",
                SchemaId=self._schema_id(schema_name),
                SchemaVersionNumber={"VersionNumber": number},
            )
            if version:
                definitions.append(str(version["SchemaDefinition"]))
        return definitions

    def _create_schema(self, schema_name: str, definition: str, compatibility: str) -> UUID:
        registry = self._registry()
        if self._call("get_registry", RegistryId={"RegistryName": registry}) is None:
            self._call("create_registry", RegistryName=registry)
        created = self._call(
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
        registered = self._call(
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
            self.sleep(full_jitter_backoff(attempt + 1, PENDING_POLL_BASE_S, PENDING_POLL_CAP_S))
            response = self._call("get_schema_version", SchemaVersionId=str(version_id))
            status = str((response or {}).get("Status", "DELETED"))
        raise SchemaRegistrationError(f"schema version {version_id} still {status} after {self.pending_polls} polls")


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
    import avro.schema  # here: only a producer registering a new version pays for Apache Avro
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
