"""Tumbling windows: boundaries by arrival time, state between invocations, final invokes, early end."""

from esm_support import FakeClock, Recorder, arrivals_follow, create_stream, mapping, numbers_of, put_numbers

from tributary.runtime.esm import STATE_LIMIT_BYTES, InvocationResult


def summing(event, numbers):
    if event["isFinalInvokeForWindow"]:
        return InvocationResult(response=None)
    return InvocationResult(response={"state": {"sum": event["state"].get("sum", 0) + sum(numbers)}})


def window_view(event):
    return (
        numbers_of(event),
        event["window"]["start"],
        event["window"]["end"],
        event["state"],
        event["isFinalInvokeForWindow"],
        event["isWindowTerminatedEarly"],
    )


def test_windows_group_by_arrival_and_end_with_a_final_invoke_carrying_the_state(aws, monkeypatch):
    clock = FakeClock()  # 2027-01-15T08:00:00Z
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1, 2])
    clock.advance(30)
    put_numbers([3])
    clock.advance(40)  # 70 s: the next window
    put_numbers([4, 5])
    clock.advance(5)
    function = Recorder(summing)
    esm = mapping(stream, function, tumbling_window_s=60, clock=clock)

    while esm.poll():
        pass
    assert not esm.is_drained()  # the second window is still open
    clock.advance(60)
    while esm.poll():
        pass

    assert [window_view(event) for event in function.events] == [
        ([1, 2, 3], "2027-01-15T08:00:00Z", "2027-01-15T08:01:00Z", {}, False, False),
        ([], "2027-01-15T08:00:00Z", "2027-01-15T08:01:00Z", {"sum": 6}, True, False),
        ([4, 5], "2027-01-15T08:01:00Z", "2027-01-15T08:02:00Z", {}, False, False),
        ([], "2027-01-15T08:01:00Z", "2027-01-15T08:02:00Z", {"sum": 9}, True, False),
    ]
    assert all(event["shardId"] == "shardId-000000000000" for event in function.events)
    assert all(event["eventSourceARN"] == stream for event in function.events)
    assert esm.is_drained()
    assert esm.stats.windows_closed == 2


def test_state_passes_between_batches_of_one_window(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1, 2, 3, 4, 5])
    clock.advance(61)
    function = Recorder(summing)
    esm = mapping(stream, function, tumbling_window_s=60, batch_size=2, clock=clock)

    while esm.poll():
        pass

    assert [(numbers_of(e), e["state"], e["isFinalInvokeForWindow"]) for e in function.events] == [
        ([1, 2], {}, False),
        ([3, 4], {"sum": 3}, False),
        ([5], {"sum": 10}, False),
        ([], {"sum": 15}, True),
    ]


def test_state_over_one_megabyte_ends_the_window_early_and_it_continues_fresh(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1, 2, 3, 4])
    clock.advance(61)

    def bloating(event, numbers):
        if event["isFinalInvokeForWindow"]:
            return InvocationResult(response=None)
        state = {"seen": event["state"].get("seen", []) + numbers}
        if 2 in numbers:
            state["padding"] = "x" * STATE_LIMIT_BYTES
        return InvocationResult(response={"state": state})

    function = Recorder(bloating)
    esm = mapping(stream, function, tumbling_window_s=60, batch_size=2, clock=clock)

    while esm.poll():
        pass

    views = [(numbers_of(e), e["state"].get("seen"), e["isFinalInvokeForWindow"], e["isWindowTerminatedEarly"],
              e["window"]["start"]) for e in function.events]
    start = "2027-01-15T08:00:00Z"
    assert views == [
        ([1, 2], None, False, False, start),
        ([], [1, 2], True, True, start),
        ([3, 4], None, False, False, start),
        ([], [3, 4], True, False, start),
    ]


def test_a_response_without_state_is_a_function_error(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1])
    function = Recorder(lambda event, numbers: InvocationResult(response={"count": 1}))
    esm = mapping(stream, function, tumbling_window_s=60, maximum_retry_attempts=1, clock=clock)

    esm.poll()
    esm.poll()

    assert function.batches == [[1], [1]]
    assert esm.stats.function_errors == 2
    assert esm.stats.records_discarded == 1


def test_a_failed_final_invoke_is_retried_until_it_succeeds(aws, monkeypatch):
    clock = FakeClock()
    arrivals_follow(monkeypatch, clock)
    stream = create_stream()
    put_numbers([1])
    clock.advance(61)
    finals = iter([InvocationResult(function_error="Unhandled"), InvocationResult(response=None)])

    def flaky_final(event, numbers):
        return next(finals) if event["isFinalInvokeForWindow"] else summing(event, numbers)

    function = Recorder(flaky_final)
    esm = mapping(stream, function, tumbling_window_s=60, maximum_retry_attempts=0, clock=clock)

    while esm.poll():
        pass

    assert [(numbers_of(e), e["isFinalInvokeForWindow"]) for e in function.events] == [
        ([1], False), ([], True), ([], True),
    ]
    assert esm.is_drained()
