"""boto3 clients for `produce` and `consume`, and what their commonest AWS answers mean to the user.

The commands talk to the local emulator (`--endpoint-url`, or AWS_ENDPOINT_URL) or to AWS itself.
"""

import os
from typing import Any

from tributary.aws_guard import is_loopback_url
from tributary.user_errors import UserError

SHOWN_NAMES = 20


def aws_client(service: str, endpoint_url: str | None) -> Any:
    """A boto3 client at `endpoint_url` (or AWS_ENDPOINT_URL, or AWS itself)."""
    import boto3

    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url  # clients created later (the registry's) too
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and is_loopback_url(endpoint):
        # The emulator takes any credentials; spare users from inventing some.
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            os.environ.setdefault(name, value)
        if not os.environ.get("AWS_DEFAULT_REGION"):  # the one botocore reads; AWS_REGION is other SDKs'
            os.environ["AWS_DEFAULT_REGION"] = os.environ.get("AWS_REGION") or "us-east-1"
    return boto3.client(service)


def error_code(error: Exception) -> str:
    """A botocore ClientError's code ("ResourceNotFoundException"), or "" for anything else."""
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def where(client: Any) -> str:
    """The endpoint a client talks to, as the user set it."""
    return str(client.meta.endpoint_url)


def missing_stream_error(kinesis: Any, stream: str) -> UserError:
    """A "no such stream" error naming the streams there are (or, if none, that nothing seems deployed)."""
    names = kinesis.list_streams(Limit=SHOWN_NAMES + 1).get("StreamNames", [])
    return UserError(f"no stream {stream!r} at {where(kinesis)}: {_existing('streams', names, '--stream')}")


def missing_bucket_error(s3: Any, bucket: str) -> UserError:
    names = [item["Name"] for item in s3.list_buckets().get("Buckets", [])]
    return UserError(f"no bucket {bucket!r} at {where(s3)}: {_existing('buckets', names, '--bucket')}")


def _existing(kind: str, names: list[str], option: str) -> str:
    if not names:
        return f"there are no {kind} (is `tributary up` running there with the template deployed?)"
    shown = ", ".join(sorted(names)[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
    return f"pass {option} with one of the {kind} there: {shown}"
