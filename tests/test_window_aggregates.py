"""Window aggregation: figures against an independent computation, merge laws, compact bounded state."""

import json
import random
from collections import defaultdict
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tributary_shared.errors import PoisonRecordError
from tributary_shared.window_aggregates import (
    STATE_LIMIT_BYTES,
    Reading,
    UnicornFigures,
    WindowState,
    format_status_time,
    merge_fleet,
    parse_reading,
    parse_status_time,
    state_size_bytes,
)

WINDOW_MS = 60_000
BASE_MS = 1_795_262_400_000  # 2026-11-21T12:00:00Z, a window boundary
NAMES = [f"Unicorn-{index:02d}" for index in range(12)]

decimals = st.decimals(min_value=-1000, max_value=1000, places=3, allow_nan=False, allow_infinity=False)
points = st.integers(min_value=0, max_value=250)
# Arrival times cluster on window boundaries (-1 ms, exactly on, +1 ms) as well as anywhere.
arrivals = st.one_of(
    st.integers(min_value=0, max_value=4 * WINDOW_MS - 1),
    st.builds(lambda w, d: w * WINDOW_MS + d, st.integers(1, 3), st.sampled_from([-1, 0, 1])),
)
raw_records = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2),  # shard
        arrivals,
        st.sampled_from(NAMES),
        decimals,
        points,
        points,
        st.integers(min_value=-WINDOW_MS, max_value=5 * WINDOW_MS),  # StatusTime offset: any order
    ),
    max_size=150,
)


def fold_readings(readings):
    """Per-unicorn figures of some readings, one reading at a time."""
    fleet = {}
    for reading in readings:
        fleet = merge_fleet(fleet, {reading.name: UnicornFigures.of(reading)})
    return fleet


def payload(name, distance, magic, health, status_ms):
    return {
        "Name": name,
        "StatusTime": format_status_time(BASE_MS + status_ms),
        "Distance": distance,
        "MagicPoints": magic,
        "HealthPoints": health,
    }


