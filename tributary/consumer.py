"""`tributary consume`: tail every shard of a stream and print one decoded JSON object per line.

Records are decoded like the Lambda functions decode them (tributary_shared.payloads): JSON, or
Avro framed for the Glue Schema Registry or a Confluent registry, with the writer schema looked
up in the registry. A record that does not decode is reported on stderr and the tail goes on.
`--max-records` and `--idle-exit` end the tail for scripts and demos (idle: every shard reports
itself at its tip, MillisBehindLatest 0, and nothing new came). Each shard is read at most five
times a second (its GetRecords limit), throttling backs off, and after a reshard a child shard is
read only once its parents are read to their end, so a partition key's records print in order.
KPL aggregated records are opened as the functions open them (`tributary_shared.kinesis_aggregation`):
each user record prints on its own line. `--raw` prints the Kinesis records as stored instead, one
JSON object per record with its metadata, its data in base64 and, for an aggregate, how many user
records it holds.
"""

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tributary.aws_clients import aws_client, error_code, missing_stream_error
from tributary.producer import json_default
from tributary.stop_signals import StopRequest, stop_on_signals
from tributary.user_errors import UserError
from tributary_shared.errors import RecordError
from tributary_shared.kinesis_aggregation import AGGREGATE_MAGIC, Aggregate, open_aggregate
from tributary_shared.payloads import Decoder, PayloadDecoder
from tributary_shared.retries import NO_DEADLINE, RetryPolicy, full_jitter_backoff
from tributary_shared.schema_registry import RegistrySettings

