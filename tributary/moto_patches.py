"""A fix to the emulator: moto 5.2.5's Kinesis shard reads in O(log n) per call instead of O(n).

Tied to moto 5.2.5, the version requirements-dev.txt pins. In moto/kinesis/models.py, `Shard` keeps
its records in an insertion-ordered dict keyed by sequence number, and:

- `get_records` (every GetRecords) walks that dict from its first record, whatever the iterator;
- `get_max_sequence_number` (every record PutRecord and PutRecords add, LATEST iterators, closed
  shards in ListShards and DescribeStream) and `get_min_sequence_number` (every shard in those
  listings) copy all the keys into a list to read one end of it;
- `get_sequence_number_at` (AT_TIMESTAMP iterators) copies all the records into a list to read the
  first one.

So each call costs O(records in the shard), and a long `tributary up` session slows down
quadratically. `apply()` replaces those four method bodies, and `put_record`. Signatures and results
stay moto's, so the change can be offered upstream as it is:

- both ends of the dict are read in O(1), with `next(iter(...))` and `next(reversed(...))`;
- each shard gets a `ShardSequenceIndex`: its sequence numbers in insertion order, caught up on the
  next read in O(records added since). GetRecords bisects it, costing O(log n + Limit), and
  AT_TIMESTAMP bisects it on arrival time, costing O(log n).

- each record put is taken off the list of objects Python's cyclic garbage collector walks. A
  `Record` holds strings, numbers and a datetime (its `__init__` is pinned below), so it can never
  be part of a reference cycle: the collector could never free one, only walk it, and its full
  collections walk every object tracked. At a million records that cost 1.5 µs per record
  drained, the one cost that still grew with the stream (measured in `make bench`). Reference
  counting still frees a record when its stream goes. CPython offers no way to untrack an object
  from Python: this calls its public C function `PyObject_GC_UnTrack` through ctypes. `gc.freeze()`
  was the other way, and is worse: it freezes every object alive in the process at that moment,
  so the local runtime's cyclic garbage not yet collected would never be freed.

The index trusts nothing it has not checked. If the records dict is replaced (SplitShard does
this), shrinks, or has ends other than the ones the index recorded, the index is rebuilt. If the
keys stop ascending, or arrival times go backwards (a wall-clock step), a call falls back to moto's
own scan. moto's put_record always appends the next sequence number, so with moto alone only a
clock step ever takes a call off the fast path. That makes the results moto's in every state, and
tests/test_moto_patches.py compares the two on random sequences of calls. Offered upstream, the
index would be created in `Shard.__init__` rather than on first use.

`apply()` refuses to patch a different moto: another version, or changed source in the methods it
replaces or relies on (checked by SHA-256). It then warns with `MotoPatchRefused` and leaves moto
as it is. It does not raise. An unpatched moto is slow but correct, and a fix applied to code it was
not written for could be fast and wrong. Raising instead would turn a moto upgrade into a broken
local runtime and test session over a speed fix. tests/test_moto_patches.py fails in that case, so
an upgrade cannot drop the fix unnoticed: re-check these bodies against the new moto, then update
`PINNED_MOTO_VERSION` and `MOTO_SOURCE_SHA256`.
"""

import ctypes
import hashlib
import inspect
import math
import threading
import warnings
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

import moto
from moto.kinesis.models import Record, Shard

PINNED_MOTO_VERSION = "5.2.5"

# SHA-256 of moto 5.2.5's source (inspect.getsource) of each method this module replaces (the Shard
# methods of REPLACEMENTS) or whose behaviour the replacements assume: records live in one
# insertion-ordered dict, put_record appends the key after the newest one, and a Record's attributes
# are strings, numbers and a datetime (so it cannot be part of a reference cycle).
MOTO_SOURCE_SHA256 = {
    "get_records": "1188a73a6b3db1f9acd79de3488b0c52f9f6efa21a5755fbf9ec1da3c5ebc28a",
    "get_min_sequence_number": "acae970512147e4e42bd2c489c4585b0e635e0b727545f12af39b7b7ddf3a709",
    "get_max_sequence_number": "eff48df162f5a63d31722187966dbf749a73bd39c0aba368169c1a4be19f8491",
    "get_sequence_number_at": "d40f468a2c48d30d1de5c5368cdf2b898627e647a4f9a430513dc89c2cd83adc",
    "__init__": "ed0cc26823a9cd923483cfb710bb541b1f2345cd9ab301108a31127ad56780cc",
    "put_record": "e2d15174261bc63e98ffce9cab9a1038f07c7ff5ce9846cb7b3202652f60ae38",
    "Record.__init__": "35a5af81a443c0b42c2790aefbedbc7c883812a321c5791c459c0a309d4ec7c3",
}

# moto's own functions, taken before anything replaces them: the fallbacks and the source checks use them.
# A method a later moto dropped is None here, and mismatch() refuses it like changed source.
MOTO_SHARD_METHODS: dict[str, Any] = {
    name: (Record if name.startswith("Record.") else Shard).__dict__.get(name.removeprefix("Record."))
    for name in MOTO_SOURCE_SHA256
}