def independent_figures(records):
    """(window, name) -> figures computed straight from the records, without the module's types."""
    groups = defaultdict(list)
    for _, arrival, name, distance, magic, health, status_ms in records:
        groups[(arrival // WINDOW_MS, name)].append((distance, magic, health, BASE_MS + status_ms))
    return {
        key: (
            len(rows),
            sum((row[0] for row in rows), Decimal(0)),
            min(row[1] for row in rows),
            max(row[1] for row in rows),
            min(row[2] for row in rows),
            max(row[2] for row in rows),
            min(row[3] for row in rows),
            max(row[3] for row in rows),
        )
        for key, rows in groups.items()
    }


def as_tuple(figures: UnicornFigures):
    return (
        figures.count,
        figures.distance,
        figures.min_magic_points,
        figures.max_magic_points,
        figures.min_health_points,
        figures.max_health_points,
        figures.first_status_ms,
        figures.last_status_ms,
    )


def run_like_lambda(records, batch_seed):
    """Per shard, in arrival (= sequence) order, windows by arrival time, random batch cuts; state
    goes through JSON between invocations exactly as Lambda hands it back. -> {(shard, window): fleet}"""
    rng = random.Random(batch_seed)
    by_shard_window = defaultdict(list)
    ordered = sorted(enumerate(records), key=lambda pair: (pair[1][0], pair[1][1], pair[0]))
    for sequence, (_, record) in enumerate(ordered, start=10**20):
        shard, arrival = record[0], record[1]
        by_shard_window[(shard, arrival // WINDOW_MS)].append((sequence, record))
    results = {}
    for key, window_records in by_shard_window.items():
        state_json: dict = {}
        position = 0
        while position < len(window_records):
            size = rng.randint(1, 7)
            state = WindowState.from_json(json.loads(json.dumps(state_json)))
            for sequence, (_, _, name, distance, magic, health, status_ms) in window_records[
                position : position + size
            ]:
                state.fold(parse_reading(payload(name, distance, magic, health, status_ms)), sequence)
            state_json = state.to_json()
            position += size
        results[key] = WindowState.from_json(json.loads(json.dumps(state_json))).unicorns
    return results


@settings(max_examples=150, deadline=None)
@given(raw_records, st.integers())
def test_figures_match_an_independent_computation(records, batch_seed):
    per_shard = run_like_lambda(records, batch_seed)
    combined: dict = defaultdict(dict)
    for (_, window), fleet in per_shard.items():
        combined[window] = merge_fleet(combined[window], fleet)
    got = {(window, name): as_tuple(figures) for window, fleet in combined.items() for name, figures in fleet.items()}
    assert got == independent_figures(records)


@settings(max_examples=80, deadline=None)
@given(raw_records, st.integers())
def test_every_record_lands_in_exactly_one_shard_window(records, batch_seed):
    per_shard = run_like_lambda(records, batch_seed)
    assert sum(f.count for fleet in per_shard.values() for f in fleet.values()) == len(records)
    for (shard, window), fleet in per_shard.items():
        expected = sum(1 for r in records if r[0] == shard and r[1] // WINDOW_MS == window)
        assert sum(f.count for f in fleet.values()) == expected


readings = st.builds(
    Reading,
    st.sampled_from(NAMES[:3]),
    decimals,
    points.map(Decimal),
    points.map(Decimal),
    st.integers(min_value=BASE_MS, max_value=BASE_MS + 10 * WINDOW_MS),
)
figures = readings.map(UnicornFigures.of)
fleets = st.lists(readings, max_size=8).map(fold_readings)


@given(figures, figures, figures)
def test_merge_is_associative_and_commutative(a, b, c):
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b) == b.merge(a)


@given(fleets, fleets, fleets)
def test_fleet_merge_is_associative_and_commutative(a, b, c):
    assert merge_fleet(merge_fleet(a, b), c) == merge_fleet(a, merge_fleet(b, c))
    assert merge_fleet(a, b) == merge_fleet(b, a)


@given(st.lists(readings, max_size=20), st.integers(min_value=0, max_value=20))
def test_folding_in_two_parts_and_merging_equals_folding_all(all_readings, cut):
    assert merge_fleet(fold_readings(all_readings[:cut]), fold_readings(all_readings[cut:])) == fold_readings(
        all_readings
    )


@given(st.lists(readings, min_size=1, max_size=20))
def test_state_survives_json_and_skips_redelivered_records(all_readings):
    state = WindowState()
    for sequence, reading in enumerate(all_readings, start=1):
        state.fold(reading, sequence)
    restored = WindowState.from_json(json.loads(json.dumps(state.to_json())))
    assert restored == state
    # A retry re-delivers records the returned state already holds: none is counted twice.
    for sequence, _ in enumerate(all_readings, start=1):
        assert restored.already_folded(sequence)
    assert not restored.already_folded(len(all_readings) + 1)
    assert restored.unicorns == fold_readings(all_readings)
    assert restored.first_sequence == 1


# Up to 15 integer digits and 20 decimals: 35 significant digits, as many as DynamoDB keeps (38)
# once a few dozen are added up, more than Python's default 28-digit context.
precise_figures = st.integers(min_value=-(10**35) + 1, max_value=10**35 - 1).map(lambda n: Decimal(n).scaleb(-20))


@settings(max_examples=100, deadline=None)
@given(st.lists(precise_figures, min_size=2, max_size=60), st.integers(min_value=1, max_value=7))
def test_distance_sums_keep_dynamodb_precision(distances, batch_size):
    state_json: dict = {}
    for start in range(0, len(distances), batch_size):
        state = WindowState.from_json(json.loads(json.dumps(state_json)))
        for sequence, distance in enumerate(distances[start : start + batch_size], start=start + 1):
            state.fold(parse_reading(payload("Precise", distance, 1, 1, 0)), sequence)
        state_json = state.to_json()
    with localcontext(prec=200):
        exact = sum(distances, Decimal(0))
    assert WindowState.from_json(state_json).unicorns["Precise"].distance == exact


def test_poison_records_are_counted_once_however_often_redelivered():
    state = WindowState()
    assert state.count_poison(500)
    assert not state.count_poison(500)
    assert state.count_poison(900)
    assert state.poison_count == 2
    assert state.rows == {}


def realistic_state(unicorns: int, name_chars: int) -> WindowState:
    rng = random.Random(7)
    state = WindowState()
    sequence = 49656834216710451283762412935735891405936473474393636866
    for index in range(unicorns):
        name = f"U{index:0{name_chars - 1}d}"
        for _ in range(3):
            distance = rng.uniform(0, 20)  # a float, as a producer sends it: repr has ~17 digits
            reading = parse_reading(
                payload(name, distance, rng.randint(0, 250), rng.randint(0, 250), rng.randint(0, WINDOW_MS))
            )
            sequence += 1000
            state.fold(reading, sequence)
    return state


def test_thousands_of_unicorns_fit_well_under_the_state_limit():
    state = realistic_state(5000, name_chars=16)
    size = state_size_bytes(state.to_json())
    assert size < STATE_LIMIT_BYTES * 0.6, size
    assert size / 5000 < 120


def test_even_longest_names_leave_room_for_thousands():
    per_unicorn = state_size_bytes(realistic_state(500, name_chars=64).to_json()) / 500
    assert STATE_LIMIT_BYTES / per_unicorn > 5000


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21 12:00:00"}, "Name"),
        ({"Name": "x" * 65, "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"}, "Name"),
        ({"Name": "A", "Distance": True, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"}, "Distance"),
        ({"Name": "A", "Distance": "3", "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"}, "Distance"),
        (
            {"Name": "A", "Distance": Decimal("NaN"), "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"},
            "Distance",
        ),
        ({"Name": "A", "Distance": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"}, "MagicPoints"),
        ({"Name": "A", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1e300, "StatusTime": "x"}, "HealthPoints"),
        ({"Name": "A", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "yesterday"}, "StatusTime"),
        (
            {"Name": "A", "Distance": Decimal("1." + "1" * 38), "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "x"},
            "significant digits",
        ),
        (
            {"Name": "A", "Distance": Decimal("1e-131"), "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "x"},
            "Distance",
        ),
        ({"Name": "A", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": 1795262400}, "StatusTime"),
        (  # `tributary produce --error`'s pill: a valid reading its producer marked as an error
            {"Name": "A", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21 09:17:08.189",
             "InputData": "error: poison pill"},
            "InputData reports an error",
        ),
    ],
)
def test_invalid_readings_are_poison_and_say_why(record, problem):
    with pytest.raises(PoisonRecordError, match=problem):
        parse_reading(record)


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_status_time_round_trips_through_the_wildrydes_format(epoch_ms):
    assert parse_status_time(format_status_time(epoch_ms)) == epoch_ms


def test_status_time_accepts_iso_forms_and_treats_naive_as_utc():
    assert parse_status_time("2026-11-21 12:00:00.250") == BASE_MS + 250
    assert parse_status_time("2026-11-21T12:00:00Z") == BASE_MS
    assert parse_status_time("2026-11-21T13:00:00+01:00") == BASE_MS


@pytest.mark.parametrize(
    "state",
    [
        {"v": 2, "u": {}},
        {"v": 1, "poison": [0, None], "u": {"A": [1, "1"]}},
        {"v": 1, "poison": [0, None], "u": {"A": [1, "x", 1, 1, 1, 1, 0, 0]}},
        {"v": 1, "poison": [0, None], "u": {}, "last": 12},
        {"v": 1, "poison": [0, None], "u": {"A": "row"}},
        {"v": 1, "u": {}},
    ],
)
def test_malformed_state_is_refused_with_a_reason(state):
    with pytest.raises(ValueError, match=r"state|row|figure|sequence"):
        _ = WindowState.from_json(state).unicorns  # rows are checked when read, other parts at once
