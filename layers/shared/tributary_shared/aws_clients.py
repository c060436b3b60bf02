"""boto3 clients for code that retries by itself, inside an invocation's deadline.

botocore's own retries would run underneath ours (up to 10 attempts for DynamoDB, with a 60 s read
timeout), breaking the rule that no request starts once the deadline has passed: they are off, and
the timeouts are short enough that one call fits the margin a handler keeps.
"""

from typing import Any

import boto3
from botocore.config import Config

CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 5
# The longest one call can take: callers start a call only if this much time is left.
CALL_BUDGET_S = float(CONNECT_TIMEOUT_S + READ_TIMEOUT_S)
NO_RETRY_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
)


def client(service: str, **config_overrides: Any) -> Any:
    """A client that makes exactly one attempt per call, with the timeouts above."""
    config = NO_RETRY_CONFIG.merge(Config(**config_overrides)) if config_overrides else NO_RETRY_CONFIG
    return boto3.client(service, config=config)
