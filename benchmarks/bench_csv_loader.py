"""CSV loader into DynamoDB on moto's server: parallel writes against one thread and the usual alternatives.

Every contender reads the same generated order file from S3 and writes its rows to a fresh table of
its own. Rounds are interleaved (the order rotates each round) so machine noise hits all alike, and
ratios are the median over rounds of the two contenders' rows/s in the same round:

- the loader as deployed (the template's ROWS_PER_WRITE and WRITE_THREADS), and with one thread;
- boto3's `Table.batch_writer()` over csv.DictReader: what a Python user would pick;
- one PutItem per row over csv.DictReader (on the first PUT_ITEM_ROWS rows: it is slow, and its
  cost per row does not depend on the file's length);
- both loaders again with ROUND_TRIP_S added before each request is sent.

The AWS is moto's server (the embedded AWS, with its fixes) in a process of its own
(`SeparateProcessAws`), as DynamoDB is another machine to a Lambda function: with moto in the
loader's process, the two shared one interpreter lock, a load kept it busy all the time (the
process's CPU time was 1.02x the wall time with one write thread), and threads had nothing to
overlap (4 threads ran 0.93x one). Not moto's in-process mock either, which can lose writes made
from several threads at once. What the threads are for is the round trip to DynamoDB, which a
thread waits out without the lock: here, moto's time to answer; the "+10 ms a request" contenders
add a network's worth, as a sleep in the sending thread before each request.

DynamoDB requests are counted as they leave each contender's client (retries included); the loader
must send 25 items a request. After each round, the table of every threaded load is scanned and must
hold exactly the keys of the rows the loader reported loaded. Either failing fails the benchmark (the
file repeats no key, so every row is one item).
"""

import csv
import io
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import boto3

from benchmarks.common import REPO_ROOT, create_string_keyed_table
from tributary.demos.data_lake import csv_bytes, order_rows
from tributary.emulator import SeparateProcessAws
from tributary.runtime.template import load_yaml
from tributary_shared.orders.loader import LoadRequest, OrderCsvLoader, order_table_writer

# About 3,000 lines: a round takes some 13 s on this busy 2-core machine, moto's scans included.
ORDERS = 1_500
ROUNDS = 5
PUT_ITEM_ROWS = 300
# An assumed round trip for a BatchWriteItem of 25 small items from Lambda in the same Region
# (DynamoDB quotes single-digit milliseconds per operation); a thread spends it waiting.
ROUND_TRIP_S = 0.010
BUCKET = "bench-orders"
KEY = "orders.csv"
KEY_COLUMNS = ("order_id", "item_id")
Key = tuple[str, str]


@dataclass(frozen=True)
class Contender:
    # Given a fresh table: the client whose requests count, and the load, which returns the rows it wrote.
    prepare: Callable[[str], tuple[Any, Callable[[], int]]]
    round_trip_s: float = 0.0
    # The loader's write threads; None for the other contenders.
    threads: int | None = None

    @property
    def checked(self) -> bool:
        """Whether its table is scanned: only threaded loads send requests concurrently, and a scan
        on moto costs about as much as the load."""
        return self.threads is not None and self.threads > 1


@dataclass
class Run:
    table: str
    rows: int
    seconds: float
    requests: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def requests_per_1000_rows(self) -> float:
        return self.requests * 1000 / self.rows


def deployed_settings() -> dict[str, int]:
    """The loader's batch size and parallel requests as the template configures the function."""
    function = load_yaml((REPO_ROOT / "template.yaml").read_text())["Resources"]["CsvLoaderFunction"]
    variables = function["Properties"]["Environment"]["Variables"]
    return {"rows_per_write": int(variables["ROWS_PER_WRITE"]), "write_threads": int(variables["WRITE_THREADS"])}


