"""EMULATION of Amazon Data Firehose's custom S3 prefixes ("Custom prefixes for Amazon S3 objects").

`!{timestamp:<Java date pattern>}`, `!{firehose:error-output-type}`, `!{firehose:random-string}` and
`!{partitionKeyFromLambda:<key>}` / `!{partitionKeyFromQuery:<key>}` (dynamic partitioning) are
evaluated; a prefix with no expression gets Firehose's default `YYYY/MM/dd/HH/` after it (and, for
error output without a prefix, the error output type before it).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

_EXPRESSION = re.compile(r"!\{([^}]*)\}")
_JAVA_DATE_TOKENS = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


def evaluate_prefix(
    prefix: str, partition_keys: dict[str, str], error_output_type: str | None, keys_optional: bool = False
) -> str:
    """Evaluate Firehose's custom prefix expressions; a prefix without any gets YYYY/MM/dd/HH/ appended."""
    now = dt.datetime.now(dt.UTC)
    if not _EXPRESSION.search(prefix):
        default_time = now.strftime("%Y/%m/%d/%H/")
        return (f"{prefix}{error_output_type}/" if error_output_type and not prefix else prefix) + default_time

    def substitute(match: re.Match[str]) -> str:
        namespace, _, argument = match.group(1).partition(":")
        if namespace == "timestamp":
            return _java_date(argument, now)
        if namespace == "firehose" and argument == "error-output-type":
            return error_output_type or ""
        if namespace == "firehose" and argument == "random-string":
            return uuid.uuid4().hex[:11]
        if namespace in {"partitionKeyFromLambda", "partitionKeyFromQuery"}:
            if argument in partition_keys:
                return partition_keys[argument]
            if keys_optional:
                return ""
            raise KeyError(argument)
        raise ValueError(f"unsupported Firehose prefix expression !{{{match.group(1)}}}")

    return _EXPRESSION.sub(substitute, prefix)


def _java_date(pattern: str, moment: dt.datetime) -> str:
    parts = re.split(r"('[^']*')", pattern)
    rendered = []
    for part in parts:
        if part.startswith("'") and part.endswith("'"):
            rendered.append(part[1:-1])
            continue
        for java, strftime in _JAVA_DATE_TOKENS:
            part = part.replace(java, strftime)
        rendered.append(moment.strftime(part))
    return "".join(rendered)
