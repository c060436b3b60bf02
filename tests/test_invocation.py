"""What every handler shares: configuration from the environment and the partial batch response."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary_shared.invocation import batch_item_failures, bounded_int_env, lowest_sequence, required_env


def test_missing_settings_are_named():
    with pytest.raises(RuntimeError, match="csv loader is not configured: set TABLE_NAME, OTHER"):
        required_env("csv loader", "TABLE_NAME", "OTHER", environ={"TABLE_NAME": ""})
    assert required_env("x", "A", environ={"A": "1", "B": "2"}) == {"A": "1"}


@pytest.mark.parametrize(
    ("raw", "message"), [("abc", "WRITE_THREADS must be an integer, got 'abc'"), ("0", "between 1 and 16, got 0")]
)
def test_integer_settings_are_bounded(raw, message):
    with pytest.raises(RuntimeError, match=message):
        bounded_int_env("WRITE_THREADS", 4, 1, 16, environ={"WRITE_THREADS": raw})
    assert bounded_int_env("WRITE_THREADS", 4, 1, 16, environ={}) == 4


@given(st.lists(st.integers(min_value=0, max_value=10**60), max_size=20))
def test_the_lowest_failed_record_is_chosen_by_value_not_text(numbers):
    sequences = [str(n) for n in numbers]
    expected = [{"itemIdentifier": str(min(numbers))}] if numbers else []
    assert batch_item_failures(sequences) == expected
    assert lowest_sequence(["9", "10"]) == "9"
