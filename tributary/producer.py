"""`tributary produce MODE`: put unicorn telemetry, payment events or DMS changes on a Kinesis stream.

One subcommand per mode (`produce unicorns --help` lists every option of that mode). Each Kinesis
mode is a record source: it adds its options and turns them into an iterator of
(partition key, bytes) entries, endless or finite. The command paces the entries (`--rate`),
stops after `--msgs`, sends them with PutRecords (only failed entries retried) and prints a
progress bar on stderr and the final sent/retried/failed counts. With `--aggregate` each paced
chunk's records are packed KPL-style, one partition key per aggregate (`tributary.kpl_aggregation`),
and the counts say how many user records went in how many Kinesis records and PutRecords calls.
Against the local emulator, pass `--endpoint-url` or set AWS_ENDPOINT_URL; the region comes from
the usual AWS variables. `produce orders` drops order CSV files into a bucket instead
(tributary.produce_orders).

The record generators (`unicorn_statuses`, `payment_events`, in `tributary.sample_records`) are
plain functions so the demo and the benchmark reuse them.
"""

import argparse
import base64
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError

from tributary import produce_orders
from tributary.aws_clients import aws_client as aws_client  # re-exported: the consumer and tests use it here
from tributary.aws_clients import error_code, missing_stream_error
from tributary.kpl_aggregation import KeyAggregator, user_records_in
from tributary.sample_records import PAYMENT_LIFECYCLES as PAYMENT_LIFECYCLES  # re-exported: tests read it here
from tributary.sample_records import payment_events, unicorn_statuses
from tributary.schema_registration import COMPATIBILITY_MODES, SchemaRegistration
from tributary.stop_signals import stop_on_signals
from tributary.user_errors import UserError
from tributary_shared.kinesis_put import MAX_RECORDS_PER_REQUEST, NOT_SENT, FailedEntry, PutReport, put_records

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
DEFAULT_UNICORNS = ("Shadowfax",)
POISON_EVERY = 10
# User records packed per chunk with --aggregate: a few MiB of small records, enough to fill aggregates.
AGGREGATED_CHUNK_RECORDS = 10_000
Entry = tuple[str, bytes]

# ------------------------------------------------------------------------------------ encoders


def json_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(record, default=json_default, separators=(",", ":")).encode()


def json_default(value: Any) -> Any:
    """JSON for what Avro and DynamoDB-friendly decoding produce: Decimal, datetime, bytes."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def poison_pill(number: int, record: dict[str, Any], good: bytes) -> bytes:
    """Alternately a record whose InputData says "error" (JSON) and a malformed payload."""
    if number % 2:
        return json_bytes(record | {"InputData": "error: poison pill"})
    return good[: max(1, len(good) // 2)]


def with_poison_pills(entries: Iterator[tuple[str, dict[str, Any], bytes]]) -> Iterator[Entry]:
    for position, (key, record, data) in enumerate(entries, start=1):
        bad = position % POISON_EVERY == 0
        yield key, poison_pill(position // POISON_EVERY, record, data) if bad else data


# ------------------------------------------------------------------------------------ modes


@dataclass(frozen=True)
class Mode:
    """A record source: its options, default stream, default rate and entry factory."""

    help: str
    default_stream: str
    add_options: Callable[[argparse.ArgumentParser], None]
    entries: Callable[[argparse.Namespace], Iterator[Entry]]
    default_rate: Callable[[argparse.Namespace], float]


def _avro_options(parser: argparse.ArgumentParser, schema_name: str, schema_file: str) -> None:
    group = parser.add_argument_group("Avro through the Glue Schema Registry")
    group.add_argument("--registry", default=os.environ.get("GLUE_REGISTRY_NAME", "tributary"))
    group.add_argument("--schema-name", default=schema_name)
    group.add_argument("--schema", type=Path, default=SCHEMAS / schema_file, help="the .avsc to write with")
    group.add_argument(
        "--compatibility", choices=COMPATIBILITY_MODES, default="BACKWARD", help="mode for a newly created schema"
    )
    group.add_argument("--no-auto-register", dest="auto_register", action="store_false")
    group.add_argument("--compress", action="store_true", help="zlib-compress bodies (compression byte 0x05)")


def avro_encoder(args: argparse.Namespace) -> Callable[[dict[str, Any]], bytes]:
    """Find or register the schema (checked for compatibility), then encode Glue-framed records."""
    registry = SchemaRegistration(args.registry, aws_client("glue", args.endpoint_url))
    version_id, encode = glue_encoder(
        registry, args.schema_name, args.schema,
        compatibility=args.compatibility, auto_register=args.auto_register, compress=args.compress,
    )  # fmt: skip
    print(f"schema {args.schema_name} version {version_id} in registry {args.registry}", file=sys.stderr)
    return encode


def glue_encoder(
    registry: SchemaRegistration, schema_name: str, schema_file: Path, *,
    compatibility: str = "BACKWARD", auto_register: bool = True, compress: bool = False,
) -> tuple[UUID, Callable[[dict[str, Any]], bytes]]:  # fmt: skip
    """The schema's version id in `registry` (found, or registered if allowed) and a Glue-framing encoder."""
    from tributary.avro_encoding import encode_glue
    from tributary_shared.avro_schemas import canonical_definition, parse_definition

    definition = canonical_definition(schema_file.read_text())
    version_id = registry.version_for(
        schema_name, definition, compatibility=compatibility, auto_register=auto_register
    )
    schema = parse_definition(definition)
    return version_id, lambda record: encode_glue(record, schema, version_id, compress=compress)


