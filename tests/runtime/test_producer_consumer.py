"""The produce and consume commands: generators, pacing, and producer -> moto stream -> consumer."""

import io
import itertools
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import fastavro
import pytest
from botocore.exceptions import ClientError
from support import SCHEMAS_DIR, FakeClock, definition

from tributary import consumer, producer, stop_signals
from tributary.commands import main as tributary
from tributary_shared.avro_schemas import parse_definition


def consume(capsys, *options: str) -> tuple[list[dict], list[dict]]:
    assert consumer.main("consume", ["--from", "TRIM_HORIZON", "--poll-interval", "0", *options]) == 0
    out, err = capsys.readouterr()
    errors = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in out.splitlines()], errors


# ------------------------------------------------------------------------------------ generators


def test_unicorn_statuses_match_the_schema_and_take_turns():
    start = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    statuses = list(itertools.islice(producer.unicorn_statuses(["A", "B"], start=start, seed=1), 6))
    schema = parse_definition(definition("unicorn_status"))
    assert all(fastavro.validate(status, schema) for status in statuses)
    assert [s["Name"] for s in statuses] == ["A", "B"] * 3
    assert [s["StatusTime"] for s in statuses[::2]] == [
        "2026-11-21 12:00:00.000", "2026-11-21 12:00:01.000", "2026-11-21 12:00:02.000"
    ]
    again = list(itertools.islice(producer.unicorn_statuses(["A", "B"], start=start, seed=1), 6))
    assert again == statuses


def test_payment_events_walk_a_lifecycle_per_payment():
    events = list(itertools.islice(producer.payment_events(seed=7), 500))
    schema = parse_definition(definition("payment_event_v2"))
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
    progress.finish(producer.PutReport(sent=5, retried=1))
    drawn = terminal.getvalue()
    assert "5/10" in drawn and "sent 5  retried 1  failed 0" in drawn
    assert drawn.rstrip().endswith("sent 5, retried 1, failed 0")


def test_off_a_terminal_only_the_final_counts_are_printed():
    piped = io.StringIO()
    progress = producer.Progress(total=10, stream=piped)
    progress.update(5, 1, 0)
    progress.finish(producer.PutReport(sent=10, retried=1))
    assert piped.getvalue() == "sent 10, retried 1, failed 0\n"


# ------------------------------------------------------------------------------------ round trips


def test_unicorn_json_through_a_stream_and_back(stream, capsys):
    stream()
    argv = ["unicorns", "--stream", "wildrydes", "--msgs", "30", "--rate", "0", "--name", "Shadowfax",
            "--name", "Rocinante"]
    assert producer.main("produce", argv) == 0
    assert "sent 30, retried 0, failed 0" in capsys.readouterr().err
    lines, errors = consume(capsys, "--stream", "wildrydes", "--max-records", "30")
    assert len(lines) == 30 and not errors
    assert {line["Name"] for line in lines} == {"Shadowfax", "Rocinante"}
    assert set(lines[0]) == {"Name", "StatusTime", "Latitude", "Longitude", "Distance", "MagicPoints", "HealthPoints"}


def test_unicorn_avro_with_poison_pills(stream, capsys):
    stream()
    argv = ["unicorns", "--stream", "wildrydes", "--msgs", "40", "--rate", "0", "--unicorns", "3", "--format", "avro",
            "--error", "--compress"]
    assert producer.main("produce", argv) == 0
    capsys.readouterr()
    lines, errors = consume(capsys, "--stream", "wildrydes", "--idle-exit", "0")
    assert len(lines) == 38 and len(errors) == 2
    assert sum("InputData" in line for line in lines) == 2
    assert all(error["permanent"] and "body is truncated" in error["error"] for error in errors)


def test_payments_in_avro_evolve_from_v1_to_v2(stream, capsys):
    stream("payments", shards=1)
    assert producer.main("produce", ["payments", "--msgs", "10", "--rate", "0"]) == 0
    v2 = str(SCHEMAS_DIR / "payment_event_v2.avsc")
    assert producer.main("produce", ["payments", "--msgs", "10", "--rate", "0", "--schema", v2]) == 0
    capsys.readouterr()
    lines, errors = consume(capsys, "--stream", "payments", "--max-records", "20")
    assert not errors and len(lines) == 20
    assert ["channel" in line for line in lines] == [False] * 10 + [True] * 10
    assert lines[0]["createdAt"].endswith("Z") and isinstance(lines[0]["amount"], int | float)
    v1 = str(SCHEMAS_DIR / "payment_event_v1.avsc")
    projected, _ = consume(capsys, "--stream", "payments", "--max-records", "20", "--reader-schema", v1)
    assert not any("channel" in line for line in projected)