START_POSITIONS = ("LATEST", "TRIM_HORIZON", "AT_TIMESTAMP")
GET_RECORDS_LIMIT = 1000
SHARD_REFRESH_ROUNDS = 10
# A shard serves 5 GetRecords calls a second, shared by every consumer: one call per 200 ms at most.
MIN_GET_RECORDS_INTERVAL = 0.2
THROTTLE_ERRORS = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"}
)
MAX_BACKOFF = 5.0
# A control-plane call Kinesis throttles: eight calls at most, the first retry after up to 0.4 s.
THROTTLED_CALL_RETRY = RetryPolicy(base_s=0.4, cap_s=MAX_BACKOFF, max_attempts=8)


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff before GetRecords `attempt` of a throttled shard (1-based)."""
    return full_jitter_backoff(attempt, 0.2, MAX_BACKOFF)


@dataclass
class ShardState:
    """Where the tail is in one shard, and when it may next call GetRecords on it."""

    start: str  # the shard's own start type, for a new iterator when the old one expires
    parents: tuple[str, ...]
    closed: bool
    iterator: str | None = None  # None while held for its parents, and once read to its end
    last_sequence: str | None = None
    next_call: float = 0.0  # time.monotonic() instant
    throttled: int = 0
    finished: bool = False


@dataclass
class Round:
    """One GetRecords per open shard: the records, and whether every shard said it is at the tip."""

    records: list[dict[str, Any]] = field(default_factory=list)
    caught_up: bool = True

    @property
    def idle(self) -> bool:
        return self.caught_up and not self.records


class StreamTail:
    """Every shard of a stream, read in order: a reshard's children after their parents' last record."""

    def __init__(
        self,
        kinesis: Any,
        stream: str,
        start: str,
        timestamp: datetime | None = None,
        *,
        min_interval: float = MIN_GET_RECORDS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.start = start
        self.timestamp = timestamp
        self.min_interval = min_interval
        self.clock = clock
        self.sleep = sleep
        self.shards: dict[str, ShardState] = {}

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """A control-plane call, backing off while Kinesis throttles it."""
        from botocore.exceptions import ClientError

        retry = replace(THROTTLED_CALL_RETRY, sleep=self.sleep)  # the tail's sleep: Ctrl-C ends a wait
        calls = 0
        while True:
            calls += 1
            try:
                return dict(getattr(self.kinesis, operation)(**params))
            except ClientError as error:
                if error_code(error) not in THROTTLE_ERRORS or not retry.wait_before_retry(calls, NO_DEADLINE):
                    raise

    def _iterator(self, shard_id: str, state: ShardState) -> str:
        kind = "AFTER_SEQUENCE_NUMBER" if state.last_sequence else state.start
        options: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard_id, "ShardIteratorType": kind}
        if kind == "AT_TIMESTAMP":
            options["Timestamp"] = self.timestamp
        elif kind == "AFTER_SEQUENCE_NUMBER":
            options["StartingSequenceNumber"] = state.last_sequence
        return str(self._call("get_shard_iterator", **options)["ShardIterator"])

    def _listed_shards(self) -> list[dict[str, Any]]:
        shards, token = [], None
        while True:
            where = {"NextToken": token} if token else {"StreamName": self.stream}
            page = self._call("list_shards", **where)
            shards += page["Shards"]
            token = page.get("NextToken")
            if not token:
                return shards

    def refresh_shards(self) -> None:
        # Shards that appear after the tail began are children of a reshard: read them whole.
        start = "TRIM_HORIZON" if self.shards else self.start
        for shard in self._listed_shards():
            closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
            state = self.shards.get(shard["ShardId"])
            if state is None:
                parents = tuple(shard[key] for key in ("ParentShardId", "AdjacentParentShardId") if shard.get(key))
                self.shards[shard["ShardId"]] = ShardState(start, parents, closed)
            else:
                state.closed = closed
        self._open_ready_shards()

    def _open_ready_shards(self) -> None:
        """Give an iterator to every shard whose parents (those still listed) are read to their end."""
        for shard_id, state in self.shards.items():
            if state.iterator is None and not state.finished and all(
                self.shards[parent].finished for parent in state.parents if parent in self.shards
            ):
                state.iterator = self._iterator(shard_id, state)

    def poll(self) -> Round:
        """One GetRecords per open shard, each at most every `min_interval` seconds."""
        result = Round()
        for shard_id, state in list(self.shards.items()):
            if state.finished:
                continue
            if state.iterator is None:  # held until its parents are read to their end
                result.caught_up = False
                continue
            if not self._read_shard(shard_id, state, result):
                result.caught_up = False
        return result

    def _read_shard(self, shard_id: str, state: ShardState, result: Round) -> bool:
        """Read one batch of the shard into `result`; True when the shard said it is at its tip."""
        from botocore.exceptions import ClientError

        wait = state.next_call - self.clock()
        if wait > 0:
            self.sleep(wait)
        try:
            response = self.kinesis.get_records(ShardIterator=state.iterator, Limit=GET_RECORDS_LIMIT)
        except ClientError as error:
            code = error_code(error)
            if code == "ExpiredIteratorException":
                state.iterator = self._iterator(shard_id, state)
            elif code in THROTTLE_ERRORS:
                state.throttled += 1
                state.next_call = self.clock() + max(self.min_interval, _backoff(state.throttled))
                return False
            else:
                raise
            return False
        state.throttled = 0
        state.next_call = self.clock() + self.min_interval
        for record in response["Records"]:
            record["shardId"] = shard_id
            result.records.append(record)
        if response["Records"]:
            state.last_sequence = response["Records"][-1]["SequenceNumber"]
        at_tip = response.get("MillisBehindLatest") == 0 and not response["Records"]
        next_iterator = response.get("NextShardIterator")
        # A closed shard ends with no next iterator; at its tip is the same place (moto keeps iterating).
        if not next_iterator or (state.closed and at_tip):
            state.iterator, state.finished = None, True
            self._open_ready_shards()
        else:
            state.iterator = next_iterator
        return response.get("MillisBehindLatest") == 0

    def rounds(self, poll_interval: float) -> Iterator[Round]:
        """Endless polling rounds; sleeps `poll_interval` after an idle round (caught up, nothing new)."""
        for round_number in range(sys.maxsize):
            if round_number % SHARD_REFRESH_ROUNDS == 0:
                self.refresh_shards()
            result = self.poll()
            yield result
            if result.idle:
                self.sleep(poll_interval)


def user_records(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A GetRecords record as its user records: itself, or each user record of a KPL aggregate.

    A user record looks like a GetRecords record with its own `Data` and `PartitionKey`, plus its
    `SubSequenceNumber`, `ExplicitHashKey` and, if it cannot be used, the `Problem`. A record that
    starts with the magic bytes but is no valid aggregate stays whole, with a `Note` saying why.
    """
    data = record["Data"]
    if not data.startswith(AGGREGATE_MAGIC):
        return [record]
    opened = open_aggregate(data)
    if not isinstance(opened, Aggregate):
        return [{**record, "Note": opened.note}]
    return [
        {
            **record,
            "Data": user_record.data,
            "PartitionKey": user_record.partition_key,
            "SubSequenceNumber": user_record.subsequence_number,
            "ExplicitHashKey": user_record.explicit_hash_key,
            "Problem": user_record.problem,
        }
        for user_record in opened
    ]


def decoded_line(record: dict[str, Any], decode: Decoder) -> tuple[str | None, str | None]:
    """(JSON line for stdout, None) or (None, error line for stderr)."""
    try:
        if record.get("Problem"):
            raise RecordError(record["Problem"])
        value = decode(record["Data"])
    except RecordError as error:
        problem = {
            "error": error.reason if "Note" not in record else f"{error.reason} ({record['Note']})",
            "permanent": error.permanent,
            "shardId": record["shardId"],
            "sequenceNumber": record["SequenceNumber"],
            "partitionKey": record["PartitionKey"],
        }
        if "SubSequenceNumber" in record:
            problem["subsequenceNumber"] = record["SubSequenceNumber"]
        return None, json.dumps(problem)
    return json.dumps(value, default=json_default, ensure_ascii=False), None


