"""The exact batches a function sees when record 4 of 10 fails, under each error-handling setting."""

import pytest
from esm_support import (
    FakeClock,
    Recorder,
    create_queue,
    create_stream,
    mapping,
    put_numbers,
    queue_messages,
    raise_on,
    report_failure_of,
    run_until_drained,
)

from tributary.runtime.esm import drain
from tributary.runtime.invocation import InvocationResult

ONE_TO_TEN = list(range(1, 11))


def test_retries_only_repeat_the_whole_batch_then_discard_it(aws):
    stream = create_stream()
    queue = create_queue()
    put_numbers(range(1, 13))
    function = Recorder(raise_on(4))
    esm = mapping(stream, function, batch_size=10, maximum_retry_attempts=2, on_failure_destination_arn=queue)

    run_until_drained(esm)

    assert function.batches == [ONE_TO_TEN, ONE_TO_TEN, ONE_TO_TEN, [11, 12]]
    [record] = queue_messages("failed-records")
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["KinesisBatchInfo"]["batchSize"] == 10
    assert esm.stats.retries == 2
    assert esm.stats.records_succeeded == 2
    assert esm.stats.records_to_destination == 10


def test_bisect_only_isolates_the_failing_record(aws):
    stream = create_stream()
    queue = create_queue()
    sequence = put_numbers(range(1, 11))
    function = Recorder(raise_on(4))
    esm = mapping(stream, function, batch_size=10, maximum_retry_attempts=1, bisect_on_function_error=True,
                  on_failure_destination_arn=queue)

    run_until_drained(esm)

    assert function.batches == [
        ONE_TO_TEN, [1, 2, 3, 4, 5], [1, 2], [3, 4, 5], [3], [4, 5], [4], [4], [5], [6, 7, 8, 9, 10],
    ]
    [record] = queue_messages("failed-records")
    info = record["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        sequence[4], sequence[4], 1,
    )
    # Splitting is free; only the single record's own retry counts against MaximumRetryAttempts.
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert esm.stats.records_succeeded == 9


def test_partial_batch_response_only_checkpoints_before_the_failure_and_retries_the_rest(aws):
    stream = create_stream()
    queue = create_queue()
    sequence = put_numbers(range(1, 11))
    function = Recorder(report_failure_of(4))
    esm = mapping(stream, function, batch_size=10, maximum_retry_attempts=1, report_batch_item_failures=True,
                  on_failure_destination_arn=queue)

    run_until_drained(esm)

    assert function.batches == [ONE_TO_TEN, [4, 5, 6, 7, 8, 9, 10]]
    [record] = queue_messages("failed-records")
    info = record["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        sequence[4], sequence[10], 7,
    )
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert esm.stats.records_succeeded == 3


def test_bisect_with_partial_batch_response_splits_at_the_returned_sequence_number(aws):
    stream = create_stream()
    queue = create_queue()
    sequence = put_numbers(range(1, 11))
    function = Recorder(report_failure_of(4))
    esm = mapping(stream, function, batch_size=10, maximum_retry_attempts=1, report_batch_item_failures=True,
                  bisect_on_function_error=True, on_failure_destination_arn=queue)

    run_until_drained(esm)

    assert function.batches == [ONE_TO_TEN, [4, 5, 6, 7, 8, 9, 10], [4, 5, 6], [4], [4], [5, 6], [7, 8, 9, 10]]
    [record] = queue_messages("failed-records")
    assert record["KinesisBatchInfo"]["startSequenceNumber"] == sequence[4]
    assert record["KinesisBatchInfo"]["batchSize"] == 1
    assert esm.stats.records_succeeded == 9


def test_the_lowest_reported_sequence_number_wins(aws):
    stream = create_stream()
    put_numbers(range(1, 11))
    function = Recorder(report_failure_of(7, 4))
    esm = mapping(stream, function, batch_size=10, maximum_retry_attempts=0, report_batch_item_failures=True)

    run_until_drained(esm)

    assert function.batches == [ONE_TO_TEN]
    assert esm.stats.records_succeeded == 3
    assert esm.stats.records_discarded == 7