class MotoPatchRefused(RuntimeWarning):
    """The installed moto is not the one an emulator fix was written for; moto is left unpatched."""


_INT64 = range(-(2**63), 2**63)


class ShardSequenceIndex:
    """One shard's sequence numbers in insertion order, and whether bisecting them is exact.

    The numbers sit in an array of 64-bit ints, not a list, so the garbage collector has nothing in
    it to traverse when a shard holds a million records.
    """

    def __init__(self, records: dict[int, Record]) -> None:
        self.records = records
        # Every key so far, while they are ints that ascend (GetRecords bisects them); frozen once they do not.
        self.sequence_numbers = array("q")
        self.ascending = True
        # No record arrived before the one ahead of it: bisecting arrival times finds AT_TIMESTAMP's start.
        self.arrivals_ordered = True
        self._latest_arrival = -math.inf
        self._count = 0
        self._first: object = None
        self._last: object = None
        self._append(list(records))

    def catch_up(self, records: dict[int, Record]) -> bool:
        """Index the records added since the last call; False if `records` changed in any other way."""
        known = self._count
        if records is not self.records or len(records) < known:
            return False
        if known == 0:
            self._append(list(records))
            return True
        if next(iter(records)) != self._first:
            return False
        # Newest first: the keys added since, then the one that was newest at the last call.
        newest = list(islice(reversed(records), len(records) - known + 1))
        if newest.pop() != self._last:
            return False
        newest.reverse()
        self._append(newest)
        return True

    def _append(self, keys: list[int]) -> None:
        for key in keys:
            if self.ascending:
                if type(key) is int and key in _INT64 and (self._count == 0 or key > self._last):  # type: ignore[operator]
                    self.sequence_numbers.append(key)
                else:
                    self.ascending = False
            arrival = getattr(self.records[key], "created_at", None)
            if not isinstance(arrival, float) or not arrival >= self._latest_arrival:
                self.arrivals_ordered = False
            else:
                self._latest_arrival = arrival
            if self._count == 0:
                self._first = key
            self._last = key
            self._count += 1


# moto's server answers requests on several threads: one index update at a time. Readers need no lock,
# because an index only grows at its end and a rebuild replaces it with a new object.
_INDEX_LOCK = threading.Lock()


def synced_index(shard: Shard) -> ShardSequenceIndex:
    """The shard's index, caught up with its records (built on first use, rebuilt if they were replaced)."""
    with _INDEX_LOCK:
        index: ShardSequenceIndex | None = getattr(shard, "_sequence_index", None)
        if index is None or not index.catch_up(shard.records):
            index = ShardSequenceIndex(shard.records)
            shard._sequence_index = index  # type: ignore[attr-defined]
        return index


def records_moto_returns(limit: object, skipped_any: bool, available: int) -> int:
    """How many of the `available` records after the iterator moto's scan returns for this Limit.

    moto tests `len(results) == limit` after every record it visits. That gives 0 once per record at
    or before the iterator (if there are any), then 1, 2, ... as it takes records, and it stops at
    the first match. So Limit 0 returns nothing after a skipped record and everything otherwise, a
    negative Limit returns everything, and a JSON 2.0 returns two records. These quirks are kept.
    """
    if limit is None:
        return available
    counts = range(0 if skipped_any else 1, available + 1)
    if type(limit) is int:
        return limit if limit in counts else available
    return next((count for count in counts if count == limit), available)


def get_records(self: Shard, last_sequence_id: str, limit: int | None) -> tuple[list[Record], int, int]:
    last_sequence_int = int(last_sequence_id)
    index = synced_index(self)
    if not index.ascending:
        return MOTO_SHARD_METHODS["get_records"](self, last_sequence_id, limit)  # type: ignore[no-any-return]
    sequence_numbers = index.sequence_numbers
    known = len(sequence_numbers)  # put_record on another thread may add more meanwhile
    start = bisect_right(sequence_numbers, last_sequence_int, 0, known)
    count = records_moto_returns(limit, skipped_any=start > 0, available=known - start)
    if count == 0:
        return [], last_sequence_int, 0
    taken = sequence_numbers[start : start + count]
    results = [self.records[sequence_number] for sequence_number in taken]
    very_last_record = self.records[sequence_numbers[known - 1]]
    secs_behind_latest = very_last_record.created_at - results[-1].created_at
    return results, taken[-1], int(secs_behind_latest * 1000)


def get_min_sequence_number(self: Shard) -> int:
    return next(iter(self.records), 0)


def get_max_sequence_number(self: Shard) -> int:
    return next(reversed(self.records), 0)


