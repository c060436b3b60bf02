"""The produce and consume commands: generators, pacing, and producer -> moto stream -> consumer."""

import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import fastavro
import pytest

from tributary import consumer, producer
from tributary_shared import payloads
from tributary_shared.avro_codec import canonical_definition, parse_definition

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@pytest.fixture(autouse=True)
def fresh_decoder():
    yield
    payloads.set_framed_decoder(None)


@pytest.fixture
def stream(aws):
    def create(name: str = "wildrydes", shards: int = 2) -> str:
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
        return name

    return create


def consume(capsys, *options: str) -> tuple[list[dict], list[dict]]:
    assert consumer.main("consume", ["--from", "TRIM_HORIZON", "--poll-interval", "0", *options]) == 0
    out, err = capsys.readouterr()
    errors = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in out.splitlines()], errors


# ------------------------------------------------------------------------------------ generators


def test_unicorn_statuses_match_the_schema_and_take_turns():
    start = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    statuses = list(itertools.islice(producer.unicorn_statuses(["A", "B"], start=start, seed=1), 6))
    schema = parse_definition(canonical_definition((SCHEMAS / "unicorn_status.avsc").read_text()))
    assert all(fastavro.validate(status, schema) for status in statuses)
    assert [s["Name"] for s in statuses] == ["A", "B"] * 3
    assert [s["StatusTime"] for s in statuses[::2]] == [
        "2026-11-21 12:00:00.000", "2026-11-21 12:00:01.000", "2026-11-21 12:00:02.000"
    ]
    again = list(itertools.islice(producer.unicorn_statuses(["A", "B"], start=start, seed=1), 6))
    assert again == statuses


def test_payment_events_walk_a_lifecycle_per_payment():
    events = list(itertools.islice(producer.payment_events(seed=7), 500))
    schema = parse_definition(canonical_definition((SCHEMAS / "payment_event_v2.avsc").read_text()))
    assert all(fastavro.validate(event, schema) for event in events)
    by_payment: dict[str, list[str]] = {}
    for event in events:
        by_payment.setdefault(event["paymentId"], []).append(event["status"])
        assert event["amount"] == event["amount"].quantize(Decimal("0.01"))
    lifecycles = {tuple(cycle) for cycle in producer.PAYMENT_LIFECYCLES}
    assert all(any(cycle[: len(seen)] == tuple(seen) for cycle in lifecycles) for seen in by_payment.values())
    assert len(by_payment) > 50


def test_every_tenth_record_is_a_poison_pill_alternating_kinds():
    records = (("k", {"Name": "A"}, b'{"Name":"A"}') for _ in range(40))
    entries = list(producer.with_poison_pills(records))
    pills = [data for position, (_, data) in enumerate(entries, 1) if position % 10 == 0]
    assert [b"InputData" in pill for pill in pills] == [True, False, True, False]
    assert pills[1] == b'{"Name'
    assert all(data == b'{"Name":"A"}' for position, (_, data) in enumerate(entries, 1) if position % 10)


def test_pacing_releases_records_at_the_rate():
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    entries = [("k", b"x")] * 7
    chunks = list(producer.paced(entries, 2.0, clock=lambda: now[0], sleep=sleep))
    assert sum(len(chunk) for chunk in chunks) == 7
    assert now[0] == pytest.approx(3.5)
    assert [len(chunk) for chunk in producer.paced([("k", b"x")] * 1201, 0)] == [500, 500, 201]


def test_the_progress_bar_draws_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    progress = producer.Progress(total=10, stream=terminal)
    progress.update(5, 1, 0)
    assert "[###############...............] 5/10  sent 5  retried 1  failed 0" in terminal.getvalue()


# ------------------------------------------------------------------------------------ round trips


def test_unicorn_json_through_a_stream_and_back(stream, capsys):
    stream()
    argv = ["--stream", "wildrydes", "--msgs", "30", "--rate", "0", "--name", "Shadowfax", "--name", "Rocinante"]
    assert producer.main("produce", argv) == 0
    assert "sent 30, retried 0, failed 0" in capsys.readouterr().err
    lines, errors = consume(capsys, "--stream", "wildrydes", "--max-records", "30")
    assert len(lines) == 30 and not errors
    assert {line["Name"] for line in lines} == {"Shadowfax", "Rocinante"}
    assert set(lines[0]) == {"Name", "StatusTime", "Latitude", "Longitude", "Distance", "MagicPoints", "HealthPoints"}


