"""What every handler shares about one invocation: the partial batch response."""

from hypothesis import given
from hypothesis import strategies as st

from tributary_shared.invocation import batch_item_failures, lowest_sequence


@given(st.lists(st.integers(min_value=0, max_value=10**60), max_size=20))
def test_the_lowest_failed_record_is_chosen_by_value_not_text(numbers):
    sequences = [str(n) for n in numbers]
    expected = [{"itemIdentifier": str(min(numbers))}] if numbers else []
    assert batch_item_failures(sequences) == expected
    assert lowest_sequence(["9", "10"]) == "9"