def get_sequence_number_at(self: Shard, at_timestamp: float) -> int:
    if not self.records or at_timestamp <= next(iter(self.records.values())).created_at:
        return 0
    index = synced_index(self)
    # Ascending keys also mean put_record never overwrote a record in place, which could reorder arrivals unseen.
    if not (index.ascending and index.arrivals_ordered):
        return MOTO_SHARD_METHODS["get_sequence_number_at"](self, at_timestamp)  # type: ignore[no-any-return]
    records = self.records
    sequence_numbers = index.sequence_numbers
    arrived_before = bisect_left(
        sequence_numbers, at_timestamp, 0, len(sequence_numbers), key=lambda number: records[number].created_at
    )
    # moto returns the last record that arrived before at_timestamp. With none (a NaN timestamp),
    # its `None.sequence_number` raises AttributeError, and so does this.
    record = records[sequence_numbers[arrived_before - 1]] if arrived_before else None
    return record.sequence_number  # type: ignore[union-attr]


_gc_untrack = ctypes.pythonapi.PyObject_GC_UnTrack  # called with the interpreter lock held (pythonapi)
_gc_untrack.argtypes = (ctypes.py_object,)
_gc_untrack.restype = None


def put_record(self: Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    # moto's put_record, with the record untracked; like moto's, not safe for concurrent calls on one shard.
    sequence_number = get_max_sequence_number(self) + 1
    record = Record(partition_key, data, sequence_number, explicit_hash_key)
    _gc_untrack(record)  # never part of a cycle: see the module docstring
    self.records[sequence_number] = record
    return str(sequence_number)


REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "get_records": get_records,
    "get_min_sequence_number": get_min_sequence_number,
    "get_max_sequence_number": get_max_sequence_number,
    "get_sequence_number_at": get_sequence_number_at,
    "put_record": put_record,
}

_APPLY_LOCK = threading.Lock()


def source_sha256(function: object) -> str | None:
    try:
        return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()  # type: ignore[arg-type]
    except (OSError, TypeError):  # no source shipped, or no such method: nothing to compare, so nothing to trust
        return None


def written_for_this_moto(function: object, expected_sha256: str) -> bool:
    """moto is the pinned version and `function`'s source is the one a patch was written against."""
    return moto.__version__ == PINNED_MOTO_VERSION and source_sha256(function) == expected_sha256


def replace_moto_method(owner: type, name: str, replacement: object, expected_sha256: str, what: str) -> bool:
    """Put `replacement` in place of moto's `owner.name` (idempotent); False, with a MotoPatchRefused warning
    naming `what` is lost, when moto is not the pinned one or that method's source changed."""
    if owner.__dict__.get(name) is replacement:
        return True
    if not written_for_this_moto(owner.__dict__.get(name), expected_sha256):
        warnings.warn(f"moto {moto.__version__} is not the moto {PINNED_MOTO_VERSION} whose {owner.__name__}.{name} "
                      f"was replaced here: left unpatched ({what})", MotoPatchRefused, stacklevel=3)  # fmt: skip
        return False
    setattr(owner, name, replacement)
    return True


def mismatch(version: str, methods: dict[str, Any]) -> str | None:
    """Why the fix must not be applied to this moto, or None when it is the moto it was written for."""
    if version != PINNED_MOTO_VERSION:
        return f"moto is {version}, the Kinesis shard fix was written for moto {PINNED_MOTO_VERSION}"
    changed = [name for name, expected in MOTO_SOURCE_SHA256.items() if source_sha256(methods[name]) != expected]
    if changed:
        names = ", ".join(name if "." in name else f"Shard.{name}" for name in changed)
        return f"in moto {version}, {names} changed from the source the Kinesis shard fix was written against"
    return None


def is_applied() -> bool:
    return all(Shard.__dict__.get(name) is replacement for name, replacement in REPLACEMENTS.items())


def apply() -> bool:
    """Install the fix in moto's Kinesis `Shard` (idempotent); False, with a warning, on any moto but the pinned one."""
    with _APPLY_LOCK:
        if is_applied():
            return True
        problem = mismatch(moto.__version__, MOTO_SHARD_METHODS)
        if problem is not None:
            warnings.warn(
                f"{problem}; the fix is NOT applied, so every GetRecords and PutRecord in the embedded AWS "
                "costs O(records in the shard). Re-check tributary/moto_patches.py against this moto, then "
                "update PINNED_MOTO_VERSION and MOTO_SOURCE_SHA256.",
                MotoPatchRefused,
                stacklevel=2,
            )
            return False
        for name, replacement in REPLACEMENTS.items():
            setattr(Shard, name, replacement)
        return True


@contextmanager
def moto_unpatched() -> Iterator[None]:
    """moto's own Shard methods for the duration, to compare against (tests, benchmarks).

    It swaps class attributes, so nothing else may use moto meanwhile (no request in flight to the server).
    """
    current = {name: Shard.__dict__[name] for name in REPLACEMENTS}
    for name in REPLACEMENTS:
        setattr(Shard, name, MOTO_SHARD_METHODS[name])
    try:
        yield
    finally:
        for name, method in current.items():
            setattr(Shard, name, method)
