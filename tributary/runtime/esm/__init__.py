"""Event source mappings: an emulation of Lambda's Kinesis / DynamoDB-streams poller, run against moto.

Follows the AWS Lambda developer guide ("Using Lambda with Kinesis", "partial batch response",
"tumbling windows", "Retain discarded batch records", "event filtering"); each module holds one
concept and states its part of those rules:

    config.py     MappingConfig: the settings and their documented ranges
    sources.py    Kinesis streams (directly or through a consumer) and DynamoDB streams read through
                  boto3, as Lambda's event records
    shards.py     starting positions, reading ahead, idle back-off, resharding
    filtering.py  FilterCriteria (EventBridge patterns)
    lanes.py      ParallelizationFactor lanes and gathering batches (size, 6 MB, batching window)
    windows.py    tumbling windows and their state
    responses.py  judging a response (function errors, batchItemFailures) and retry/bisect rules
    discards.py   discarded records and their invocation records, sent on-failure
    engine.py     EventSourceMapping: one poll, one invocation per lane at most
    drain.py      drain(): poll until everything is delivered
    stats.py      MappingStats

CONTRACT (the host codes against these names):

    MappingConfig(function_name, function_arn, source_arn, batch_size=100, maximum_batching_window_s=0,
                  starting_position="LATEST", starting_position_timestamp=None, maximum_retry_attempts=-1,
                  maximum_record_age_s=-1, bisect_on_function_error=False, report_batch_item_failures=False,
                  parallelization_factor=1, tumbling_window_s=None, filter_patterns=(),
                  on_failure_destination_arn=None, enabled=True, role_arn=None)
        ``source_arn``: a Kinesis stream, a Kinesis stream consumer (enhanced fan-out: the consumer's
        stream is read, and the records name the stream) or a DynamoDB stream.
        Invalid values raise ``ValueError`` naming the parameter (AWS's documented ranges), an invalid
        pattern ``filtering.FilterPatternError`` (a ValueError), so evaluating one never fails.
    InvocationResult(response=None, function_error=None, error_message=None), Invoker = Callable[[dict],
        InvocationResult] (tributary.runtime.invocation): the host enforces the function's Timeout. With
        parallelization_factor > 1 the engine calls the invoker from several threads at once (one per
        virtual shard) unless ``max_workers=1`` is passed.
    EventSourceMapping(config, invoker, *, trace=None, clock=time.time, max_workers=None,
                       retry_delay_s=1.0, idle_read_interval_s=1.0)
        ``retry_delay_s``: how long a lane waits before invoking the same records again after a
        function error (Lambda does not retry at once). ``idle_read_interval_s``: after a read that
        returned nothing, the shard is not read again for this long (Lambda polls a shard about once a
        second). Both are measured with ``clock``.
        .uuid                    the mapping's UUID (S3 destination keys use it)
        .start() -> None         read the shard list and take shard iterators now (LATEST means "from
                                 here"); poll() calls it on first use
        .poll() -> bool          one step: one GetRecords per shard, at most one invocation per
                                 (virtual) shard; True if it did any work
        .is_drained() -> bool    every shard read to its end, nothing queued, retried or windowed
        .wake() -> None          forget idle back-offs: the next poll reads every shard
        .stuck() -> list[str]    what keeps it from being drained: the sequence range, attempts and
                                 last function error of each batch being retried, open windows
        .waiting_windows() -> list[str]  windows whose lane waits for the clock to pass their end
        .stats: MappingStats     counters (see stats.py)
        .close() -> None         stop the worker threads
    drain(pollables, *, timeout_s, sleep=time.sleep, notify=None) -> None
        poll everything (anything with poll() and is_drained()) until a full round does no work and all
        are drained (then once more with idle back-offs woken, to be sure); raises TimeoutError naming
        what is not drained and why (stuck()); calls notify(text) once per window it waits for.
    TraceWriter(path_or_text_stream)  (tributary.runtime.trace): one JSON line per invocation and per
        on-failure delivery; see that module for the line shapes.
"""

from tributary.runtime.esm.config import MappingConfig
from tributary.runtime.esm.drain import Pollable, drain
from tributary.runtime.esm.engine import EventSourceMapping
from tributary.runtime.esm.lanes import PAYLOAD_LIMIT_BYTES
from tributary.runtime.esm.stats import MappingStats
from tributary.runtime.esm.windows import STATE_LIMIT_BYTES

__all__ = [
    "PAYLOAD_LIMIT_BYTES",
    "STATE_LIMIT_BYTES",
    "EventSourceMapping",
    "MappingConfig",
    "MappingStats",
    "Pollable",
    "drain",
]
