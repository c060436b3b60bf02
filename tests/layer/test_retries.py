"""The one retry policy every retrying loop uses: attempts, backoff and the deadline."""

import pytest
from support import FakeClock

from tributary_shared.retries import CALL_BUDGET_S, NO_DEADLINE, RetryPolicy


def on(clock: FakeClock, **options) -> RetryPolicy:
    return RetryPolicy(clock=clock, sleep=clock.sleep, **options)


def test_waits_grow_exponentially_up_to_the_cap_with_full_jitter():
    clock = FakeClock()
    retry = on(clock, base_s=1.0, cap_s=3.0)
    assert all(retry.wait_before_retry(calls, NO_DEADLINE) for calls in range(1, 6))
    caps = [1.0, 2.0, 3.0, 3.0, 3.0]
    assert all(0 <= wait <= cap for wait, cap in zip(clock.sleeps, caps, strict=True))


def test_attempts_are_bounded_and_counted_with_the_first_call():
    clock = FakeClock()
    retry = on(clock, max_attempts=3)
    assert [retry.wait_before_retry(calls, NO_DEADLINE) for calls in (1, 2, 3)] == [True, True, False]
    assert len(clock.sleeps) == 2
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)


def test_no_call_starts_that_could_end_after_the_deadline():
    clock = FakeClock()
    retry = on(clock, base_s=1.0, cap_s=1.0)
    deadline = CALL_BUDGET_S + 0.5
    assert retry.call_fits(deadline) and not retry.call_fits(deadline - 1)
    while retry.wait_before_retry(1, deadline):
        pass
    assert clock.now + CALL_BUDGET_S <= deadline  # never slept into the last call's time
    assert retry.call_fits(NO_DEADLINE) and retry.wait_before_retry(10**6, NO_DEADLINE)  # only attempts bound it
