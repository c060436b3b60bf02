"""What every handler shares about one Lambda invocation: the context it reads and the deadline it keeps."""

import base64
import binascii
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from tributary_shared.errors import PoisonRecordError

# Time kept back from the invocation's remaining time to log, publish metrics and return a response.
DEADLINE_MARGIN_S = 1.5


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class LoggerLike(Protocol):
    """Powertools' `Logger`, or anything that logs the same way."""

    def error(self, msg: object, *args: object, **kwargs: Any) -> None: ...

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None: ...

    def info(self, msg: object, *args: object, **kwargs: Any) -> None: ...


def invocation_deadline(
    context: LambdaContextLike, clock: Callable[[], float] = time.monotonic, margin_s: float = DEADLINE_MARGIN_S
) -> float:
    """The `clock()` instant by which work must stop so the function can still answer in time."""
    return clock() + context.get_remaining_time_in_millis() / 1000 - margin_s


def lowest_sequence(sequence_numbers: Iterable[str]) -> str | None:
    """The earliest of the failed records (Kinesis sequence numbers compare as integers, not text)."""
    return min(sequence_numbers, key=int, default=None)


def batch_item_failures(failed_sequence_numbers: Iterable[str]) -> list[dict[str, str]]:
    """ReportBatchItemFailures' list: the lowest failed record only, where the mapping checkpoints."""
    first = lowest_sequence(failed_sequence_numbers)
    return [] if first is None else [{"itemIdentifier": first}]


def kinesis_data(record: Mapping[str, Any], max_bytes: int | None = None) -> bytes:
    """The bytes of one record of a Kinesis event; anything malformed is that record's poison."""
    try:
        encoded = record["kinesis"]["data"]
        # base64 grows data by 4/3: an oversized record is refused before it is decoded.
        if max_bytes is not None and len(encoded) > (max_bytes * 4) // 3 + 4:
            raise PoisonRecordError(f"record is larger than {max_bytes} bytes")
        return base64.b64decode(encoded, validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        raise PoisonRecordError(f"record data is not valid base64: {error}") from error
