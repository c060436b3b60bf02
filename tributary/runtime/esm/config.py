"""An event source mapping's settings, checked against AWS's documented ranges when it is created.

An invalid value raises ``ValueError`` naming the parameter; an invalid FilterCriteria pattern
raises `FilterPatternError` (a ValueError) naming its position, so evaluating a pattern later
never fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from tributary.runtime.esm.filtering import FilterPatternError, validate_pattern
from tributary.runtime.esm.sources import arn_account, is_dynamodb_stream

STARTING_POSITIONS = frozenset({"LATEST", "TRIM_HORIZON", "AT_TIMESTAMP"})
MAX_FILTER_PATTERNS = 5


@dataclass(frozen=True)
class MappingConfig:
    """``source_arn``: a Kinesis stream ARN, a Kinesis stream consumer ARN (…:stream/S/consumer/C:TIMESTAMP,
    enhanced fan-out: its stream is read) or a DynamoDB stream ARN (…:table/T/stream/LABEL).
    ``filter_patterns``: parsed EventBridge patterns (`filtering.parse_pattern` of each FilterCriteria
    Pattern). -1 means "no limit" for ``maximum_retry_attempts`` and ``maximum_record_age_s``."""

    function_name: str
    function_arn: str
    source_arn: str
    batch_size: int = 100
    maximum_batching_window_s: float = 0
    starting_position: str = "LATEST"
    starting_position_timestamp: float | None = None
    maximum_retry_attempts: int = -1
    maximum_record_age_s: int = -1
    bisect_on_function_error: bool = False
    report_batch_item_failures: bool = False
    parallelization_factor: int = 1
    tumbling_window_s: int | None = None
    filter_patterns: tuple[dict, ...] = ()
    on_failure_destination_arn: str | None = None
    enabled: bool = True
    role_arn: str | None = None

    def __post_init__(self) -> None:
        _check_range("BatchSize", self.batch_size, 1, 10_000)
        _check_range("MaximumBatchingWindowInSeconds", self.maximum_batching_window_s, 0, 300)
        _check_range("MaximumRetryAttempts", self.maximum_retry_attempts, -1, 10_000)
        if self.maximum_record_age_s != -1:
            _check_range("MaximumRecordAgeInSeconds", self.maximum_record_age_s, 60, 604_800)
        _check_range("ParallelizationFactor", self.parallelization_factor, 1, 10)
        if self.tumbling_window_s is not None:
            _check_range("TumblingWindowInSeconds", self.tumbling_window_s, 0, 900)
        _check_filter_patterns(self.filter_patterns)
        _check_starting_position(self)

    @property
    def execution_role_arn(self) -> str:
        """The function's role, as Kinesis event records name it (invokeIdentityArn); a default one if unset."""
        return self.role_arn or f"arn:aws:iam::{arn_account(self.function_arn)}:role/lambda-role"

    @property
    def window_s(self) -> int:
        """The tumbling window's length; 0 when the mapping has none."""
        return self.tumbling_window_s or 0

    def retries_exhausted(self, invocations: int) -> bool:
        """Whether a batch invoked `invocations` times has had every retry MaximumRetryAttempts allows."""
        return 0 <= self.maximum_retry_attempts < invocations


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def _check_filter_patterns(patterns: tuple[dict, ...]) -> None:
    if len(patterns) > MAX_FILTER_PATTERNS:
        raise ValueError(f"FilterCriteria takes at most {MAX_FILTER_PATTERNS} patterns, got {len(patterns)}")
    for position, pattern in enumerate(patterns, 1):
        try:
            validate_pattern(pattern)
        except FilterPatternError as error:
            raise FilterPatternError(f"FilterCriteria pattern {position}: {error}") from error


def _check_starting_position(config: MappingConfig) -> None:
    if config.starting_position not in STARTING_POSITIONS:
        raise ValueError(f"StartingPosition must be one of {sorted(STARTING_POSITIONS)}")
    if (config.starting_position == "AT_TIMESTAMP") != (config.starting_position_timestamp is not None):
        raise ValueError("StartingPositionTimestamp is required with, and only with, AT_TIMESTAMP")
    if is_dynamodb_stream(config.source_arn) and config.starting_position == "AT_TIMESTAMP":
        raise ValueError("DynamoDB streams support LATEST and TRIM_HORIZON only")
