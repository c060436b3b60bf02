"""What `tributary invoke` reads before the emulator starts, and the S3 objects an event needs.

Every mistake here is a UserError raised before anything starts: the event file (`-e FILE`, `-e -`
for stdin), the `--env-vars` file in the SAM CLI's format and each `--put-object s3://BUCKET/KEY=FILE`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from tributary.runtime.template import Template
from tributary.user_errors import UserError

ENV_VARS_FOR_EVERY_FUNCTION = "Parameters"  # the SAM CLI's key for variables of every function
_BUCKET_TYPE = "AWS::S3::Bucket"


def read_event(source: str | None) -> Any:
    """The event: JSON from `source` (a path, or "-" for stdin); `{}` without one, as `sam local invoke` does."""
    if source is None:
        return {}
    name = "stdin" if source == "-" else f"event file {source}"
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read {name}: {error.strerror or error} (pass -e FILE.json, or - for stdin)") from error
    except UnicodeDecodeError as error:
        raise UserError(f"{name} is not UTF-8 text: {error.reason} at byte {error.start}") from error
    return json_document(text, name)


def json_document(text: str, name: str) -> Any:
    """`text` parsed as JSON; a UserError naming `name` and the problem otherwise (nesting too deep included)."""
    try:
        return json.loads(text)
    except RecursionError as error:
        raise UserError(f"{name} nests arrays or objects too deeply to read") from error
    except ValueError as error:
        raise UserError(f"{name} is not JSON: {error}") from error


def read_env_vars(path: Path | None) -> dict[str, dict[str, str]]:
    """`--env-vars FILE`: {"FunctionLogicalId": {"VAR": "value"}, "Parameters": {"VAR": "for every function"}}."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot read --env-vars {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise UserError(f"--env-vars {path} is not UTF-8 text: {error.reason} at byte {error.start}") from error
    document = json_document(text, f"--env-vars {path}")
    if not isinstance(document, dict) or not all(isinstance(value, dict) for value in document.values()):
        raise UserError(
            f'--env-vars {path}: expected {{"FunctionLogicalId": {{"VAR": "value"}}, '
            f'"{ENV_VARS_FOR_EVERY_FUNCTION}": {{"VAR": "value"}}}}'
        )
    return {key: {name: _env_string(value) for name, value in values.items()} for key, values in document.items()}


def _env_string(value: Any) -> str:
    # As the SAM CLI writes them into the container: JSON scalars as their text, booleans in lower case.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def env_var_overrides(env_vars: Mapping[str, Mapping[str, str]], logical_id: str, function_name: str,
                      declared: Iterable[str]) -> tuple[dict[str, str], list[str]]:  # fmt: skip
    """(overrides to apply, names ignored): the SAM CLI overrides only variables the template declares for the
    function; the function's own entry (by logical id, else by name) wins over "Parameters"."""
    own = env_vars.get(logical_id) or env_vars.get(function_name) or {}
    wanted = {**env_vars.get(ENV_VARS_FOR_EVERY_FUNCTION, {}), **own}
    known = set(declared)
    return ({name: value for name, value in wanted.items() if name in known},
            sorted(name for name in wanted if name not in known))  # fmt: skip


@dataclass(frozen=True)
class ObjectToPut:
    """`--put-object s3://BUCKET/KEY=FILE`: BUCKET is a bucket's name or its logical id in the template."""

    bucket: str
    key: str
    body: bytes
    source: str

    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def read_object_to_put(text: str) -> ObjectToPut:
    """Parse and read one `--put-object` (the file is read now: a missing file is found before anything starts)."""
    location, separator, path = text.rpartition("=")
    bucket, _, key = location.removeprefix("s3://").partition("/")
    if not separator or not location.startswith("s3://") or not bucket or not key or not path:
        raise UserError(f"--put-object {text!r} is not s3://BUCKET/KEY=FILE")
    try:
        return ObjectToPut(bucket, key, Path(path).read_bytes(), path)
    except OSError as error:
        raise UserError(f"--put-object {text!r}: cannot read {path}: {error.strerror or error}") from error


def template_buckets(template: Template) -> dict[str, str]:
    """The template's S3 buckets: physical name -> logical id."""
    return {
        template.physical_name(logical_id): logical_id
        for logical_id, resource in template.resources.items()
        if resource.type == _BUCKET_TYPE
    }


def resolved_bucket(item: ObjectToPut, template: Template) -> ObjectToPut:
    """`item` with its bucket's physical name; UserError if the template has no such bucket."""
    buckets = template_buckets(template)
    if item.bucket in buckets:
        return item
    resource = template.resources.get(item.bucket)
    if resource is not None and resource.type == _BUCKET_TYPE:
        return ObjectToPut(template.physical_name(item.bucket), item.key, item.body, item.source)
    known = ", ".join(f"{logical_id} ({name})" for name, logical_id in sorted(buckets.items())) or "none"
    raise UserError(f"--put-object {item.url()}: the template has no bucket {item.bucket!r}; its buckets: {known}")


def s3_objects_named(event: Any) -> list[tuple[str, str]]:
    """(bucket, key) of each S3 event notification record in `event`; keys arrive URL-encoded, as S3 sends them."""
    records = event.get("Records") if isinstance(event, dict) else None
    return [
        (record["s3"]["bucket"]["name"], unquote_plus(record["s3"]["object"]["key"]))
        for record in records or []
        if isinstance(record, dict)
        and record.get("eventSource") == "aws:s3"
        and isinstance(record.get("s3"), dict)
        and "object" in record["s3"]
        and "bucket" in record["s3"]
    ]


def missing_object_error(bucket: str, key: str, template: Template, event_source: str | None) -> UserError:
    """What to do when the event names an object the emulated S3 does not hold."""
    logical_id = template_buckets(template).get(bucket)
    where = f"{bucket} (the template's {logical_id})" if logical_id else bucket
    example = f"s3://{logical_id or bucket}/{key}=FILE"
    return UserError(
        f"{event_source or 'the event'} names s3://{bucket}/{key}, which is not in the emulated S3 bucket {where}: "
        f"upload it first with --put-object '{example}'"
    )
