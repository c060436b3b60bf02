"""The redrive function's settings (read once at cold start) and one execution's options (from its input).

Environment, as the template sets it:

    REDRIVE_PIPELINES          name=function,...  pipelines whose records are re-applied through their
                               function (Kinesis functions, and the CSV loader's asynchronous requests)
    QUARANTINE_ONLY_PIPELINES  name=function,...  pipelines that cannot replay a record (the fleet
                               aggregator's tumbling windows have closed): their records are quarantined
    QUARANTINE_BUCKET          where records that still fail are kept, under quarantine/<pipeline>/
    FAILED_RECORDS_BUCKET      the on-failure bucket (OnFailureDestination=s3); empty without one
    INVOKE_IDENTITY_ARN        the role rebuilt events name as invokeIdentityArn (the redrive's own)
    AWS_REGION                 set by Lambda; the region rebuilt events name

A pipeline's name is how a person asks for it (`tributary redrive --pipeline payment-processor`) and
the folder its quarantine goes to; its function is what an on-failure record's functionArn names.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tributary_shared.errors import ConfigurationError
from tributary_shared.settings import Environ, optional_env, required_env

COMPONENT = "redrive"
PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# The numeric options of an execution's input and their bounds (inclusive).
OPTION_BOUNDS: dict[str, tuple[float, float]] = {
    "maxConcurrency": (1, 10),  # also the page size: SQS returns at most 10 messages a request
    "maxAttempts": (1, 10),
    "retryDelaySeconds": (0, 60),
    "maxMessages": (1, 2000),
    "maxKept": (1, 100),  # their receipt handles travel in the execution's state (256 KB at most)
    "visibilityTimeoutSeconds": (1, 43200),
}


@dataclass(frozen=True)
class RedriveSettings:
    pipelines: Mapping[str, str]  # pipeline name -> the function its records are re-applied through
    quarantine_only: Mapping[str, str]  # pipeline name -> function whose records cannot be replayed
    quarantine_bucket: str
    invoke_identity_arn: str
    region: str
    failed_records_bucket: str | None = None

    @classmethod
    def from_env(cls, environ: Environ | None = None) -> "RedriveSettings":
        required = required_env(
            COMPONENT, "REDRIVE_PIPELINES", "QUARANTINE_BUCKET", "INVOKE_IDENTITY_ARN", "AWS_REGION", environ=environ
        )
        pipelines = pipeline_functions("REDRIVE_PIPELINES", required["REDRIVE_PIPELINES"])
        quarantine_only = pipeline_functions(
            "QUARANTINE_ONLY_PIPELINES", optional_env("QUARANTINE_ONLY_PIPELINES", "", environ)
        )
        if clash := sorted(set(pipelines) & set(quarantine_only)):
            raise ConfigurationError(
                f"{', '.join(clash)} named in both REDRIVE_PIPELINES and QUARANTINE_ONLY_PIPELINES"
            )
        return cls(
            pipelines=pipelines,
            quarantine_only=quarantine_only,
            quarantine_bucket=required["QUARANTINE_BUCKET"],
            invoke_identity_arn=required["INVOKE_IDENTITY_ARN"],
            region=required["AWS_REGION"],
            failed_records_bucket=optional_env("FAILED_RECORDS_BUCKET", environ=environ),
        )

    def pipeline_of(self, function_name: str) -> str | None:
        """The pipeline whose function is `function_name`, replayable or not; None for any other function."""
        for name, function in (*self.pipelines.items(), *self.quarantine_only.items()):
            if function == function_name:
                return name
        return None

    @property
    def pipeline_names(self) -> list[str]:
        return sorted({*self.pipelines, *self.quarantine_only})


def pipeline_functions(variable: str, raw: str) -> dict[str, str]:
    """`name=function,...` as a mapping; anything malformed fails the cold start naming the variable."""
    pairs: dict[str, str] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        name, separator, function = (part.strip() for part in entry.partition("="))
        if not separator or not PIPELINE_NAME.match(name) or not function:
            raise ConfigurationError(f"{variable}: {entry!r} is not pipeline-name=function-name")
        if name in pairs:
            raise ConfigurationError(f"{variable}: pipeline {name!r} is named twice")
        pairs[name] = function
    return pairs


@dataclass(frozen=True)
class RunOptions:
    """What one execution was asked to do; every field has a default, so `{}` is a complete input."""

    pipeline: str | None = None  # only this pipeline's records; the others' messages are left in place
    dry_run: bool = False  # list what would be re-applied, change nothing
    max_concurrency: int = 4  # messages redriven at once (the Map state's MaxConcurrencyPath), and per page
    max_attempts: int = 3  # invocations of a record before it is quarantined
    retry_delay_s: float = 2.0  # base of the full-jitter wait between two attempts at a record
    max_messages: int = 1000  # per execution: Step Functions keeps at most 25,000 history events
    max_kept: int = 100  # messages left in the queue before the execution stops listing it
    # How long a received message stays hidden: one redrive invocation (15 minutes) and its settling. Those
    # of an execution that dies reappear after it; the next execution redrives them again, harmlessly.
    visibility_timeout_s: int = 960

    @classmethod
    def from_input(cls, raw: Any, known_pipelines: list[str]) -> "RunOptions":
        """The options of an execution's input; ValueError naming the first thing wrong with it."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"the execution input must be a JSON object, not {type(raw).__name__}")
        unknown = sorted(set(raw) - {"pipeline", "dryRun", *OPTION_BOUNDS})
        if unknown:
            known = ", ".join(["pipeline", "dryRun", *OPTION_BOUNDS])
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {known}")
        pipeline = raw.get("pipeline")
        if pipeline is not None and pipeline not in known_pipelines:
            raise ValueError(f"pipeline {pipeline!r} is not one of {', '.join(known_pipelines)}")
        dry_run = raw.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise ValueError("dryRun must be true or false")
        numbers = {name: _bounded(raw, name, low, high) for name, (low, high) in OPTION_BOUNDS.items()}
        defaults = cls()
        return cls(
            pipeline=pipeline,
            dry_run=dry_run,
            max_concurrency=int(numbers["maxConcurrency"] or defaults.max_concurrency),
            max_attempts=int(numbers["maxAttempts"] or defaults.max_attempts),
            retry_delay_s=float(defaults.retry_delay_s if numbers["retryDelaySeconds"] is None
                                else numbers["retryDelaySeconds"]),
            max_messages=int(numbers["maxMessages"] or defaults.max_messages),
            max_kept=int(numbers["maxKept"] or defaults.max_kept),
            visibility_timeout_s=int(numbers["visibilityTimeoutSeconds"] or defaults.visibility_timeout_s),
        )  # fmt: skip

    def as_input(self) -> dict[str, Any]:
        """The options as the state machine carries them from state to state."""
        return {
            "pipeline": self.pipeline,
            "dryRun": self.dry_run,
            "maxConcurrency": self.max_concurrency,
            "maxAttempts": self.max_attempts,
            "retryDelaySeconds": self.retry_delay_s,
            "maxMessages": self.max_messages,
            "maxKept": self.max_kept,
            "visibilityTimeoutSeconds": self.visibility_timeout_s,
        }


def _bounded(raw: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low} to {high}, got {value!r}")
    if name != "retryDelaySeconds" and value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return value
