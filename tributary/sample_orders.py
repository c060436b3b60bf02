"""Order CSV files like the ones the CsvLoader function loads: a day of orders, and changes to some of them.

Reproducible from a seed. `tributary produce orders`, the order data lake demo, the tests and the
loader benchmark generate their files here.
"""

import random
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from decimal import Decimal

CSV_COLUMNS = ("order_id", "item_id", "customer_id", "product", "amount", "currency", "time_stamp", "transaction_date")
PRODUCTS = ("Kindle", "Echo Dot", "Fire TV Stick", "Kindle Paperwhite", "Echo Show", "Ring Doorbell", "Eero Pro")


def order_rows(day: date, orders: int, seed: int = 7) -> Iterator[dict[str, str]]:
    """Order lines of one day: `orders` orders of one to three lines each, reproducible from `seed`."""
    rng = random.Random(seed)
    for number in range(orders):
        second = rng.randrange(86_400)
        for item in range(1, rng.randint(1, 3) + 1):
            yield {
                "order_id": f"{day:%Y%m%d}-{number:07d}",
                "item_id": str(item),
                "customer_id": f"C-{rng.randint(1, 50_000):05d}",
                "product": rng.choice(PRODUCTS),
                "amount": f"{rng.randint(199, 49_999) / 100:.2f}",
                "currency": "USD",
                "time_stamp": f"{day}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z",
                "transaction_date": day.isoformat(),
            }


def change_rows(rows: Iterable[Mapping[str, str]], seed: int = 11, share: float = 0.05) -> Iterator[dict[str, str]]:
    """For about `share` of `rows`: the line with a 10% lower amount, and a line added to its order."""
    rng = random.Random(seed)
    for row in rows:
        if rng.random() >= share:
            continue
        yield dict(row, amount=f"{Decimal(row['amount']) * Decimal('0.9'):.2f}")
        yield dict(row, item_id=str(int(row["item_id"]) + 10), product=rng.choice(PRODUCTS))


def csv_lines(rows: Iterable[Mapping[str, str]]) -> Iterator[bytes]:
    yield (",".join(CSV_COLUMNS) + "\n").encode()
    for row in rows:
        yield (",".join(row[name] for name in CSV_COLUMNS) + "\n").encode()


def csv_bytes(rows: Iterable[Mapping[str, str]]) -> bytes:
    return b"".join(csv_lines(rows))
