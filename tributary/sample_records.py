"""Sample records: unicorn telemetry like the Wild Rydes workshop's fleet, and payment state changes.

Plain, endless generators (reproducible with a seed), shared by `tributary produce`, the demo and
the benchmarks.
"""

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any


def unicorn_statuses(
    names: Sequence[str], *, start: datetime | None = None, interval: float = 1.0, seed: int | None = None
) -> Iterator[dict[str, Any]]:
    """Endless readings: one per unicorn per `interval` seconds of StatusTime, unicorns in turn.

    Each unicorn wanders from a starting point near Boston like the workshop's fleet; magic and
    health points drift. With `seed` the readings are reproducible.
    """
    rng = random.Random(seed)
    moment = start or datetime.now(UTC)
    state = {
        name: {"Latitude": 42.36 + rng.uniform(-0.05, 0.05), "Longitude": -71.06 + rng.uniform(-0.05, 0.05),
               "MagicPoints": rng.randint(100, 200), "HealthPoints": rng.randint(100, 200)}
        for name in names
    }
    while True:
        for name in names:
            unicorn = state[name]
            step_lat, step_lon = rng.uniform(-0.0005, 0.0005), rng.uniform(-0.0005, 0.0005)
            unicorn["Latitude"] += step_lat
            unicorn["Longitude"] += step_lon
            unicorn["MagicPoints"] = max(0, unicorn["MagicPoints"] + rng.randint(-3, 3))
            unicorn["HealthPoints"] = max(0, unicorn["HealthPoints"] + rng.randint(-3, 3))
            yield {
                "Name": name,
                "StatusTime": moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}",
                "Latitude": unicorn["Latitude"],
                "Longitude": unicorn["Longitude"],
                "Distance": round(math.hypot(step_lat, step_lon) * 111_000, 2),
                "MagicPoints": unicorn["MagicPoints"],
                "HealthPoints": unicorn["HealthPoints"],
            }
        moment += timedelta(seconds=interval)


PAYMENT_LIFECYCLES = (
    ("PENDING", "AUTHORIZED", "SETTLED"),
    ("PENDING", "AUTHORIZED", "SETTLED", "REFUNDED"),
    ("PENDING", "DECLINED"),
)


def payment_events(
    *, accounts: int = 20, start: datetime | None = None, seed: int | None = None
) -> Iterator[dict[str, Any]]:
    """Endless payment state changes: each payment walks a lifecycle, several interleaved.

    `amount` is a two-place Decimal, `createdAt` a UTC datetime in milliseconds, `channel` the
    field schema version 2 adds (writers of version 1 leave it out).
    """
    rng = random.Random(seed)
    moment = (start or datetime.now(UTC)).replace(microsecond=0)
    in_flight: list[tuple[dict[str, Any], Iterator[str]]] = []
    for number in itertools.count(1):
        if len(in_flight) < 5 or rng.random() < 0.2:
            payment = {
                "paymentId": f"pay-{number:08d}",
                "accountId": f"acct-{rng.randrange(accounts):04d}",
                "amount": Decimal(rng.randrange(100, 500_000)) / 100,
                "currency": rng.choice(("EUR", "USD", "GBP")),
                "createdAt": moment,
                "channel": rng.choice(("web", "mobile", "pos")),
            }
            in_flight.append((payment, iter(rng.choice(PAYMENT_LIFECYCLES))))
        index = rng.randrange(len(in_flight))
        payment, lifecycle = in_flight[index]
        status = next(lifecycle, None)
        if status is None:
            in_flight.pop(index)
            continue
        moment += timedelta(milliseconds=rng.randrange(1, 2000))
        yield payment | {"status": status}