def _unicorn_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", action="append", help="a unicorn's name; repeat for several")
    parser.add_argument("--unicorns", type=int, metavar="N", help="or this many, named Unicorn-1...")
    parser.add_argument("--format", choices=("json", "avro"), default="json")
    parser.add_argument("--error", action="store_true", help=f"make every {POISON_EVERY}th record a poison pill")
    _avro_options(parser, "unicorn-status", "unicorn_status.avsc")


def unicorn_names(args: argparse.Namespace) -> list[str]:
    if args.unicorns:
        return [f"Unicorn-{number}" for number in range(1, args.unicorns + 1)]
    return args.name or list(DEFAULT_UNICORNS)


def _unicorn_entries(args: argparse.Namespace) -> Iterator[Entry]:
    encode = avro_encoder(args) if args.format == "avro" else json_bytes
    statuses = ((status["Name"], status, encode(status)) for status in unicorn_statuses(unicorn_names(args)))
    if args.error:
        return with_poison_pills(statuses)
    return ((key, data) for key, _, data in statuses)


def _payment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=20, metavar="N", help="accounts paying (default 20)")
    parser.add_argument("--format", choices=("json", "avro"), default="avro")
    parser.add_argument("--error", action="store_true", help=f"make every {POISON_EVERY}th record a poison pill")
    _avro_options(parser, "payment-event", "payment_event_v1.avsc")


def _payment_entries(args: argparse.Namespace) -> Iterator[Entry]:
    encode = avro_encoder(args) if args.format == "avro" else json_bytes
    events = ((event["paymentId"], event, encode(event)) for event in payment_events(accounts=args.accounts))
    if args.error:
        return with_poison_pills(events)
    return ((key, data) for key, _, data in events)


def _dms_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=10, metavar="N", help="rows of optin_status (default 10)")


def _dms_entries(args: argparse.Namespace) -> Iterator[Entry]:
    from tributary.dms_changes import generate_changes

    # A finite script: build it now so a bad --users is reported before anything is sent.
    return iter(list(generate_changes(args.users)))