def test_an_incompatible_schema_is_refused_before_anything_is_sent(stream, capsys, tmp_path):
    stream("payments", shards=1)
    assert producer.main("produce", ["payments", "--msgs", "1", "--rate", "0"]) == 0
    breaking = json.loads((SCHEMAS_DIR / "payment_event_v1.avsc").read_text())
    breaking["fields"].append({"name": "merchant", "type": "string"})
    path = tmp_path / "breaking.avsc"
    path.write_text(json.dumps(breaking))
    argv = ["produce", "payments", "--msgs", "5", "--rate", "0", "--schema", str(path)]
    assert tributary(argv) == 2
    assert "merchant" in capsys.readouterr().err
    argv += ["--no-auto-register"]
    assert tributary(argv) == 2
    assert "auto-registration is off" in capsys.readouterr().err


def test_dms_mode_puts_the_scripted_changes(stream, capsys):
    from tributary.dms_changes import generate_changes

    stream("optin-cdc", shards=1)
    assert producer.main("produce", ["dms", "--users", "6"]) == 0
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


def test_a_missing_stream_is_reported_not_retried_naming_the_streams_there_are(stream, capsys):
    stream("wildrydes", shards=1)
    assert tributary(["produce", "unicorns", "--stream", "nowhere", "--msgs", "1", "--rate", "0"]) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("tributary produce: no stream 'nowhere' at http://127.0.0.1:")
    assert last_line.endswith("pass --stream with one of the streams there: wildrydes")


