"""An emulator choice: Glue schema version ids derived from the schema and its version number.

AWS gives each schema version an opaque, random UUID, and so does moto 5.2.5 (in
moto/glue/models.py, `FakeSchemaVersion.__init__` draws `mock_random.uuid4()`). Locally that makes
every record framed in advance undecodable in the next emulator: `events/kinesis-payment-avro.json`
names its writer schemas by version id, and `tributary invoke` deploys a fresh registry each run.
`apply()` derives the id instead, as `schema_version_id(registry, schema, version number)`: a
UUID 5, still opaque to every client (the layer, the producer, the AWS package), the same in every
run for the same registry, schema and version. Against AWS, events framed so name versions that do
not exist there; re-frame them with the producer against the deployed registry.

Like tributary.moto_patches, `apply()` refuses to patch a different moto (another version, or
changed source of the constructor it wraps, checked by SHA-256): it warns with `MotoPatchRefused`
and leaves moto's random ids.
"""

import functools
import uuid
from typing import Any

from moto.glue.models import FakeSchemaVersion

from tributary.moto_patches import replace_moto_method

# Fixed for good: changing it changes every derived id, and the sample events' frames with them.
SCHEMA_VERSION_NAMESPACE = uuid.UUID("7d4f6c1e-2b8a-5c3d-9e0f-1a2b3c4d5e6f")
SCHEMA_VERSION_INIT_SHA256 = "9dc54ec80e1a4e8bdadcbab5e4b054582e7327f7eb7e5c1d6a17d65e9e719076"
MOTO_SCHEMA_VERSION_INIT = FakeSchemaVersion.__dict__["__init__"]


def schema_version_id(registry_name: str, schema_name: str, version_number: int) -> uuid.UUID:
    """The id the embedded AWS gives version `version_number` of a schema."""
    return uuid.uuid5(SCHEMA_VERSION_NAMESPACE, f"{registry_name}/{schema_name}/{version_number}")


@functools.wraps(MOTO_SCHEMA_VERSION_INIT)
def _init_with_derived_id(self: FakeSchemaVersion, *args: Any, **kwargs: Any) -> None:
    MOTO_SCHEMA_VERSION_INIT(self, *args, **kwargs)
    self.schema_version_id = str(schema_version_id(self.registry_name, self.schema_name, self.version_number))


def is_applied() -> bool:
    return FakeSchemaVersion.__dict__["__init__"] is _init_with_derived_id


def apply() -> bool:
    """Derive schema version ids; False (with a MotoPatchRefused warning) if moto is not the pinned one."""
    return replace_moto_method(FakeSchemaVersion, "__init__", _init_with_derived_id, SCHEMA_VERSION_INIT_SHA256,
                               "schema version ids are random")  # fmt: skip
