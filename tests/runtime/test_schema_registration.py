"""A producer's registration in Glue (on moto), and the client-side compatibility check before it."""

import json
from uuid import uuid4

import boto3
import pytest
from support import definition

from tributary.schema_registration import (
    IncompatibleSchemaError,
    SchemaRegistration,
    SchemaRegistrationError,
    check_compatibility,
)
from tributary_shared.avro_schemas import canonical_definition
from tributary_shared.errors import PoisonRecordError
from tributary_shared.schema_registry import GlueSchemaRegistry

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
def registry(aws) -> SchemaRegistration:
    return SchemaRegistration("tributary", boto3.client("glue"), sleep=no_sleep)


def looked_up(registry: SchemaRegistration) -> GlueSchemaRegistry:
    """What a consumer of the same registry sees."""
    return GlueSchemaRegistry(registry.registry_name, registry.client)


def test_first_use_creates_the_registry_and_schema_and_reuses_the_version(registry):
    version_id = registry.version_for("payment-event", PAYMENT_V1, compatibility="FULL")
    assert registry.version_for("payment-event", PAYMENT_V1) == version_id
    schema = registry.client.get_schema(SchemaId={"RegistryName": "tributary", "SchemaName": "payment-event"})
    assert (schema["Compatibility"], schema["DataFormat"]) == ("FULL", "AVRO")
    assert looked_up(registry).schema_definition(version_id) == PAYMENT_V1


def test_a_compatible_new_version_is_registered(registry):
    v1 = registry.version_for("payment-event", PAYMENT_V1, compatibility="BACKWARD")
    v2 = registry.version_for("payment-event", PAYMENT_V2)
    assert v1 != v2
    assert looked_up(registry).schema_definition(v2) == PAYMENT_V2


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
        looked_up(registry).schema_definition(uuid4())


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
