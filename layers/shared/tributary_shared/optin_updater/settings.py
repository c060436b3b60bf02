"""The opt-in updater's settings, read once at cold start from the environment the template sets.

OPT_OUT_LIST_NAME, SOURCE_TABLE and VERSION_TABLE_NAME; optionally SOURCE_SCHEMA (rows of other
schemas are skipped) and BEFORE_IMAGE_FIELD (the DMS task's before-image field name).
"""

from dataclasses import dataclass

from tributary_shared.optin_updater.dms_records import DEFAULT_BEFORE_IMAGE_FIELD, DmsSource
from tributary_shared.settings import Environ, optional_env, required_env


@dataclass(frozen=True)
class OptInUpdaterSettings:
    opt_out_list_name: str
    source: DmsSource
    # Per phone number, the newest change started on it (see `versions`).
    version_table_name: str

    @classmethod
    def from_env(cls, environ: Environ | None = None) -> "OptInUpdaterSettings":
        names = ("OPT_OUT_LIST_NAME", "SOURCE_TABLE", "VERSION_TABLE_NAME")
        required = required_env("opt-in updater", *names, environ=environ)
        source = DmsSource(
            table=required["SOURCE_TABLE"],
            schema=optional_env("SOURCE_SCHEMA", environ=environ),
            before_image_field=optional_env("BEFORE_IMAGE_FIELD", DEFAULT_BEFORE_IMAGE_FIELD, environ),
        )
        return cls(
            opt_out_list_name=required["OPT_OUT_LIST_NAME"],
            source=source,
            version_table_name=required["VERSION_TABLE_NAME"],
        )