MODES: dict[str, Mode] = {
    "unicorns": Mode(
        "Wild Rydes unicorn status readings", "wildrydes", _unicorn_options, _unicorn_entries,
        lambda args: float(len(unicorn_names(args))),
    ),
    "payments": Mode(
        "payment events, Avro through the schema registry", "payments", _payment_options, _payment_entries,
        lambda args: 10.0,
    ),
    "dms": Mode(
        "DMS change records of the optin_status table", "optin-cdc", _dms_options, _dms_entries,
        lambda args: 0.0,
    ),
}
MODE_NAMES = (*MODES, "orders")

# ------------------------------------------------------------------------------------ sending


def paced(entries: Iterable[Entry], rate: float, *, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep,
          chunk_records: int = MAX_RECORDS_PER_REQUEST) -> Iterator[list[Entry]]:
    """Chunks of at most `chunk_records` entries released at `rate` per second (0: as fast as PutRecords takes them)."""
    iterator = iter(entries)
    if rate <= 0:
        while chunk := list(itertools.islice(iterator, chunk_records)):
            yield chunk
        return
    tick = max(1.0, 1.0 / rate)
    started, released = clock(), 0
    while True:
        due = math.floor((clock() - started) * rate) + 1 - released
        chunk = list(itertools.islice(iterator, min(chunk_records, max(1, due))))
        if not chunk:
            return
        released += len(chunk)
        yield chunk
        wait = started + released / rate - clock()
        if wait > 0:
            sleep(min(wait, tick))


class Progress:
    """A rich progress bar on a terminal (a running count when the total is unknown); the final counts always."""

    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.stream = stream or sys.stderr
        console = Console(file=self.stream)
        self.live = console.is_terminal
        self._bar = Bar(TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[counts]}"), console=console, disable=not self.live)  # fmt: skip
        self._task = self._bar.add_task("produce", total=total, counts="")
        self._bar.start()

    def update(self, sent: int, retried: int, failed: int) -> None:
        counts = f"sent {sent}  retried {retried}  failed {failed}"
        self._bar.update(self._task, completed=sent + failed, counts=counts)

    def finish(self, report: PutReport) -> None:
        self._bar.stop()
        print(f"sent {report.sent}, retried {report.retried}, failed {report.failed}", file=self.stream)
        for entry in report.failed_entries[:10]:
            print(f"  failed {entry.partition_key}: {entry.error_code} {entry.error_message}", file=self.stream)


def parse_arguments(command: str, argv: Sequence[str]) -> argparse.Namespace:
    """The mode (None when not given) and its options."""
    if "--mode" in argv and argv[0] not in MODE_NAMES:
        raise UserError(f"--mode is gone: the mode is a subcommand now, e.g. `tributary {command} unicorns`"
                        f" ({', '.join(MODE_NAMES)}; `tributary {command} MODE --help` shows its options)")
    parser = produce_parser(command)
    args = parser.parse_args(argv)
    if args.mode in MODES:
        if args.msgs is not None and args.msgs < 0:
            parser.error("--msgs must not be negative")
        if args.rate is None:
            args.rate = MODES[args.mode].default_rate(args)
    return args


