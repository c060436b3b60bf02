"""`tributary consume`: tail every shard of a stream and print one decoded JSON object per line.

Records are decoded like the Lambda functions decode them (tributary_shared.payloads): JSON, or
Avro framed for the Glue Schema Registry or a Confluent registry, with the writer schema looked
up in the registry. A record that does not decode is reported on stderr and the tail goes on.
`--max-records` and `--idle-exit` end the tail for scripts and demos.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tributary.producer import aws_client, json_default
from tributary_shared.errors import RecordError

START_POSITIONS = ("LATEST", "TRIM_HORIZON", "AT_TIMESTAMP")
GET_RECORDS_LIMIT = 1000
SHARD_REFRESH_ROUNDS = 10


def shard_ids(kinesis: Any, stream: str) -> list[str]:
    shards, token = [], None
    while True:
        page = kinesis.list_shards(NextToken=token) if token else kinesis.list_shards(StreamName=stream)
        shards += [shard["ShardId"] for shard in page["Shards"]]
        token = page.get("NextToken")
        if not token:
            return shards


class StreamTail:
    """Shard iterators of every shard of a stream, refreshed so shards from resharding are read too."""

    def __init__(self, kinesis: Any, stream: str, start: str, timestamp: datetime | None = None) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.start = start
        self.timestamp = timestamp
        self.iterators: dict[str, str] = {}
        self.last_sequence: dict[str, str] = {}
        self.known: set[str] = set()

    def _iterator(self, shard_id: str, kind: str) -> str:
        options: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard_id, "ShardIteratorType": kind}
        if kind == "AT_TIMESTAMP":
            options["Timestamp"] = self.timestamp
        elif kind == "AFTER_SEQUENCE_NUMBER":
            options["StartingSequenceNumber"] = self.last_sequence[shard_id]
        return str(self.kinesis.get_shard_iterator(**options)["ShardIterator"])

    def refresh_shards(self) -> None:
        # Shards that appear after the tail began are children of a reshard: read them whole.
        kind = self.start if not self.known else "TRIM_HORIZON"
        for shard_id in shard_ids(self.kinesis, self.stream):
            if shard_id not in self.known:
                self.known.add(shard_id)
                self.iterators[shard_id] = self._iterator(shard_id, kind)

    def poll(self) -> list[dict[str, Any]]:
        """One GetRecords per open shard; the records they returned, shard by shard."""
        from botocore.exceptions import ClientError

        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self.iterators.items()):
            try:
                response = self.kinesis.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code == "ExpiredIteratorException":
                    resume = "AFTER_SEQUENCE_NUMBER" if shard_id in self.last_sequence else self.start
                    self.iterators[shard_id] = self._iterator(shard_id, resume)
                elif code != "ProvisionedThroughputExceededException":
                    raise
                continue
            for record in response["Records"]:
                record["shardId"] = shard_id
                records.append(record)
            if response["Records"]:
                self.last_sequence[shard_id] = response["Records"][-1]["SequenceNumber"]
            next_iterator = response.get("NextShardIterator")
            if next_iterator:
                self.iterators[shard_id] = next_iterator
            else:
                del self.iterators[shard_id]  # closed by a reshard and read to its end
        return records

    def rounds(self, poll_interval: float, sleep: Callable[[float], None] = time.sleep) -> Iterator[list[dict]]:
        """Endless polling rounds; sleeps `poll_interval` after a round that found nothing."""
        for round_number in range(sys.maxsize):
            if round_number % SHARD_REFRESH_ROUNDS == 0:
                self.refresh_shards()
            records = self.poll()
            yield records
            if not records:
                sleep(poll_interval)


def decoded_line(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """(JSON line for stdout, None) or (None, error line for stderr)."""
    from tributary_shared.payloads import decode_payload

    try:
        value = decode_payload(record["Data"])
    except RecordError as error:
        problem = {
            "error": error.reason,
            "permanent": error.permanent,
            "shardId": record["shardId"],
            "sequenceNumber": record["SequenceNumber"],
            "partitionKey": record["PartitionKey"],
        }
        return None, json.dumps(problem)
    return json.dumps(value, default=json_default, ensure_ascii=False), None


def configure_decoding(args: argparse.Namespace) -> None:
    """Registry settings from the options, over the same environment variables Lambda uses."""
    from tributary_shared.avro_codec import RegistryDeserializer
    from tributary_shared.payloads import set_framed_decoder

    environ = dict(os.environ)
    if args.registry:
        environ["GLUE_REGISTRY_NAME"] = args.registry
    if args.confluent_url:
        environ["CONFLUENT_REGISTRY_URL"] = args.confluent_url
    if args.reader_schema:
        environ["READER_SCHEMA"] = args.reader_schema.read_text()
    set_framed_decoder(RegistryDeserializer.from_env(environ))


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
    args = parser.parse_args(argv)
    if args.start is None:
        args.start = "AT_TIMESTAMP" if args.timestamp else "LATEST"
    if (args.start == "AT_TIMESTAMP") != (args.timestamp is not None):
        parser.error("--timestamp goes with --from AT_TIMESTAMP, and only with it")
    return args


def main(command: str, argv: list[str]) -> int:
    args = parse_arguments(command, argv)
    kinesis = aws_client("kinesis", args.endpoint_url)
    configure_decoding(args)
    tail = StreamTail(kinesis, args.stream, args.start, args.timestamp)
    seen, last_record_at = 0, time.monotonic()
    try:
        for records in tail.rounds(args.poll_interval):
            for record in records:
                line, problem = decoded_line(record)
                if line is not None:
                    print(line, flush=True)
                else:
                    print(problem, file=sys.stderr, flush=True)
                seen += 1
                if args.max_records is not None and seen >= args.max_records:
                    return 0
            if records:
                last_record_at = time.monotonic()
            elif args.idle_exit is not None and time.monotonic() - last_record_at >= args.idle_exit:
                return 0
    except KeyboardInterrupt:
        return 0
    return 0
