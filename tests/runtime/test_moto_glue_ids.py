"""Schema version ids in the embedded AWS: derived from registry, schema and version number, the same every run."""

import warnings

import boto3
import moto
import pytest
from moto.glue.models import FakeSchemaVersion

from tributary import moto_glue_ids
from tributary.moto_patches import MotoPatchRefused, source_sha256

DEFINITION_V1 = '{"type":"record","name":"P","fields":[{"name":"id","type":"string"}]}'
DEFINITION_V2 = DEFINITION_V1.replace("}]}", '},{"name":"c","type":"string","default":""}]}')


def register(glue) -> tuple[str, str, str]:
    glue.create_registry(RegistryName="reg")
    first = glue.create_schema(RegistryId={"RegistryName": "reg"}, SchemaName="payment", DataFormat="AVRO",
                               Compatibility="BACKWARD", SchemaDefinition=DEFINITION_V1)["SchemaVersionId"]
    schema = {"RegistryName": "reg", "SchemaName": "payment"}
    second = glue.register_schema_version(SchemaId=schema, SchemaDefinition=DEFINITION_V2)["SchemaVersionId"]
    again = glue.register_schema_version(SchemaId=schema, SchemaDefinition=DEFINITION_V2)["SchemaVersionId"]
    return first, second, again


def test_versions_get_the_derived_ids_and_clients_find_them_by_id(aws):
    assert moto_glue_ids.is_applied()  # the embedded AWS applies it at start
    glue = boto3.client("glue")
    first, second, again = register(glue)
    assert first == str(moto_glue_ids.schema_version_id("reg", "payment", 1))
    assert second == again == str(moto_glue_ids.schema_version_id("reg", "payment", 2))
    assert glue.get_schema_version(SchemaVersionId=second)["SchemaDefinition"] == DEFINITION_V2


def test_the_same_registry_gives_the_same_ids_in_the_next_emulator(aws):
    first_run = register(boto3.client("glue"))
    aws.reset()
    assert register(boto3.client("glue")) == first_run


def test_ids_differ_by_registry_schema_and_version():
    ids = {moto_glue_ids.schema_version_id(registry, schema, number)
           for registry in ("a", "b") for schema in ("x", "y") for number in (1, 2)}  # fmt: skip
    assert len(ids) == 8


def test_a_different_moto_is_left_unpatched_with_a_warning(monkeypatch):
    monkeypatch.setattr(FakeSchemaVersion, "__init__", moto_glue_ids.MOTO_SCHEMA_VERSION_INIT)
    monkeypatch.setattr(moto, "__version__", "9.9.9")
    with pytest.warns(MotoPatchRefused, match="schema version ids are random"):
        assert moto_glue_ids.apply() is False
    assert not moto_glue_ids.is_applied()


def test_the_wrapped_constructor_is_still_the_pinned_one():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert source_sha256(moto_glue_ids.MOTO_SCHEMA_VERSION_INIT) == moto_glue_ids.SCHEMA_VERSION_INIT_SHA256