def produce_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"tributary {command}",
        description="Put records on a Kinesis stream, or order files in the orders bucket: one subcommand per mode.",
        epilog=f"`tributary {command} MODE --help` shows the options of MODE.",
    )
    modes = parser.add_subparsers(dest="mode", title="modes", metavar="MODE")
    for name, mode in MODES.items():
        mode_parser = modes.add_parser(name, help=mode.help, description=f"Put {mode.help} on a Kinesis stream.")
        _kinesis_options(mode_parser, mode)
        mode.add_options(mode_parser)
    orders = modes.add_parser("orders", help=produce_orders.HELP, description=produce_orders.description(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    produce_orders.add_options(orders)
    return parser


def _kinesis_options(parser: argparse.ArgumentParser, mode: Mode) -> None:
    parser.add_argument("--stream", default=mode.default_stream, help=f"default {mode.default_stream}")
    parser.add_argument("--msgs", type=int, metavar="N", help="records to send (default: until interrupted)")
    parser.add_argument("--rate", type=float, metavar="PER_S", help="records a second in all (0: as fast as possible)")
    parser.add_argument("--endpoint-url", help="e.g. the local emulator's; default AWS_ENDPOINT_URL")
    parser.add_argument(
        "--aggregate", action="store_true",
        help="pack each partition key's records into KPL aggregated records of up to 1 MiB",
    )  # fmt: skip


def main(command: str, argv: list[str]) -> int:
    args = parse_arguments(command, argv)
    if args.mode is None:
        print(produce_parser(command).format_help())
        return 2
    if args.mode == "orders":
        return produce_orders.run(command, args)
    return put_on_stream(args)


def put_on_stream(args: argparse.Namespace) -> int:
    """Send the mode's records at the paced rate; exit 1 if any failed."""
    kinesis = aws_client("kinesis", args.endpoint_url)
    try:
        entries = MODES[args.mode].entries(args)
    except BotoCoreError:  # no region, no emulator there: the top-level handler explains these
        raise
    except Exception as error:  # registration refused, schema file unreadable: say so and stop
        raise UserError(str(error)) from error
    if args.msgs is not None:
        entries = itertools.islice(entries, args.msgs)
    # With --aggregate the bar counts Kinesis records, which --msgs does not give the number of.
    progress = Progress(None if args.aggregate else args.msgs)
    aggregator = KeyAggregator() if args.aggregate else None
    chunk_records = AGGREGATED_CHUNK_RECORDS if aggregator else MAX_RECORDS_PER_REQUEST
    total = PutReport()
    user_records_taken = 0
    stopped_by: ClientError | None = None
    interrupted = False
    try:
        with stop_on_signals() as stop:
            for chunk in paced(entries, args.rate, sleep=stop.sleep, chunk_records=chunk_records):
                if stop.requested:  # checked here, not after the put: Ctrl-C during a pacing pause counts too
                    break
                user_records = len(chunk)
                if aggregator:
                    chunk = [(packed.partition_key, packed.data) for packed in aggregator.pack(chunk)]
                user_records_taken += user_records  # from here on, a record not sent is in total's failures
                send_chunk(kinesis, args.stream, chunk, total, progress)
        interrupted = stop.requested
    except KeyboardInterrupt:  # a second Ctrl-C, mid-put
        interrupted = True
    except ClientError as error:  # no such stream, access denied: nothing more will get through
        stopped_by = error
    finally:  # an aborted run still reports what it sent, and what it took but did not send as failed
        progress.finish(total)
        if aggregator:
            print(aggregated_summary(user_records_taken, total), file=progress.stream)
    if stopped_by is not None:
        if error_code(stopped_by) == "ResourceNotFoundException":
            raise missing_stream_error(kinesis, args.stream) from stopped_by
        raise UserError(str(stopped_by)) from stopped_by
    if interrupted:  # after the counts: the `tributary` command says `interrupted` and exits 130
        raise KeyboardInterrupt
    return 1 if total.failed else 0


def aggregated_summary(user_records_taken: int, total: PutReport) -> str:
    """What --aggregate did: user records sent, in how many Kinesis records and PutRecords calls."""
    failed = sum(user_records_in(entry.data) for entry in total.failed_entries)
    return (
        f"user records sent {user_records_taken - failed}, failed {failed}; "
        f"Kinesis records put {total.sent}; PutRecords calls {total.requests}"
    )


def send_chunk(kinesis: Any, stream: str, chunk: list[Entry], total: PutReport, progress: Progress) -> None:
    """Put one paced chunk, adding to `total`; if the put is stopped, the chunk's rest counts as failed."""
    remaining = iter(chunk)
    try:
        put_records(
            kinesis,
            stream,
            remaining,
            into=total,
            on_progress=lambda running: progress.update(running.sent, running.retried, running.failed),
        )
    except BaseException as error:
        reason = f"not sent: {type(error).__name__} stopped the run"
        total.failed_entries += [FailedEntry(key, data, NOT_SENT, reason) for key, data in remaining]
        raise
