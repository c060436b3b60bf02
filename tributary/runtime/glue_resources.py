"""Glue resources of a template created in the emulator: the schema registry, schemas and their
versions, the data catalog's databases and tables (tributary.runtime.resources deploys the rest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from tributary.runtime.template import Template


class Deployer(Protocol):
    """What a creator needs of the deployment in progress (tributary.runtime.resources._Deployer)."""

    template: Template

    def client(self, service: str) -> Any: ...

    def record(self, logical_id: str, **attributes: Any) -> None: ...


def _glue_registry(deployer: Deployer, logical_id: str, properties: dict) -> None:
    name = deployer.template.physical_name(logical_id)
    arn = deployer.client("glue").create_registry(RegistryName=name, Description=properties.get("Description", ""))[
        "RegistryArn"
    ]
    deployer.record(logical_id, Ref=arn, Arn=arn)


def _glue_schema(deployer: Deployer, logical_id: str, properties: dict) -> None:
    registry = properties.get("Registry") or {}
    registry_id = {"RegistryArn": registry["Arn"]} if "Arn" in registry else {"RegistryName": registry.get("Name")}
    arguments = {
        "RegistryId": {key: value for key, value in registry_id.items() if value},
        "SchemaName": deployer.template.physical_name(logical_id),
        "DataFormat": properties.get("DataFormat", "AVRO"),
        "Compatibility": properties.get("Compatibility", "BACKWARD"),
        "SchemaDefinition": properties["SchemaDefinition"],
    }
    response = deployer.client("glue").create_schema(**{key: value for key, value in arguments.items() if value})
    deployer.record(
        logical_id,
        Ref=response["SchemaArn"],
        Arn=response["SchemaArn"],
        InitialSchemaVersionId=response.get("SchemaVersionId", ""),
    )


def _glue_database(deployer: Deployer, logical_id: str, properties: dict) -> None:
    database_input = dict(properties.get("DatabaseInput") or {})
    database_input["Name"] = deployer.template.physical_name(logical_id)
    deployer.client("glue").create_database(DatabaseInput=database_input)
    deployer.record(logical_id, Ref=database_input["Name"])


def _glue_table(deployer: Deployer, logical_id: str, properties: dict) -> None:
    table_input = dict(properties.get("TableInput") or {})
    table_input["Name"] = deployer.template.physical_name(logical_id)
    deployer.client("glue").create_table(DatabaseName=properties["DatabaseName"], TableInput=table_input)
    deployer.record(logical_id, Ref=table_input["Name"])


def _glue_schema_version(deployer: Deployer, logical_id: str, properties: dict) -> None:
    schema = properties["Schema"]
    schema_id = {"SchemaArn": schema["SchemaArn"]} if "SchemaArn" in schema else {
        "RegistryName": schema["RegistryName"], "SchemaName": schema["SchemaName"]}  # fmt: skip
    response = deployer.client("glue").register_schema_version(
        SchemaId=schema_id, SchemaDefinition=properties["SchemaDefinition"]
    )
    deployer.record(logical_id, Ref=response["SchemaVersionId"], VersionId=response["SchemaVersionId"])


# In creation order: a schema's registry first, a version's schema, a table's database.
GLUE_CREATORS: dict[str, Callable[[Any, str, dict], None]] = {
    "AWS::Glue::Registry": _glue_registry,
    "AWS::Glue::Schema": _glue_schema,
    "AWS::Glue::SchemaVersion": _glue_schema_version,
    "AWS::Glue::Database": _glue_database,
    "AWS::Glue::Table": _glue_table,
}
