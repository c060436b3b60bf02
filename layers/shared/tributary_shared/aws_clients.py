"""Every AWS client the layer and the handlers use, from one factory.

By default a client makes exactly one attempt per call, with timeouts that bound the call to
`retries.CALL_BUDGET_S`: the code calling it retries by itself through `retries.RetryPolicy`,
inside the invocation's deadline. A call no such loop wraps (an S3 read of a resumable load, the
invocation of the next segment, a secret fetched once) keeps botocore's own retries and timeouts.
"""

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tributary_shared.retries import CONNECT_TIMEOUT_S, READ_TIMEOUT_S

NO_RETRY_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
)


def client(service: str, *, botocore_retries: bool = False, **config_overrides: Any) -> Any:
    """A boto3 client for `service`: one attempt per call with the timeouts above, unless `botocore_retries`.

    `config_overrides` are botocore Config settings on top (e.g. `parameter_validation=False`).
    """
    overrides = Config(**config_overrides) if config_overrides else None
    if botocore_retries:
        return boto3.client(service, config=overrides)
    return boto3.client(service, config=NO_RETRY_CONFIG.merge(overrides) if overrides else NO_RETRY_CONFIG)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