def raw_line(record: dict[str, Any]) -> str:
    """A GetRecords record as stored: its metadata, its data in base64, and an aggregate's user record count."""
    data = record["Data"]
    arrival = record.get("ApproximateArrivalTimestamp")
    line: dict[str, Any] = {
        "shardId": record["shardId"],
        "sequenceNumber": record["SequenceNumber"],
        "partitionKey": record["PartitionKey"],
        "approximateArrivalTimestamp": arrival.isoformat() if isinstance(arrival, datetime) else arrival,
        "bytes": len(data),
        "data": base64.b64encode(data).decode(),
    }
    opened = open_aggregate(data) if data.startswith(AGGREGATE_MAGIC) else None
    if isinstance(opened, Aggregate):
        line["kplUserRecords"] = len(opened)
    elif opened is not None:
        line["kplNote"] = opened.note
    return json.dumps(line)


def record_decoder(args: argparse.Namespace) -> Decoder:
    """The functions' decoder, with registry settings from the options over the variables Lambda uses."""
    environ = dict(os.environ)
    if args.registry:
        environ["GLUE_REGISTRY_NAME"] = args.registry
    if args.confluent_url:
        environ["CONFLUENT_REGISTRY_URL"] = args.confluent_url
    if args.reader_schema:
        try:
            environ["READER_SCHEMA"] = args.reader_schema.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"--reader-schema {args.reader_schema}: cannot read an .avsc there: {error}") from error
    return PayloadDecoder(registry=RegistrySettings.from_env(environ)).decode


def parse_arguments(command: str, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"tributary {command}", description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="wildrydes", help="e.g. wildrydes, wildrydes-summary, payments")
    parser.add_argument("--from", dest="start", choices=START_POSITIONS, help="default LATEST")
    parser.add_argument("--timestamp", type=datetime.fromisoformat, help="ISO time for --from AT_TIMESTAMP")
    parser.add_argument("--max-records", type=int, help="stop after this many records")
    parser.add_argument("--idle-exit", type=float, help="stop after this many seconds without records")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between empty polls")
    parser.add_argument("--endpoint-url", help="e.g. the local emulator's; default AWS_ENDPOINT_URL")
    parser.add_argument("--registry", help="only accept writer schemas from this Glue registry")
    parser.add_argument("--confluent-url", help="Confluent-compatible registry for 0x00-framed records")
    parser.add_argument("--reader-schema", type=Path, help="an .avsc to project Avro records onto")
    parser.add_argument(
        "--raw", action="store_true",
        help="print Kinesis records as stored (metadata, base64 data), KPL aggregates unopened",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.start is None:
        args.start = "AT_TIMESTAMP" if args.timestamp else "LATEST"
    if (args.start == "AT_TIMESTAMP") != (args.timestamp is not None):
        parser.error("--timestamp goes with --from AT_TIMESTAMP, and only with it")
    return args


def main(command: str, argv: list[str]) -> int:
    """Print until done; a tail Ctrl-C stopped ends in KeyboardInterrupt, which the `tributary` command reports."""
    from botocore.exceptions import ClientError

    args = parse_arguments(command, argv)
    kinesis = aws_client("kinesis", args.endpoint_url)
    decode = record_decoder(args)
    tail = StreamTail(kinesis, args.stream, args.start, args.timestamp)
    try:
        with stop_on_signals() as stop:
            tail.sleep = stop.sleep  # an idle tail's pause between polls ends at Ctrl-C
            print_until_done(tail, args, stop, decode)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise missing_stream_error(kinesis, args.stream) from error
        raise
    if stop.requested:
        raise KeyboardInterrupt
    return 0


def print_until_done(tail: StreamTail, args: argparse.Namespace, stop: StopRequest, decode: Decoder) -> None:
    """Print records until --max-records, --idle-exit or a stop request (checked once a round).

    --max-records counts what is printed: user records, or with --raw Kinesis records.
    """
    seen, last_busy_at = 0, time.monotonic()
    for result in tail.rounds(args.poll_interval):
        if args.raw:
            printed = ((raw_line(record), None) for record in result.records)
        else:
            printed = (decoded_line(each, decode) for record in result.records for each in user_records(record))
        for line, problem in printed:
            if line is not None:
                print(line, flush=True)
            else:
                print(problem, file=sys.stderr, flush=True)
            seen += 1
            if args.max_records is not None and seen >= args.max_records:
                return
        # Idle only when every shard says it is at its tip: an empty answer alone can be a gap.
        if not result.idle:
            last_busy_at = time.monotonic()
        elif args.idle_exit is not None and time.monotonic() - last_busy_at >= args.idle_exit:
            return
        if stop.requested:
            return
