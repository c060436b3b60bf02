"""Fuzzing the order CSV loader: every good row loads, every bad row is rejected by line, nothing raises.

Files mix generated good rows (any text in the free columns, quoted where CSV needs it, any valid
amount, time and date) with rows where one cell is hostile (numbers past DynamoDB's range or
precision, NaN, non-ASCII digits, impossible dates, oversized keys), rows with broken structure,
invalid UTF-8 and random bytes. The oracle is the generator's own account of which line is which,
and every item the loader writes must go through botocore's DynamoDB serializer.
"""

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tributary_shared.dynamo_writer import PendingItem, WriteReport, serialize_item
from tributary_shared.orders.csv_rows import MAX_LINE_BYTES, ORDER_COLUMNS, Line, RejectedRow, parse_row
from tributary_shared.orders.load_request import LoadRequest
from tributary_shared.orders.loader import OrderCsvLoader

HEADER = ",".join(ORDER_COLUMNS).encode()
# DynamoDB's key size limits: partition key (order_id) 2048 bytes, sort key (item_id) 1024 bytes.
KEY_LIMITS = {"order_id": 2048, "item_id": 1024}
MAX_REASON_CHARS = 300

# --- the oracle's good rows ----------------------------------------------------------------------------

# Free text, as it comes back after the loader strips each cell (CSV quoting handles commas and quotes).
cell_characters = st.characters(exclude_characters="\r\n", exclude_categories=["Cs"])
cell_text = st.text(cell_characters, max_size=15).filter(lambda text: text == text.strip())
keys = cell_text.filter(bool)
amounts = st.decimals(min_value=Decimal("-9999999999.99"), max_value=Decimal("9999999999.99"), places=2)
offsets = st.none() | st.integers(-23 * 60, 23 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
moments = st.builds(
    lambda moment, offset: moment.replace(tzinfo=offset),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offsets,
)


@dataclass(frozen=True)
class GoodRow:
    cells: dict[str, str]
    item: dict[str, Any]


def utc_text(moment: datetime) -> str:
    utc = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        f".{utc.microsecond // 1000:03d}Z"
    )


def amount_spellings(amount: Decimal) -> list[str]:
    spellings = [str(amount), format(amount, "f"), f"{amount:E}"]
    return spellings if amount.is_signed() else [*spellings, f"+{amount}"]


@st.composite
def good_rows(draw: st.DrawFn) -> GoodRow:
    amount = draw(amounts)
    moment = draw(moments)
    day = draw(st.dates())
    cells = {
        "order_id": draw(keys),
        "item_id": draw(keys),
        "customer_id": draw(cell_text),
        "product": draw(cell_text),
        "amount": draw(st.sampled_from(amount_spellings(amount))),
        "currency": draw(st.from_regex(r"[A-Z]{3}", fullmatch=True)),
        "time_stamp": moment.isoformat(sep=draw(st.sampled_from("T "))),
        "transaction_date": day.isoformat(),
    }
    item = {name: cells[name] for name in ("order_id", "item_id", "customer_id", "product") if cells[name]}
    item |= {"amount": amount, "currency": cells["currency"], "time_stamp": utc_text(moment)}
    item["transaction_date"] = cells["transaction_date"]
    return GoodRow(cells, item)


