"""The one way a loop retries a call: full-jitter backoff, bounded attempts, and no call past the deadline.

A call starts only if it can end by the deadline, however slow it is. That needs a bound on one
call: the clients the toolkit makes (`aws_clients.client`) time out after CONNECT_TIMEOUT_S plus
READ_TIMEOUT_S, with botocore's own retries off (they would run underneath these, up to 10 attempts
for DynamoDB with a 60 s read timeout), and a registry's HTTP lookups use the same bound. A loop
with no deadline (a producer, a tool) passes `NO_DEADLINE` and is bounded by its attempts alone.

Standard library only: the registry's lookups retry through here without loading boto3.
"""

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 5
# The longest one call can take: a call is started only if this much time is left.
CALL_BUDGET_S = float(CONNECT_TIMEOUT_S + READ_TIMEOUT_S)
NO_DEADLINE = math.inf

_shared_rng = random.Random()


def leaves_time_for_a_call(
    now: float, deadline: float, *, wait_s: float = 0.0, budget_s: float = CALL_BUDGET_S
) -> bool:
    """Whether a call started after waiting `wait_s` would still end by `deadline`, however slow it is."""
    return now + wait_s + budget_s <= deadline


def full_jitter_backoff(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry `attempt`: uniform in [0, min(cap, base * 2**attempt)] (AWS's full jitter)."""
    # The exponent is clamped: past a few dozen attempts the cap applies anyway, and 2**1100 overflows a float.
    return (rng or _shared_rng).uniform(0, min(cap_s, base_s * 2 ** min(attempt, 64)))


@dataclass(frozen=True)
class RetryPolicy:
    """How one kind of call is retried, and the clock, sleep and randomness it retries with.

    A loop asks `call_fits(deadline)` before every call and, after a call that must be made again,
    `wait_before_retry(calls_made, deadline)`, which sleeps the backoff or says the loop is done.
    The wait before the n-th retry is uniform in [0, min(cap_s, base_s * 2**(n-1))].
    """

    base_s: float = 0.05
    cap_s: float = 2.0
    # Calls in all, the first included; None: as many as the deadline leaves time for.
    max_attempts: int | None = None
    call_budget_s: float = CALL_BUDGET_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def call_fits(self, deadline: float) -> bool:
        """Whether a call started now would end by `deadline`, however slow it is."""
        return leaves_time_for_a_call(self.clock(), deadline, budget_s=self.call_budget_s)

    def wait_before_retry(self, calls_made: int, deadline: float) -> bool:
        """Sleep before call `calls_made + 1`; False, without sleeping, when the attempts are used up or
        that call, started after the wait, could not end by `deadline`."""
        if self.max_attempts is not None and calls_made >= self.max_attempts:
            return False
        delay = full_jitter_backoff(calls_made - 1, self.base_s, self.cap_s, self.rng)
        if not leaves_time_for_a_call(self.clock(), deadline, wait_s=delay, budget_s=self.call_budget_s):
            return False
        self.sleep(delay)
        return True
