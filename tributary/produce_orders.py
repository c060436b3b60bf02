"""`tributary produce orders`: drop order CSV files into the orders source bucket, for the CsvLoader function.

Generated like the demo's (`tributary.sample_orders`): a day of orders and, with `--with-changes`, a
second file correcting some lines and adding others; or a file of your own (`--file`). Keys go
under `orders/<day>/` and end in `.csv`, the suffix the template's S3 event on the bucket filters on;
the day's file sorts before its changes, the order in which the emulated notifications load them.
"""

import argparse
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tributary.aws_clients import aws_client, error_code, missing_bucket_error
from tributary.sample_orders import change_rows, csv_bytes, order_rows
from tributary.user_errors import UserError

HELP = "order CSV files into the orders source bucket, for the CsvLoader function"
# The template's OrdersSourceBucket (`${NamePrefix}tributary-orders-source-${AWS::AccountId}-${AWS::Region}`)
# as the local runtime names it: no prefix, moto's account, us-east-1 (tributary.runtime.template.naming).
DEFAULT_BUCKET = "tributary-orders-source-123456789012-us-east-1"
KEY_PREFIX = "orders/"
DEFAULT_ORDERS = 100


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS, metavar="N",
                        help=f"orders to generate, of one to three lines each (default {DEFAULT_ORDERS})")
    parser.add_argument("--day", type=iso_day, default=None, metavar="YYYY-MM-DD",
                        help="day of the orders (default: today, UTC)")
    parser.add_argument("--with-changes", action="store_true",
                        help="also a file of changes: some amounts corrected, some lines added")
    parser.add_argument("--seed", type=int, default=7, metavar="N", help="seed of the generated orders (default 7)")
    parser.add_argument("--file", type=Path, help="put this CSV file instead of generated orders")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, metavar="NAME",
                        help="the orders source bucket (default: the template's, named above)")
    parser.add_argument("--endpoint-url", help="e.g. the local emulator's; default AWS_ENDPOINT_URL")


def description() -> str:
    """The help's description, as written: a bucket name does not wrap."""
    return (
        f"Put {HELP}.\n\n"
        f"Each file goes to s3://BUCKET/{KEY_PREFIX}<day>/...csv; BUCKET is by default the template's\n"
        f"OrdersSourceBucket as `tributary up` names it:\n  {DEFAULT_BUCKET}"
    )


def iso_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day like 2020-09-02") from None


def run(command: str, args: argparse.Namespace) -> int:
    files = order_files(args)
    s3 = aws_client("s3", args.endpoint_url)
    for key, body, description in files:
        put_file(s3, args.bucket, key, body)
        print(f"put s3://{args.bucket}/{key}: {description}", flush=True)
    return 0


def order_files(args: argparse.Namespace) -> list[tuple[str, bytes, str]]:
    """(key, body, what it holds) of each file to put, in the order the loader should read them."""
    day = args.day or datetime.now(UTC).date()
    folder = f"{KEY_PREFIX}{day}/"
    if args.file is not None:
        if args.with_changes:
            raise UserError("--with-changes goes with generated orders, not with --file")
        return [your_file(args.file, folder)]
    if args.orders < 1:
        raise UserError(f"--orders {args.orders}: give at least 1")
    stamp = datetime.now(UTC).strftime("%H%M%S")
    rows = list(order_rows(day, args.orders, seed=args.seed))
    files = [(f"{folder}{stamp}-1-orders.csv", csv_bytes(rows), f"{len(rows)} lines of {args.orders} orders of {day}")]
    if args.with_changes:
        changes = list(change_rows(rows, seed=args.seed + 4))  # the default seed makes the demo's changes (11)
        changes = changes or list(change_rows(rows[:1], share=1.0))  # a few orders may draw none: change the first
        files.append((f"{folder}{stamp}-2-changes.csv", csv_bytes(changes), f"{len(changes)} changed or added lines"))
    return files


def your_file(path: Path, folder: str) -> tuple[str, bytes, str]:
    try:
        body = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read --file {path}: {error.strerror}") from error
    name = path.name if path.suffix == ".csv" else f"{path.name}.csv"  # the bucket's event filters on .csv
    rows = max(0, sum(1 for line in body.splitlines() if line.strip()) - 1)  # less the header
    return f"{folder}{name}", body, f"{rows} lines from {path}"


def put_file(s3: Any, bucket: str, key: str, body: bytes) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    except ClientError as error:
        if error_code(error) == "NoSuchBucket":
            raise missing_bucket_error(s3, bucket) from error
        raise
