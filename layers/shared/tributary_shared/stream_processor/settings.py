"""The stream processor's settings, read once at cold start from the environment the template sets.

TABLE_NAME, KEY_ATTRIBUTES (comma-separated), and optionally MAX_RECORD_BYTES (at most DynamoDB's
400 KB item) and VERSION_ATTRIBUTE (default `recordVersion`), plus the registry settings of the
codec (`schema_registry.RegistrySettings`).
"""

from dataclasses import dataclass, field

from tributary_shared.errors import ConfigurationError
from tributary_shared.schema_registry import RegistrySettings
from tributary_shared.settings import Environ, bounded_int_env, names_env, optional_env, required_env

COMPONENT = "stream processor"
# DynamoDB's item size limit: a record larger than this can never be written.
DEFAULT_MAX_RECORD_BYTES = 400 * 1024
# The attribute every item carries: the version (stream position) of the record that wrote it.
DEFAULT_VERSION_ATTRIBUTE = "recordVersion"


@dataclass(frozen=True)
class StreamProcessorSettings:
    table_name: str
    key_attributes: tuple[str, ...]
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    version_attribute: str = DEFAULT_VERSION_ATTRIBUTE
    registry: RegistrySettings = field(default_factory=RegistrySettings)

    @classmethod
    def from_env(cls, environ: Environ | None = None) -> "StreamProcessorSettings":
        table_name = required_env(COMPONENT, "TABLE_NAME", "KEY_ATTRIBUTES", environ=environ)["TABLE_NAME"]
        keys = names_env(COMPONENT, "KEY_ATTRIBUTES", environ)
        version_attribute = optional_env("VERSION_ATTRIBUTE", DEFAULT_VERSION_ATTRIBUTE, environ)
        if version_attribute in keys:
            raise ConfigurationError(f"VERSION_ATTRIBUTE {version_attribute!r} cannot be a key attribute")
        return cls(
            table_name=table_name,
            key_attributes=keys,
            max_record_bytes=bounded_int_env(
                "MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES, 1, DEFAULT_MAX_RECORD_BYTES, environ
            ),
            version_attribute=version_attribute,
            registry=RegistrySettings.from_env(environ),
        )