def csv_line(cells: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue().encode()


# --- the oracle's bad rows ----------------------------------------------------------------------------

HOSTILE_CELLS = {
    "amount": [
        "1e999999999",
        "-1e999999999",
        "1e-999999999",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "1" * 39,
        "0." + "1" * 39,
        "1E+126",
        "1E-131",
        "12.345",
        "10000000000",
        "1_000",
        "\u0661\u0662",
        "\uff11",
        "0x10",
        "1,5",
        "",
        "ten",
        "1e",
        "--1",
    ],
    "currency": ["usd", "US", "USDD", "", "\u20ac\u20ac\u20ac", "U\x00D", "\uff35SD"],
    "time_stamp": ["noon", "", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2020-13-01T00:00:00"],
    "transaction_date": ["2020-02-30", "2020-W01-1", "2020-001", "20200902", "", "2020-9-2", "\uff12020-09-02"],
    "order_id": ["", "   ", "x" * 2049, "\u00e9" * 1025],
    "item_id": ["", "\t", "x" * 1025, "\u00e9" * 513],
}


@st.composite
def bad_lines(draw: st.DrawFn) -> bytes:
    row = draw(good_rows())
    cells = [row.cells[name] for name in ORDER_COLUMNS]
    kind = draw(st.sampled_from(["cell", "cell", "cell", "fields", "quote", "utf8", "bytes"]))
    if kind == "cell":
        column = draw(st.sampled_from(sorted(HOSTILE_CELLS)))
        cells[ORDER_COLUMNS.index(column)] = draw(st.sampled_from(HOSTILE_CELLS[column]))
        return csv_line(cells)
    if kind == "fields":
        return csv_line(cells[:-1] if draw(st.booleans()) else [*cells, "extra"])
    if kind == "quote":
        return csv_line(cells) + b',"unterminated'
    line = csv_line(cells)
    position = draw(st.integers(0, len(line)))
    if kind == "utf8":  # invalid UTF-8, including a UTF-8-encoded lone surrogate
        return line[:position] + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc3("])) + line[position:]
    noise = draw(st.binary(min_size=1, max_size=30)).replace(b"\n", b"")
    return noise + b"\xff" + line[position:]


# --- fakes: S3 holding one object, a writer that serializes like botocore -----------------------------


class OneObjectS3:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.stored: dict[str, bytes] = {}

    def get_object(self, **arguments: Any) -> dict[str, Any]:
        start = int(arguments.get("Range", "bytes=0-")[6:-1])
        data = self.body[start:]
        return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentLength": len(data), "ETag": '"e"'}

    def put_object(self, Key: str, Body: bytes, **_: Any) -> None:
        self.stored[Key] = Body

    def head_object(self, Key: str, **_: Any) -> None:
        if Key not in self.stored:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")

    def delete_object(self, Key: str, **_: Any) -> None:
        self.stored.pop(Key, None)


class SerializingWriter:
    """Accepts exactly what DynamoDB would: botocore's serializer (38 digits, 1E-130..9.99E+125) and key sizes."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}

    def write(self, items: list[PendingItem], deadline: float) -> WriteReport:
        for pending in items:
            serialize_item(pending.item)
            for name, limit in KEY_LIMITS.items():
                assert 0 < len(pending.item[name].encode()) <= limit
            self.items[int(pending.ref)] = pending.item
        return WriteReport(written=[pending.ref for pending in items])


def load(body: bytes, rows_per_write: int = 25) -> tuple[Any, OneObjectS3, SerializingWriter]:
    s3, writer = OneObjectS3(body), SerializingWriter()
    loader = OrderCsvLoader(s3, writer, rows_per_write=rows_per_write)
    return loader.load(LoadRequest("bucket", "orders.csv"), lambda: 600.0, 15.0), s3, writer


def assert_reasons_readable(rejects: list[RejectedRow]) -> None:
    for row in rejects:
        assert row.reason and len(row.reason) <= MAX_REASON_CHARS, row.reason
        json.dumps(row.as_dict(), ensure_ascii=False).encode()


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=250)
@given(
    lines=st.lists(st.one_of(good_rows(), bad_lines(), st.just(b""), st.just(b"  \r")), min_size=1, max_size=30),
    rows_per_write=st.integers(25, 60),
    line_end=st.sampled_from([b"\n", b"\r\n"]),
)
def test_every_good_row_loads_and_every_bad_row_is_rejected_by_its_line(
    lines: list[GoodRow | bytes], rows_per_write: int, line_end: bytes
) -> None:
    encoded = [csv_line(list(line.cells.values())) if isinstance(line, GoodRow) else line for line in lines]
    body = line_end.join([HEADER, *encoded])
    good = {number: line.item for number, line in enumerate(lines, start=2) if isinstance(line, GoodRow)}
    bad = [number for number, line in enumerate(lines, start=2) if isinstance(line, bytes) and line.strip()]
    result, s3, writer = load(body, rows_per_write)
    assert result.error is None
    assert writer.items == good
    assert (result.rows_loaded, result.rows_rejected) == (len(good), len(bad))
    assert [row.line for row in result.rejects] == bad
    assert_reasons_readable(result.rejects)
    if bad:
        stored = json.loads(s3.stored["orders.csv.rejects.json"])
        assert [row["line"] for row in stored["rows"]] == bad
    else:
        assert s3.stored == {}


@settings(max_examples=1000)
@given(text=st.binary(max_size=120) | st.builds(b",".join, st.lists(st.binary(max_size=12), min_size=8, max_size=8)))
@example(text=b"1,1,C,P,1e999999999,USD,2020-09-02T00:00:00Z,2020-09-02")
@example(text=b"1,1,C,P,-0.00,USD,2020-09-02T00:00:00Z,2020-09-02")
def test_any_line_is_a_storable_item_or_a_reject_with_a_reason(text: bytes) -> None:
    line = text.replace(b"\n", b"")
    parsed = parse_row(Line(2, 0, len(line) + 1, line), ORDER_COLUMNS)
    if isinstance(parsed, RejectedRow):
        assert parsed.line == 2
        assert_reasons_readable([parsed])
        return
    serialize_item(parsed)
    assert set(parsed) <= set(ORDER_COLUMNS) and parsed["amount"].copy_abs() < 10**10
    assert not parsed["amount"].is_signed()  # -0 is stored as 0
    for name, limit in KEY_LIMITS.items():
        assert 0 < len(parsed[name].encode()) <= limit
    assert date.fromisoformat(parsed["transaction_date"]).isoformat() == parsed["transaction_date"]


HEADER_NAMES = st.lists(st.sampled_from([*ORDER_COLUMNS, "extra", "", " amount ", "amount\x00"]), max_size=10)


@settings(max_examples=250)
@given(
    names=HEADER_NAMES | st.permutations(ORDER_COLUMNS).map(list),
    prefix=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff", b"\x00", b" " * (MAX_LINE_BYTES + 10)]),
    row=good_rows(),
)
def test_a_hostile_header_is_one_clear_error_never_a_traceback(names: list[str], prefix: bytes, row: GoodRow) -> None:
    header = prefix + ",".join(names).encode()
    body = header + b"\n" + csv_line([row.cells.get(name.strip(), "") for name in names]) + b"\n"
    result, s3, writer = load(body)
    valid = sorted(name.strip() for name in names) == sorted(ORDER_COLUMNS) and prefix in {b"", b"\xef\xbb\xbf"}
    if valid:
        assert (result.error, writer.items) == (None, {2: row.item})
        return
    assert writer.items == {} and result.rows_loaded == 0
    assert result.error and "header" in result.error and len(result.error) <= MAX_REASON_CHARS + 100
    [reject] = result.rejects
    assert reject.line == 1 and reject.reason in result.error
    assert json.loads(s3.stored["orders.csv.rejects.json"])["rows"][0]["line"] == 1