def test_consume_names_a_missing_stream_and_the_streams_there_are(stream, capsys):
    stream("wildrydes", shards=1)
    stream("payments", shards=1)
    assert tributary(["consume", "--stream", "wildryde", "--idle-exit", "0"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "no stream 'wildryde'" in error and "one of the streams there: payments, wildrydes" in error


def test_with_no_streams_at_all_consume_asks_whether_the_runtime_is_up(aws, capsys):
    assert tributary(["consume", "--stream", "wildrydes"]) == 2
    assert "there are no streams (is `tributary up` running there" in capsys.readouterr().err


class StopsOnSecondPut:
    """Kinesis that takes the first PutRecords and then is stopped by `stop` (Ctrl-C, access denied)."""

    def __init__(self, kinesis, stop: BaseException) -> None:
        self.kinesis = kinesis
        self.stop = stop
        self.calls = 0

    def put_records(self, **request):
        self.calls += 1
        if self.calls > 1:
            raise self.stop
        return self.kinesis.put_records(**request)


@pytest.mark.parametrize(
    ("stop", "exit_code"),
    [
        (KeyboardInterrupt(), 130),
        (ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutRecords"), 2),
    ],
)
def test_an_aborted_run_reports_what_it_sent_and_counts_the_rest_as_failed(stream, capsys, monkeypatch, stop,
                                                                          exit_code):
    stream()
    kinesis = StopsOnSecondPut(boto3.client("kinesis"), stop)
    monkeypatch.setattr(producer, "aws_client", lambda service, endpoint_url: kinesis)
    argv = ["produce", "unicorns", "--stream", "wildrydes", "--msgs", "120", "--rate", "0", "--unicorns", "50"]
    assert tributary(argv) == exit_code
    # 50 unicorns: requests of 50, 50 and 20 (one record per unicorn each); the second is stopped.
    assert "sent 50, retried 0, failed 70" in capsys.readouterr().err


class CtrlCDuringFirstCall:
    """Kinesis on which the user presses Ctrl-C while the first `method` call is in flight."""

    def __init__(self, kinesis, method: str) -> None:
        self.kinesis = kinesis
        self.method = method
        self.calls = 0

    def __getattr__(self, name: str):
        call = getattr(self.kinesis, name)
        if name != self.method:
            return call

        def counted(**request):
            self.calls += 1
            if self.calls == 1:
                os.kill(os.getpid(), signal.SIGINT)
            return call(**request)

        return counted


def test_ctrl_c_lets_the_chunk_in_flight_finish_then_stops_with_nothing_unaccounted(stream, capsys, monkeypatch):
    stream()
    kinesis = CtrlCDuringFirstCall(boto3.client("kinesis"), "put_records")
    monkeypatch.setattr(producer, "aws_client", lambda service, endpoint_url: kinesis)
    argv = ["produce", "unicorns", "--stream", "wildrydes", "--msgs", "1200", "--rate", "0", "--unicorns", "50"]
    assert tributary(argv) == 130
    # Chunks of 500; 50 unicorns make requests of 50 (one record per unicorn each): 10 for the first chunk.
    assert kinesis.calls == 10
    assert "sent 500, retried 0, failed 0" in capsys.readouterr().err


def test_ctrl_c_during_a_pacing_pause_sends_nothing_more(stream, capsys, monkeypatch):
    stream()
    pauses = []

    def pause_then_ctrl_c(seconds: float) -> None:
        pauses.append(seconds)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(stop_signals, "sleep", pause_then_ctrl_c)
    # Half a record a second: one record, then a 2-second pause, in which the user presses Ctrl-C.
    assert tributary(["produce", "unicorns", "--stream", "wildrydes", "--msgs", "5", "--rate", "0.5"]) == 130
    assert len(pauses) == 1
    assert "sent 1, retried 0, failed 0" in capsys.readouterr().err


def test_ctrl_c_stops_the_consumer_after_printing_the_round_in_hand(stream, capsys, monkeypatch):
    stream(shards=1)
    assert producer.main("produce", ["unicorns", "--stream", "wildrydes", "--msgs", "3", "--rate", "0"]) == 0
    capsys.readouterr()
    kinesis = CtrlCDuringFirstCall(boto3.client("kinesis"), "get_records")
    monkeypatch.setattr(consumer, "aws_client", lambda service, endpoint_url: kinesis)
    # No --idle-exit: only the stop request ends it, as an interruption (`interrupted`, exit 130).
    assert tributary(["consume", "--stream", "wildrydes", "--from", "TRIM_HORIZON", "--poll-interval", "0"]) == 130
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 and err == "interrupted\n"
    assert kinesis.calls == 1


# ------------------------------------------------------------------------------------ the tail


def test_latest_is_the_default_start(stream, capsys, monkeypatch):
    stream(shards=1)
    kinesis = boto3.client("kinesis")
    kinesis.put_record(StreamName="wildrydes", PartitionKey="old", Data=b'{"seen": "before the tail"}')
    refresh = consumer.StreamTail.refresh_shards

    def refresh_then_put(tail: consumer.StreamTail) -> None:
        first = not tail.shards
        refresh(tail)
        if first:  # the tail holds its LATEST iterators now: this record is after them
            kinesis.put_record(StreamName="wildrydes", PartitionKey="new", Data=b'{"seen": "after"}')

    monkeypatch.setattr(consumer.StreamTail, "refresh_shards", refresh_then_put)
    argv = ["--stream", "wildrydes", "--poll-interval", "0", "--max-records", "1", "--idle-exit", "20"]
    assert consumer.main("consume", argv) == 0
    assert capsys.readouterr().out.splitlines() == ['{"seen": "after"}']


class BehindForAWhile:
    """Kinesis whose first GetRecords answers per shard are empty but behind: a gap in the shard."""

    def __init__(self, kinesis, empty_answers: int) -> None:
        self.kinesis = kinesis
        self.empty_answers = empty_answers
        self.get_records_calls = 0

    def __getattr__(self, name: str):
        return getattr(self.kinesis, name)

    def get_records(self, **request):
        self.get_records_calls += 1
        if self.get_records_calls <= self.empty_answers:
            return {"Records": [], "NextShardIterator": request["ShardIterator"], "MillisBehindLatest": 60_000}
        return self.kinesis.get_records(**request)


def test_idle_exit_waits_until_every_shard_is_at_its_tip(stream, capsys, monkeypatch):
    stream(shards=2)
    argv = ["unicorns", "--stream", "wildrydes", "--msgs", "6", "--rate", "0", "--unicorns", "3"]
    assert producer.main("produce", argv) == 0
    capsys.readouterr()
    gappy = BehindForAWhile(boto3.client("kinesis"), empty_answers=4)
    monkeypatch.setattr(consumer, "aws_client", lambda service, endpoint_url: gappy)
    lines, errors = consume(capsys, "--stream", "wildrydes", "--idle-exit", "0")
    assert len(lines) == 6 and not errors


class Throttling:
    """Kinesis that throttles the first ListShards and the first two GetRecords calls."""

    def __init__(self, kinesis) -> None:
        self.kinesis = kinesis
        self.throttles = {"list_shards": 1, "get_records": 2}

    def __getattr__(self, name: str):
        call = getattr(self.kinesis, name)
        if name not in self.throttles:
            return call

        def maybe_throttled(**request):
            if self.throttles[name]:
                self.throttles[name] -= 1
                raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, name)
            return call(**request)

        return maybe_throttled


def test_the_tail_backs_off_when_throttled_and_paces_each_shard(stream):
    stream(shards=1)
    kinesis = boto3.client("kinesis")
    kinesis.put_record(StreamName="wildrydes", PartitionKey="k", Data=b"{}")
    clock = FakeClock()
    tail = consumer.StreamTail(Throttling(kinesis), "wildrydes", "TRIM_HORIZON", clock=clock, sleep=clock.sleep)
    called_at: list[float] = []
    get_records = kinesis.get_records
    kinesis.get_records = lambda **request: called_at.append(clock.now) or get_records(**request)
    tail.refresh_shards()  # the throttled ListShards is retried
    rounds = [tail.poll() for _ in range(4)]
    assert [len(r.records) for r in rounds] == [0, 0, 1, 0]
    assert not rounds[0].caught_up and rounds[3].idle
    assert len(called_at) == 2  # the throttled calls never reached the stream
    assert called_at[0] >= 2 * consumer.MIN_GET_RECORDS_INTERVAL  # each throttle pushed the next call back
    assert called_at[1] - called_at[0] == pytest.approx(consumer.MIN_GET_RECORDS_INTERVAL)


class ReshardedKinesis:
    """A stream split once: the parent holds a key's first records, a child its later ones.

    ListShards names the child first, as nothing promises parents come first.
    """

    def __init__(self) -> None:
        self.data = {"shardId-000000000000": [b"p1", b"p2"], "shardId-000000000001": [b"c1", b"c2"]}
        self.polls: list[str] = []

    def list_shards(self, **request):
        return {
            "Shards": [
                {"ShardId": "shardId-000000000001", "ParentShardId": "shardId-000000000000",
                 "SequenceNumberRange": {"StartingSequenceNumber": "10"}},
                {"ShardId": "shardId-000000000000",
                 "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "9"}},
            ]
        }

    def get_shard_iterator(self, StreamName: str, ShardId: str, ShardIteratorType: str, **options):
        assert ShardIteratorType == "TRIM_HORIZON"
        return {"ShardIterator": f"{ShardId}:0"}

    def get_records(self, ShardIterator: str, Limit: int):
        shard_id, position = ShardIterator.rsplit(":", 1)
        self.polls.append(shard_id)
        records = self.data[shard_id][int(position):int(position) + 1]
        done = int(position) + len(records)
        closed_and_done = shard_id.endswith("0") and done == len(self.data[shard_id])
        return {
            "Records": [{"Data": data, "SequenceNumber": str(done), "PartitionKey": "K"} for data in records],
            "NextShardIterator": None if closed_and_done else f"{shard_id}:{done}",
            "MillisBehindLatest": 0 if done == len(self.data[shard_id]) else 1000,
        }


def test_a_child_shard_is_read_after_its_parent_is_read_to_the_end():
    clock = FakeClock()
    kinesis = ReshardedKinesis()
    tail = consumer.StreamTail(kinesis, "s", "TRIM_HORIZON", clock=clock, sleep=clock.sleep)
    tail.refresh_shards()
    read: list[bytes] = []
    for _ in range(10):
        result = tail.poll()
        read += [record["Data"] for record in result.records]
        if result.idle:
            break
    assert read == [b"p1", b"p2", b"c1", b"c2"]
    assert kinesis.polls[:2] == ["shardId-000000000000"] * 2
