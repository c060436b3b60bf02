"""The aggregator function: one invocation handled, then logged and published as metrics.

`Aggregator` is what the handler runs: its sink and its payload decoder come from the settings
built at cold start (or are given), and every invocation's `InvocationReport` becomes log lines
and metrics here.
"""

import time
from collections.abc import Callable
from typing import Any

from tributary_shared.aggregator.settings import AggregatorSettings
from tributary_shared.aggregator.sink import QUARANTINE_NAME, AggregationSink, QuarantineReport
from tributary_shared.aggregator.window_handler import FoldOutcome, InvocationReport, Sink, handle_window_event
from tributary_shared.invocation import LambdaContextLike, LoggerLike, invocation_deadline
from tributary_shared.kinesis_batch import sequence_of
from tributary_shared.metrics import MetricsLike, MetricUnit, publish
from tributary_shared.payloads import Decoder, PayloadDecoder

# A batch full of bad records should not flood the log: the first few name the problem.
MAX_LOGGED_SEQUENCES = 10


class Aggregator:
    def __init__(
        self,
        settings: AggregatorSettings,
        *,
        sink: Sink | None = None,
        decode: Decoder | None = None,
        logger: LoggerLike | None = None,
        metrics: MetricsLike | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # The sink's clients are created on first use: importing the handler does not pay for them.
        self.sink = sink or AggregationSink(settings.table_name, settings.summary_stream_name)
        self.decode = decode or PayloadDecoder(registry=settings.registry).decode
        self.logger = logger
        self.metrics = metrics
        self.clock = clock

    def handle(self, event: Any, context: LambdaContextLike) -> dict[str, Any]:
        report = handle_window_event(event, self.sink, invocation_deadline(context, self.clock), decode=self.decode)
        record_invocation(report, self.logger, self.metrics)
        return report.response


def record_invocation(report: InvocationReport, logger: LoggerLike | None, metrics: MetricsLike | None) -> None:
    """Log the invocation's outcome and add its metrics (flushed by the handler's `log_metrics`)."""
    fold = report.fold
    publish(
        metrics,
        {
            # User records (a KPL aggregate counts each of its own), and aggregates apart.
            "RecordsIn": fold.records_in,
            "AggregatedRecordsIn": fold.aggregated_in,
            "RecordsFolded": fold.folded,
            "RecordsRedelivered": fold.redelivered,
            "PoisonRecords": fold.new_poison,
        },
    )
    publish(metrics, {"StateBytes": report.state_bytes}, MetricUnit.Bytes)
    publish(metrics, {"StateQuarantined": int(bool(report.state_quarantined))})
    if report.published:
        publish(
            metrics,
            {
                "WindowsClosed": int(report.closed),
                "SegmentsFlushed": int(report.segment_flushed),
                "PartialWindows": int(report.partial),
                "AggregationItems": report.published.items_written,
                "RowsQuarantined": report.published.rows_quarantined,
            },
        )
    if logger is not None:
        _log(report, logger)


def _log(report: InvocationReport, logger: LoggerLike) -> None:
    context = {
        "window": report.window.start,
        "shardId": report.window.shard_id,
        "folded": report.fold.folded,
        "redelivered": report.fold.redelivered,
        "unicorns": report.unicorns,
        "stateBytes": report.state_bytes,
    }
    if report.state_quarantined:
        _log_quarantine(
            logger,
            "window state could not be read: stored raw as a quarantined item, the window goes on with a fresh state",
            report.state_quarantined,
            context,
        )
    _log_failures(logger, report.fold, context)
    if report.flush_deferred:
        logger.warning(
            f"large window state not stored yet, kept for the next batch: {report.flush_deferred}", extra=context
        )
    if report.published:
        if report.published.quarantine:
            _log_quarantine(
                logger,
                "unicorn rows that could not be stored were kept as a quarantined item; the others were stored",
                report.published.quarantine,
                context,
            )
        logger.info(
            "window stored" if report.closed else "large window state stored as a partial segment",
            extra={
                **context,
                "partial": report.partial,
                "items": report.published.items_written,
                "summaries": report.published.summaries_sent,
                "poisonInWindow": report.poison_in_window,
            },
        )


def _log_quarantine(logger: LoggerLike, message: str, quarantine: QuarantineReport, context: dict[str, Any]) -> None:
    logger.error(
        f"{message}: {quarantine.reason}",
        extra={
            **context,
            "quarantineKey": {"name": QUARANTINE_NAME, "windowStartPrefix": quarantine.sort_key_prefix},
            "parts": quarantine.parts,
            "chars": quarantine.chars,
            "truncated": quarantine.truncated,
        },
    )


def _log_failures(logger: LoggerLike, fold: FoldOutcome, context: dict[str, Any]) -> None:
    # `record` is the record's id: "<sequence>:<subsequence>" for a user record of a KPL aggregate.
    for record_id, reason in list(fold.poison.items())[:MAX_LOGGED_SEQUENCES]:
        logger.warning(
            f"poison record not folded: {reason}",
            extra={**context, "sequenceNumber": sequence_of(record_id), "record": record_id},
        )
    if fold.transient_sequence:
        logger.warning(
            f"transient failure, batch reported for retry from here: {fold.transient_reason}",
            extra={
                **context,
                "sequenceNumber": sequence_of(fold.transient_sequence),
                "record": fold.transient_sequence,
                "notReached": fold.not_reached,
            },
        )