@pytest.mark.parametrize(
    "response",
    [None, {}, "", {"batchItemFailures": []}, {"batchItemFailures": None}],
    ids=["null-response", "empty-response", "empty-string", "empty-list", "null-list"],
)
def test_responses_that_mean_complete_success(aws, response):
    stream = create_stream()
    put_numbers(range(1, 4))
    function = Recorder(lambda event, numbers: InvocationResult(response=response))
    esm = mapping(stream, function, report_batch_item_failures=True, maximum_retry_attempts=0)

    run_until_drained(esm)

    assert function.batches == [[1, 2, 3]]
    assert esm.stats.records_succeeded == 3


@pytest.mark.parametrize(
    "failures",
    [
        [{"itemIdentifier": ""}],
        [{"itemIdentifier": None}],
        [{"itemId": "1"}],
        [{"itemIdentifier": "999999999"}],
        [{"itemIdentifier": "not-a-number"}],
        "not-a-list",
    ],
    ids=["empty-identifier", "null-identifier", "wrong-key", "unknown-sequence", "not-a-number", "not-a-list"],
)
def test_responses_that_mean_complete_failure(aws, failures):
    stream = create_stream()
    put_numbers(range(1, 4))
    function = Recorder(lambda event, numbers: InvocationResult(response={"batchItemFailures": failures}))
    esm = mapping(stream, function, report_batch_item_failures=True, maximum_retry_attempts=1)

    run_until_drained(esm)

    assert function.batches == [[1, 2, 3], [1, 2, 3]]
    assert esm.stats.records_succeeded == 0
    assert esm.stats.records_discarded == 3


def test_batch_item_failures_are_ignored_unless_the_mapping_reports_them(aws):
    stream = create_stream()
    put_numbers(range(1, 4))
    function = Recorder(report_failure_of(2))
    esm = mapping(stream, function, maximum_retry_attempts=0)

    run_until_drained(esm)

    assert function.batches == [[1, 2, 3]]
    assert esm.stats.records_succeeded == 3


def test_malformed_output_and_timeouts_reported_by_the_host_are_function_errors(aws):
    stream = create_stream()
    put_numbers(range(1, 4))
    outcomes = iter([
        InvocationResult(function_error="Unhandled", error_message="Task timed out after 3.00 seconds"),
        InvocationResult(function_error="malformed response: not JSON serialisable"),
        InvocationResult(response={"ok": True}),
    ])
    function = Recorder(lambda event, numbers: next(outcomes))
    esm = mapping(stream, function)

    run_until_drained(esm)

    assert function.batches == [[1, 2, 3]] * 3
    assert esm.stats.function_errors == 2
    assert esm.stats.retries == 2
    assert esm.stats.records_succeeded == 3


def test_an_invoker_that_raises_is_a_function_error(aws):
    stream = create_stream()
    put_numbers(range(1, 3))

    def explode(event, numbers):
        raise RuntimeError("boom")

    function = Recorder(explode)
    esm = mapping(stream, function, maximum_retry_attempts=0)

    run_until_drained(esm)

    assert esm.stats.function_errors == 1
    assert esm.stats.deliveries[0]["condition"] == "RetryAttemptsExhausted"
    assert esm.stats.deliveries[0]["destination"] is None


def test_a_failed_batch_waits_before_its_retry_while_the_clock_stands_still(aws):
    clock = FakeClock()
    stream = create_stream()
    put_numbers([1, 2])
    function = Recorder(raise_on(1))
    esm = mapping(stream, function, clock=clock, retry_delay_s=1.0)

    for _ in range(5):
        esm.poll()
    assert function.batches == [[1, 2]]  # no retry before the delay has passed
    clock.advance(1.0)
    esm.poll()
    assert function.batches == [[1, 2], [1, 2]]


def test_not_drained_names_the_stuck_records_their_attempts_and_the_last_error(aws):
    clock = FakeClock()
    stream = create_stream()
    sequence_numbers = put_numbers([1, 2, 3])

    def failing(event, numbers):
        return InvocationResult(function_error="Unhandled", error_message=f"KeyError: 'amount' (attempt {clock.now})")

    esm = mapping(stream, Recorder(failing), clock=clock, retry_delay_s=1.0)
    esm.poll()
    clock.advance(1.0)
    esm.poll()

    with pytest.raises(TimeoutError) as raised:
        drain([esm], timeout_s=0.2, sleep=lambda _: None)

    message = str(raised.value)
    assert f"3 records {sequence_numbers[1]}..{sequence_numbers[3]} failed 2 times" in message
    assert f"last error: KeyError: 'amount' (attempt {clock.now})" in message
    assert esm.stats.last_error == f"KeyError: 'amount' (attempt {clock.now})"
