"""What a mapping has done, in counters the runtime shows and the demo reports.

Once drained, ``records_in == records_filtered_out + records_succeeded + records_discarded``.
``records_retried`` counts deliveries after a failure (a retried batch, a bisected half).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MappingStats:
    records_in: int = 0
    records_filtered_out: int = 0
    records_succeeded: int = 0
    records_discarded: int = 0
    records_to_destination: int = 0
    invocations: int = 0
    retries: int = 0
    records_retried: int = 0  # records delivered again after a failure: retried batches and bisected halves
    function_errors: int = 0
    partial_failures: int = 0
    bisections: int = 0
    windows_closed: int = 0
    iterator_age_ms: int = 0
    last_error: str | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: str, amount: int) -> None:
        # Lanes of one mapping run on several threads when ParallelizationFactor > 1.
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)