def test_unicorn_avro_with_poison_pills(stream, capsys):
    stream()
    argv = ["--stream", "wildrydes", "--msgs", "40", "--rate", "0", "--unicorns", "3", "--format", "avro",
            "--error", "--compress"]
    assert producer.main("produce", argv) == 0
    capsys.readouterr()
    lines, errors = consume(capsys, "--stream", "wildrydes", "--idle-exit", "0")
    assert len(lines) == 38 and len(errors) == 2
    assert sum("InputData" in line for line in lines) == 2
    assert all(error["permanent"] and "body is truncated" in error["error"] for error in errors)


def test_payments_in_avro_evolve_from_v1_to_v2(stream, capsys):
    stream("payments", shards=1)
    assert producer.main("produce", ["--mode", "payment", "--msgs", "10", "--rate", "0"]) == 0
    v2 = str(SCHEMAS / "payment_event_v2.avsc")
    assert producer.main("produce", ["--mode", "payment", "--msgs", "10", "--rate", "0", "--schema", v2]) == 0
    capsys.readouterr()
    lines, errors = consume(capsys, "--stream", "payments", "--max-records", "20")
    assert not errors and len(lines) == 20
    assert ["channel" in line for line in lines] == [False] * 10 + [True] * 10
    assert lines[0]["createdAt"].endswith("Z") and isinstance(lines[0]["amount"], int | float)
    v1 = str(SCHEMAS / "payment_event_v1.avsc")
    projected, _ = consume(capsys, "--stream", "payments", "--max-records", "20", "--reader-schema", v1)
    assert not any("channel" in line for line in projected)


def test_an_incompatible_schema_is_refused_before_anything_is_sent(stream, capsys, tmp_path):
    stream("payments", shards=1)
    assert producer.main("produce", ["--mode", "payment", "--msgs", "1", "--rate", "0"]) == 0
    breaking = json.loads((SCHEMAS / "payment_event_v1.avsc").read_text())
    breaking["fields"].append({"name": "merchant", "type": "string"})
    path = tmp_path / "breaking.avsc"
    path.write_text(json.dumps(breaking))
    argv = ["--mode", "payment", "--msgs", "5", "--rate", "0", "--schema", str(path)]
    assert producer.main("produce", argv) == 2
    assert "merchant" in capsys.readouterr().err
    argv += ["--no-auto-register"]
    assert producer.main("produce", argv) == 2
    assert "auto-registration is off" in capsys.readouterr().err


def test_dms_mode_puts_the_scripted_changes(stream, capsys):
    from tributary.dms_changes import generate_changes

    stream("optin-cdc", shards=1)
    assert producer.main("produce", ["--mode", "dms", "--users", "6"]) == 0
    expected = len(list(generate_changes(6)))
    assert f"sent {expected}, retried 0, failed 0" in capsys.readouterr().err
    lines, _ = consume(capsys, "--stream", "optin-cdc", "--idle-exit", "0")
    assert len(lines) == expected and lines[0]["metadata"]["record-type"] == "control"


def test_the_summary_stream_and_timestamps(stream, capsys):
    stream("wildrydes-summary", shards=1)
    kinesis = boto3.client("kinesis")
    summary = {"Name": "Shadowfax", "StatusTime": "2026-11-21 12:01:00.000", "Distance": 362, "MaxMagicPoints": 170}
    kinesis.put_record(StreamName="wildrydes-summary", PartitionKey="Shadowfax", Data=json.dumps(summary).encode())
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    at = ["--stream", "wildrydes-summary", "--from", "AT_TIMESTAMP", "--timestamp"]
    lines, _ = consume(capsys, *at, since, "--max-records", "1")
    assert lines == [summary]
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    lines, _ = consume(capsys, *at, later, "--idle-exit", "0")
    assert lines == []


def test_a_missing_stream_is_reported_not_retried(aws, capsys):
    assert producer.main("produce", ["--stream", "nowhere", "--msgs", "1", "--rate", "0"]) == 2
    assert "ResourceNotFoundException" in capsys.readouterr().err