def loader(write_threads: int, round_trip_s: float = 0.0) -> Contender:
    def prepare(table: str) -> tuple[Any, Callable[[], int]]:
        writer = order_table_writer(table)
        settings = deployed_settings() | {"write_threads": write_threads}
        csv_loader = OrderCsvLoader(boto3.client("s3"), writer, **settings)

        def load() -> int:
            result = csv_loader.load(LoadRequest(BUCKET, KEY), lambda: 900.0, 30.0)
            assert result.rows_rejected == 0 and result.continuation is None, result.as_dict()
            return result.rows_loaded

        return writer.client, load

    return Contender(prepare, round_trip_s, write_threads)


def file_rows() -> Iterable[dict[str, str]]:
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"]
    return csv.DictReader(io.TextIOWrapper(body, encoding="utf-8"))


def as_item(row: Mapping[str, str]) -> dict[str, Any]:
    return {**row, "amount": Decimal(row["amount"])}


def batch_writer(table: str) -> tuple[Any, Callable[[], int]]:
    dynamodb = boto3.resource("dynamodb").Table(table)

    def load() -> int:
        rows = 0
        with dynamodb.batch_writer(overwrite_by_pkeys=list(KEY_COLUMNS)) as batch:
            for row in file_rows():
                batch.put_item(Item=as_item(row))
                rows += 1
        return rows

    return dynamodb.meta.client, load


def put_item_per_row(table: str) -> tuple[Any, Callable[[], int]]:
    dynamodb = boto3.resource("dynamodb").Table(table)

    def load() -> int:
        rows = 0
        for row in file_rows():
            dynamodb.put_item(Item=as_item(row))
            rows += 1
            if rows == PUT_ITEM_ROWS:
                break
        return rows

    return dynamodb.meta.client, load


THREADS = deployed_settings()["write_threads"]
DEPLOYED = f"CsvLoader, {THREADS} threads"
ONE_THREAD = "CsvLoader, 1 thread"
BATCH_WRITER = "boto3 batch_writer"
PUT_ITEM = "PutItem per row"
ROUND_TRIP = f", +{ROUND_TRIP_S * 1000:.0f} ms a request"
CONTENDERS = {
    DEPLOYED: loader(THREADS),
    ONE_THREAD: loader(1),
    BATCH_WRITER: Contender(batch_writer),
    PUT_ITEM: Contender(put_item_per_row),
    DEPLOYED + ROUND_TRIP: loader(THREADS, ROUND_TRIP_S),
    ONE_THREAD + ROUND_TRIP: loader(1, ROUND_TRIP_S),
}


def timed_run(contender: Contender, table: str) -> Run:
    """One contender into a fresh table, timed; the table is left for `check_table`."""
    create_string_keyed_table(table, *KEY_COLUMNS)
    client, load = contender.prepare(table)
    sent: list[str] = []  # appended to from the loader's threads: list.append is atomic, `+= 1` is not

    def before_send(request: Any, **_: Any) -> None:
        sent.append(request.url)
        time.sleep(contender.round_trip_s)

    client.meta.events.register("before-send.dynamodb", before_send)
    started = time.perf_counter()
    rows = load()
    return Run(table, rows, time.perf_counter() - started, len(sent))


def check_table(name: str, table: str, expected: set[Key]) -> None:
    """Fail the benchmark unless a scan of `table` finds exactly the `expected` keys, each once."""
    scan = boto3.client("dynamodb").get_paginator("scan")
    pages = scan.paginate(TableName=table, ProjectionExpression="order_id, item_id")
    stored = [(item["order_id"]["S"], item["item_id"]["S"]) for page in pages for item in page["Items"]]
    if len(stored) != len(expected) or set(stored) != expected:
        missing, extra = sorted(expected - set(stored)), sorted(set(stored) - expected)
        raise SystemExit(
            f"FAILED: {name} reported {len(expected)} rows loaded but the table holds {len(stored)} items:"
            f" {len(missing)} missing (first {missing[:3]}), {len(extra)} unexpected (first {extra[:3]})"
        )


