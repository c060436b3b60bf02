"""Window aggregation: figures against an independent computation, merge laws, compact bounded state."""

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tributary_shared.aggregator.figures import UnicornFigures, merge_fleet, storable_figures
from tributary_shared.aggregator.readings import (
    MAX_STATUS_MS,
    Reading,
    dynamodb_number_problem,
    format_status_time,
    parse_reading,
    parse_status_time,
)
from tributary_shared.aggregator.window_state import (
    STATE_LIMIT_BYTES,
    STATE_VERSION,
    SetAsideRow,
    UnreadableState,
    WindowState,
    read_state,
    state_size_bytes,
)
from tributary_shared.errors import PoisonRecordError

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
        (  # in DynamoDB's range, but boto3's number context (smallest digit 1E-165) refuses to send it
            {"Name": "A", "Distance": Decimal("1.2345678901234567890123456789012345678E-130"), "MagicPoints": 1,
             "HealthPoints": 1, "StatusTime": "x"},
            "digit below 1E-165",
        ),
        ({"Name": "A", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": 1795262400}, "StatusTime"),
        (  # year 10000 once normalised to UTC: folded on main, it made every close of its window fail
            {"Name": "A", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1,
             "StatusTime": "9999-12-31 23:59:59.999-01:00"},
            r"StatusTime .* is outside 1970-01-01 00:00:00.000..9999-12-31 23:59:59.999 UTC",
        ),
        (
            {"Name": "A", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "1969-12-31 23:59:59.999"},
            "StatusTime .* is outside",
        ),
        (
            {"Name": "\ud800", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"},
            r"Name '\\ud800' has a lone surrogate '\\ud800' at 0, which UTF-8 cannot encode",
        ),
        ({"Name": ["A"], "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"}, "Name"),
        ({"Name": "", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "2026-11-21"}, "Name"),
        ({"Name": "A", "Distance": {"km": 1}, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "x"}, "Distance"),
        ({"Name": "A", "Distance": [1], "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "x"}, "Distance"),
        ({"Name": "A", "Distance": float("inf"), "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "x"}, "Distance"),
        ({"Name": "A", "Distance": 1, "MagicPoints": 10**5000, "HealthPoints": 1, "StatusTime": "x"}, "MagicPoints"),
        (
            {"Name": "A", "Distance": Decimal("1e999999999"), "MagicPoints": 1, "HealthPoints": 1, "StatusTime": "x"},
            "Distance must be 0 or a finite number",
        ),
        ({"Name": "A", "Distance": 1, "MagicPoints": 1, "HealthPoints": 1, "StatusTime": ["2026"]}, "StatusTime"),
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



def test_status_time_range_is_1970_to_9999_in_utc():
    assert parse_status_time("1970-01-01 00:00:00.000") == 0
    assert parse_status_time("9999-12-31 23:59:59.999") == MAX_STATUS_MS
    assert parse_status_time("9999-12-31 23:59:59.999+01:00") == MAX_STATUS_MS - 3_600_000
    assert parse_status_time("1970-01-01 01:00:00.000+01:00") == 0
    for outside in ("1970-01-01 00:59:59.999+01:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59.999-00:01"):
        with pytest.raises(PoisonRecordError, match="outside"):
            parse_status_time(outside)
    with pytest.raises(ValueError, match=r"outside years 1970\.\.9999"):
        format_status_time(MAX_STATUS_MS + 1)


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(lambda minutes: timedelta(minutes=minutes))


@settings(max_examples=300)
@given(st.datetimes(), st.one_of(st.none(), offsets), st.sampled_from(["T", " "]))
def test_every_accepted_status_time_formats_back_to_the_same_instant(moment, offset, separator):
    """Any timestamp of years 1..9999 with any offset is refused or stored; what is stored formats back."""
    text = moment.replace(tzinfo=None if offset is None else timezone(offset)).isoformat(sep=separator)
    try:
        epoch_ms = parse_status_time(text)
    except PoisonRecordError as error:
        assert "outside" in error.reason
        return
    stored = format_status_time(epoch_ms)
    assert parse_status_time(stored) == epoch_ms
    assert datetime.fromisoformat(stored).replace(tzinfo=UTC) == datetime.fromisoformat(text).astimezone(
        UTC
    ).replace(microsecond=datetime.fromisoformat(text).microsecond // 1000 * 1000)


def reading_payload(name="Pegasus", distance=1, status="2026-11-21 12:00:00.000"):
    return {"Name": name, "Distance": distance, "MagicPoints": 1, "HealthPoints": 2, "StatusTime": status}


@pytest.mark.parametrize(
    ("first", "second", "problem"),
    [
        # 1e15 + 1e-30 needs 46 digits: rounding it would change a stored figure.
        (Decimal("1e15"), Decimal("1e-30"), "more than 38 significant digits"),
        # Each is a DynamoDB number; their sum, 1e-131, is below DynamoDB's smallest magnitude.
        (Decimal("1.5e-130"), Decimal("-1.4e-130"), "outside DynamoDB's magnitude range"),
    ],
)
def test_a_reading_whose_addition_would_make_the_sum_unstorable_is_poison_and_the_sum_stays(first, second, problem):
    state = WindowState()
    state.fold(parse_reading(reading_payload(distance=first)), 1)
    row_before = list(state.rows["Pegasus"])
    with pytest.raises(PoisonRecordError, match=f"Distance sum for 'Pegasus' .*{problem}"):
        state.fold(parse_reading(reading_payload(distance=second)), 2)
    assert state.rows["Pegasus"] == row_before and state.last_sequence == 1
    state.fold(parse_reading(reading_payload(distance=first)), 3)  # the unicorn goes on being counted
    assert state.unicorns["Pegasus"].count == 2


hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.text(max_size=30),
    st.text(max_size=5).map(lambda text: text + "\udc80"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
plausible_times = st.datetimes(allow_imaginary=False).map(
    lambda moment: moment.isoformat(sep=" ", timespec="milliseconds")
)


def mostly(valid, hostile):
    """Valid values about four times in five, so readings with every field valid come often too."""
    return st.integers(min_value=0, max_value=4).flatmap(lambda pick: hostile if pick == 0 else valid)


reading_fields = {
    "Name": mostly(st.one_of(st.sampled_from(NAMES[:3]), st.text(min_size=1, max_size=70)), hostile_values),
    "Distance": mostly(st.one_of(decimals, precise_figures), st.one_of(st.decimals(allow_nan=True), hostile_values)),
    "MagicPoints": mostly(points, st.one_of(st.integers(min_value=-(10**40), max_value=10**40), hostile_values)),
    "HealthPoints": mostly(st.one_of(points, st.floats(min_value=-1e15, max_value=1e15)), hostile_values),
    "StatusTime": mostly(plausible_times, hostile_values),
}
hostile_readings = mostly(
    st.fixed_dictionaries(reading_fields, optional={"InputData": hostile_values}),
    st.fixed_dictionaries({}, optional=reading_fields),
)


@settings(max_examples=200)
@given(st.lists(hostile_readings, min_size=1, max_size=10))
def test_every_folded_reading_round_trips_through_state_and_can_be_stored(payloads):
    """Whatever a hostile reading holds, it is poison at fold time or everything closing does with it works."""
    state = WindowState()
    folded = 0
    for sequence, payload in enumerate(payloads, start=1):
        try:
            state.fold(parse_reading(payload), sequence)
        except PoisonRecordError as error:
            assert error.reason
            continue
        folded += 1
    event("some readings folded" if folded else "every reading poison")
    restored = WindowState.from_json(json.loads(json.dumps(state.to_json())))
    closing = restored.closing_figures()
    assert closing.set_aside == []
    assert sum(figures.count for figures in closing.figures.values()) == folded
    for name, figures in closing.figures.items():
        name.encode("utf-8")
        assert parse_status_time(format_status_time(figures.first_status_ms)) == figures.first_status_ms
        assert format_status_time(figures.last_status_ms)
        for number in (figures.distance, figures.min_magic_points, figures.max_health_points):
            assert dynamodb_number_problem(number) is None
    assert state_size_bytes(restored.to_json()) > 0


def test_a_version_1_state_is_migrated_and_rows_it_could_not_store_are_set_aside():
    """A state written by the previous version, holding the reading that stalled its shard on main."""
    main_epoch_ms = MAX_STATUS_MS + 3_600_000  # "9999-12-31 23:59:59.999-01:00" as main folded it
    version_1 = {
        "v": 1,
        "first": "100",
        "last": "104",
        "poison": [1, "103"],
        "u": {
            "Shadowfax": [3, "24.22", 138, 143, 149, 152, BASE_MS, BASE_MS + 59_999],
            "Bucephalus": [1, 5, 1, 1, 1, 1, main_epoch_ms, main_epoch_ms],
            "\ud800": [1, 5, 1, 1, 1, 1, BASE_MS, BASE_MS],
        },
    }
    state = WindowState.from_json(json.loads(json.dumps(version_1)))
    assert list(state.rows) == ["Shadowfax"]
    assert state.unicorns["Shadowfax"].distance == Decimal("24.22")
    assert (state.first_sequence, state.last_sequence, state.poison_count, state.last_poison_sequence) == (
        100, 104, 1, 103)  # fmt: skip
    reasons = {entry.name: entry.reason for entry in state.set_aside}
    assert "outside 1970-01-01 00:00:00.000..9999-12-31 23:59:59.999 UTC" in reasons["Bucephalus"]
    assert "lone surrogate" in reasons["\ud800"]
    migrated = state.to_json()
    assert migrated["v"] == STATE_VERSION
    assert [entry[:2] for entry in migrated["x"]] == [
        ["Bucephalus", version_1["u"]["Bucephalus"]], ["\ud800", version_1["u"]["\ud800"]]]  # fmt: skip
    assert WindowState.from_json(json.loads(json.dumps(migrated))) == state  # version 2 reads back as it was
    assert version_1["u"]["Bucephalus"]  # the caller's event is left as it was


def test_a_malformed_row_met_while_folding_is_set_aside_and_the_unicorn_starts_afresh():
    state = WindowState.from_json(
        {"v": STATE_VERSION, "first": "1", "last": "1", "poison": [0, None], "u": {"Pegasus": [1, "x", 1]}, "x": []}
    )
    state.fold(parse_reading(reading_payload(distance=7)), 2)
    assert state.unicorns["Pegasus"].count == 1 and state.unicorns["Pegasus"].distance == 7
    assert state.set_aside == [SetAsideRow("Pegasus", [1, "x", 1], state.set_aside[0].reason)]
    assert "list of 8 figures" in state.set_aside[0].reason


def test_closing_sets_aside_what_cannot_be_stored_and_keeps_the_rest():
    state = WindowState.from_json(
        {
            "v": STATE_VERSION, "first": "1", "last": "9", "poison": [0, None],
            "u": {
                "Good": [2, "3.5", 1, 2, 3, 4, BASE_MS, BASE_MS + 1],
                "Huge": [1, "1e126", 1, 1, 1, 1, BASE_MS, BASE_MS],
                "Late": [1, 1, 1, 1, 1, 1, BASE_MS, MAX_STATUS_MS + 1],
                "Backwards": [1, 1, 1, 1, 1, 1, BASE_MS + 1, BASE_MS],
                "\udfff": [1, 1, 1, 1, 1, 1, BASE_MS, BASE_MS],
            },
            "x": [["Earlier", {"not": "a row"}, "set aside while folding"]],
        }
    )  # fmt: skip
    closing = state.closing_figures()
    assert list(closing.figures) == ["Good"]
    reasons = {entry.name: entry.reason for entry in closing.set_aside}
    assert reasons == {
        "Earlier": "set aside while folding",
        "Huge": "state figure '1e126' is outside DynamoDB's magnitude range "
        "1E-130..9.9999999999999999999999999999999999999E+125",
        "Late": reasons["Late"],
        "Backwards": f"unicorn row's first StatusTime {BASE_MS + 1} is after its last {BASE_MS}",
        "\udfff": reasons["\udfff"],
    }
    assert "outside" in reasons["Late"] and "lone surrogate" in reasons["\udfff"]
    with pytest.raises(ValueError, match="lone surrogate"):
        storable_figures("\udfff", [1, 1, 1, 1, 1, 1, BASE_MS, BASE_MS])


@pytest.mark.parametrize(
    ("state", "problem", "recovered_mark"),
    [
        ({"v": 3, "first": "5", "last": "9", "poison": [0, None], "u": {}}, "version 3 is not one", 9),
        ({"v": True, "last": "9"}, "version True", 9),
        ({"first": "5", "last": "9", "u": {}}, "version None", 9),
        ([1, 2, 3], "must be a JSON object", None),
        ("state", "must be a JSON object", None),
        ({"v": 2, "poison": [0, None], "u": {"A": "row"}}, "no unicorn rows", None),
        ({"v": 2, "u": {}}, "poison entry", None),
        ({"v": 2, "poison": [-1, None], "u": {}, "last": "7"}, "poison entry", 7),
        ({"v": 2, "poison": [0, None], "u": {}, "last": 12}, "sequence number", None),
        ({"v": 2, "poison": [0, None], "u": {}, "last": "\u0661\u0662"}, "sequence number", None),
        ({"v": 2, "poison": [0, None], "u": {"A": [1]}, "last": "3"}, "not the sequence numbers", 3),
        ({"v": 2, "poison": [0, None], "u": {}, "first": "9", "last": "3"}, "above its last", 3),
        ({"v": 2, "poison": [0, None], "u": {}, "x": [["A", 1]], "first": "1", "last": "3"}, "set-aside", 3),
        ({"v": 1, "poison": [0, None], "u": {}, "first": "1"}, "above its last", None),
    ],
)
def test_a_state_that_cannot_be_read_is_reported_with_the_marks_that_can(state, problem, recovered_mark):
    unreadable = read_state(state)
    assert isinstance(unreadable, UnreadableState)
    assert problem in unreadable.reason
    assert unreadable.raw is state
    assert unreadable.fresh.rows == {} and unreadable.fresh.first_sequence is None
    assert unreadable.fresh.last_sequence == recovered_mark
    with pytest.raises(ValueError, match=problem):
        WindowState.from_json(state)


@pytest.mark.parametrize("empty", [None, {}])
def test_a_window_first_invocation_has_an_empty_state(empty):
    assert read_state(empty) == WindowState()
