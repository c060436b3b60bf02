"""The aggregator's settings, read once at cold start from the environment the template sets.

TABLE_NAME (UnicornAggregation) and SUMMARY_STREAM_NAME, plus the registry settings of the codec
(`schema_registry.RegistrySettings`): readings may be registry-framed Avro too.
"""

from dataclasses import dataclass, field

from tributary_shared.schema_registry import RegistrySettings
from tributary_shared.settings import Environ, required_env


@dataclass(frozen=True)
class AggregatorSettings:
    table_name: str
    summary_stream_name: str
    registry: RegistrySettings = field(default_factory=RegistrySettings)

    @classmethod
    def from_env(cls, environ: Environ | None = None) -> "AggregatorSettings":
        required = required_env("aggregator", "TABLE_NAME", "SUMMARY_STREAM_NAME", environ=environ)
        return cls(required["TABLE_NAME"], required["SUMMARY_STREAM_NAME"], RegistrySettings.from_env(environ))