def check_requests(name: str, run: Run) -> None:
    """Fail the benchmark unless the loader wrote 25 items a request (moto never throttles)."""
    ideal = ideal_requests(run.rows)
    if run.requests != ideal:
        raise SystemExit(f"FAILED: {name} sent {run.requests} requests for {run.rows} rows, not {ideal}")


def interleaved_runs(keys: list[Key]) -> dict[str, list[Run]]:
    names = list(CONTENDERS)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_number in range(ROUNDS):
        shift = round_number % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            runs[name].append(timed_run(CONTENDERS[name], f"Bench-{names.index(name)}-{round_number}"))
        # Checked after the round's timed runs, so that a contender and its pair run close in time.
        for name in order:
            run = runs[name][-1]
            if CONTENDERS[name].threads is not None:
                check_requests(name, run)
            if CONTENDERS[name].checked:
                check_table(name, run.table, set(keys[: run.rows]))
            boto3.client("dynamodb").delete_table(TableName=run.table)
    return runs


def paired_ratios(runs: dict[str, list[Run]], name: str, baseline: str) -> list[float]:
    """Per round, the two contenders' rows/s in that round, one over the other."""
    pairs = zip(runs[name], runs[baseline], strict=True)
    return [ours.rows_per_second / theirs.rows_per_second for ours, theirs in pairs]


def ideal_requests(lines: int) -> int:
    """Requests for `lines` distinct rows written 25 to a request within each of the loader's batches."""
    batch = deployed_settings()["rows_per_write"]
    full, rest = divmod(lines, batch)
    return full * math.ceil(batch / 25) + math.ceil(rest / 25)


def report(runs: dict[str, list[Run]], lines: int, megabytes: float) -> None:
    print(
        f"order file: {lines:,} lines, {megabytes:.1f} MB; DynamoDB and S3 on moto's server (its own process);"
        f" median of {ROUNDS} interleaved rounds; deployed = {deployed_settings()}"
    )
    ideal = ideal_requests(lines) * 1000 / lines
    print(f"  25 items a request in each of the loader's batches: {ideal:.1f} requests per 1,000 rows")
    for name, contender_runs in runs.items():
        rate = statistics.median(run.rows_per_second for run in contender_runs)
        requests = statistics.median(run.requests_per_1000_rows for run in contender_runs)
        print(f"  {name:<38}: {rate:>7,.0f} rows/s, {requests:6.1f} requests per 1,000 rows")
    comparisons = [
        (f"{THREADS} threads / 1 thread", DEPLOYED, ONE_THREAD, "goal > 1x"),
        (f"{THREADS} threads / 1 thread{ROUND_TRIP}", DEPLOYED + ROUND_TRIP, ONE_THREAD + ROUND_TRIP, "goal > 1x"),
        (f"{THREADS} threads / boto3 batch_writer", DEPLOYED, BATCH_WRITER, "what a user would pick"),
        (f"{THREADS} threads / PutItem per row", DEPLOYED, PUT_ITEM, "goal >= 10x"),
    ]
    for label, name, baseline, note in comparisons:
        ratios = paired_ratios(runs, name, baseline)
        spread = f"rounds {min(ratios):.2f}-{max(ratios):.2f}"
        print(f"  {label:<38}: {statistics.median(ratios):5.2f}x ({note}; {spread})")
    checked = sum(len(runs[name]) for name, contender in CONTENDERS.items() if contender.checked)
    print(f"  table check: after each of the {checked} threaded loads, a scan found exactly the rows reported loaded")


def main() -> None:
    rows = list(order_rows(date(2020, 9, 2), ORDERS))
    body = csv_bytes(rows)
    keys = [(row["order_id"], row["item_id"]) for row in rows]
    assert len(set(keys)) == len(keys), "the benchmark file must not repeat a key"
    with SeparateProcessAws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=body)
        runs = interleaved_runs(keys)
    report(runs, len(rows), len(body) / 1e6)
