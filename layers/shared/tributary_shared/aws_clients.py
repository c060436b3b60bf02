"""boto3 clients for code that retries by itself, inside an invocation's deadline.

botocore's own retries would run underneath ours (up to 10 attempts for DynamoDB, with a 60 s read
timeout), breaking the rule that a request starts only if it can end before the deadline: they are
off, and the timeouts bound one call to CALL_BUDGET_S (see `leaves_time_for_a_call`).
"""

import random
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 5
# The longest one call can take: callers start a call only if this much time is left.
CALL_BUDGET_S = float(CONNECT_TIMEOUT_S + READ_TIMEOUT_S)


def leaves_time_for_a_call(
    now: float, deadline: float, *, wait_s: float = 0.0, budget_s: float = CALL_BUDGET_S
) -> bool:
    """Whether a call started after waiting `wait_s` would still end by `deadline`, however slow it is."""
    return now + wait_s + budget_s <= deadline


NO_RETRY_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
)


_shared_rng = random.Random()


def client(service: str, **config_overrides: Any) -> Any:
    """A client that makes exactly one attempt per call, with the timeouts above."""
    config = NO_RETRY_CONFIG.merge(Config(**config_overrides)) if config_overrides else NO_RETRY_CONFIG
    return boto3.client(service, config=config)


def full_jitter_backoff(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry `attempt`: uniform in [0, min(cap, base * 2**attempt)] (AWS's full jitter)."""
    # The exponent is clamped: past a few dozen attempts the cap applies anyway, and 2**1100 overflows a float.
    return (rng or _shared_rng).uniform(0, min(cap_s, base_s * 2 ** min(attempt, 64)))


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def wait_before_retry(
    attempt: int,
    deadline: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    rng: random.Random | None = None,
    base_s: float = 0.05,
    cap_s: float = 2.0,
    budget_s: float = CALL_BUDGET_S,
) -> bool:
    """Sleep a full-jitter backoff before retry `attempt`; False (without sleeping) if the call after
    it could no longer end by `deadline`. Every deadline-aware retry loop waits through this."""
    delay = full_jitter_backoff(attempt, base_s, cap_s, rng)
    if not leaves_time_for_a_call(clock(), deadline, wait_s=delay, budget_s=budget_s):
        return False
    sleep(delay)
    return True
