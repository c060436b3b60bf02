"""What every handler shares about one Lambda invocation: the context it reads and the deadline it keeps."""

import time
from collections.abc import Callable
from typing import Any, Protocol

# Time kept back from the invocation's remaining time to log, publish metrics and return a response.
DEADLINE_MARGIN_S = 1.5


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class MetricsLike(Protocol):
    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class LoggerLike(Protocol):
    def warning(self, msg: object, *args: object, **kwargs: Any) -> None: ...

    def info(self, msg: object, *args: object, **kwargs: Any) -> None: ...


def invocation_deadline(
    context: LambdaContextLike, clock: Callable[[], float] = time.monotonic, margin_s: float = DEADLINE_MARGIN_S
) -> float:
    """The `clock()` instant by which work must stop so the function can still answer in time."""
    return clock() + context.get_remaining_time_in_millis() / 1000 - margin_s
