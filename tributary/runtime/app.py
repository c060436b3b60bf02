"""The local runtime: emulator + template resources + in-process functions + event source mappings + emulations.

`Runtime.start()` starts moto's server, deploys the template into it, loads every function and
creates an event-source-mapping engine per `Kinesis`/`DynamoDB` event (and per
AWS::Lambda::EventSourceMapping). `step()` polls every mapping and emulation once, on one thread,
so function invocations never overlap; `drain()` steps until nothing is left to deliver.
The Lambda emulation (emulations/lambda_service.py) serves the Invoke API to the functions and queues their
asynchronous invocations (and S3's) for `step()` to run. State machines run in moto's ASL interpreter, their
tasks wired to those functions and to the embedded AWS (emulations/stepfunctions.py); an execution runs
on its own thread, its Lambda tasks taking the invocation slot like any other caller.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import boto3

from tributary.emulator import EmbeddedAws
from tributary.runtime import esm
from tributary.runtime.alarms import AlarmBoard, sqs_queue_depth, template_alarms
from tributary.runtime.emulations import Emulation, stepfunctions
from tributary.runtime.emulations.lambda_service import LambdaEmulation, async_configs
from tributary.runtime.emulations.wiring import build_emulations
from tributary.runtime.esm.filtering import FilterPatternError, parse_pattern
from tributary.runtime.faults import FaultInjector, FaultPlan, injecting
from tributary.runtime.function_output import label_functions, listen_to_function_lines, route_function_output
from tributary.runtime.functions import LocalFunction, load_functions, unloadable_functions
from tributary.runtime.resources import Deployment, deploy
from tributary.runtime.template import Template, TemplateError
from tributary.runtime.trace import KEPT_EVENTS, TraceWriter

_MAPPED_EVENT_TYPES = {"Kinesis", "DynamoDB"}


@dataclass(frozen=True)
class RuntimeOptions:
    template_path: Path = Path("template.yaml")
    parameter_overrides: Mapping[str, str] | None = None
    port: int | None = None
    trace_path: Path | None = None
    function_log: TextIO | None = None
    # Each line with its time and function (`tributary logs` reads them), else exactly as printed.
    function_log_labels: bool = True
    retry_delay_s: float = 1.0  # before invoking the same records again after a function error
    idle_read_interval_s: float = 1.0  # before reading a shard again after an empty read
    # Before each retry of a failed asynchronous invocation; AWS waits 60 s, then 120 s.
    async_retry_delays_s: tuple[float, ...] = (1.0, 2.0)
    faults: FaultPlan | None = None  # --faults: what AWS does wrong to the functions' requests
    keep_trace: bool = False  # the trace's latest lines in memory (Runtime.trace.events()), file or not


class Runtime:
    """Everything `tributary up|demo|run` drives; use as a context manager or call start()/stop()."""

    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self.template = Template.load(options.template_path, options.parameter_overrides)
        self.aws = EmbeddedAws(options.port)
        self.deployment = Deployment()
        self.functions: dict[str, LocalFunction] = {}
        self.skipped_functions: dict[str, str] = {}  # logical id -> why it does not run locally
        self.mappings: dict[str, esm.EventSourceMapping] = {}
        self.emulations: list[Emulation] = []
        self.lambda_service: LambdaEmulation | None = None
        self.unmapped_events: list[str] = []
        # Kept in memory only when asked (`demo --report`'s timeline): a long `up` would hold every batch's sequence
        # numbers.
        kept = KEPT_EVENTS if options.keep_trace else 0
        self.trace = TraceWriter(options.trace_path, keep=kept) if options.trace_path or kept else None
        self.faults = FaultInjector(options.faults, self.trace) if options.faults else None
        self._fault_scope = contextlib.ExitStack()
        self._saved_environment: dict[str, str] = {}
        self.runs_state_machines = False
        self.alarms: AlarmBoard | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Runtime:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
        self._saved_environment = dict(os.environ)
        self.aws.start()
        try:
            self._start_in_emulator()
        except BaseException:
            self.stop()  # `with` never reaches __exit__ when __enter__ fails: no server left running
            raise
        return self

    def _start_in_emulator(self) -> None:
        route_function_output(self.options.function_log, labelled=self.options.function_log_labels)
        state_machines_refused = self._run_state_machines()
        self.deployment = deploy(self.template, boto3.session.Session())
        if state_machines_refused:
            self.deployment.notes.append(f"Step Functions: executions not run: {state_machines_refused}")
        if self.faults is not None:
            self._fault_scope.enter_context(injecting(self.faults))
        self.skipped_functions = unloadable_functions(self.template)
        self.functions = load_functions(self.template, self.faults)
        label_functions({function.config.name: logical_id for logical_id, function in self.functions.items()})
        self._watch_alarms()
        self._create_mappings()
        self._name_events_of_skipped_functions()
        self.lambda_service = LambdaEmulation(
            self._function_by_name,
            async_configs(self.template, self._function_by_name),
            retry_delays_s=self.options.async_retry_delays_s,
        ).start()
        self.deployment.notes.append(f"Lambda Invoke API: emulation at {self.lambda_service.endpoint_url}")
        for function in self.functions.values():
            function.caller_endpoint = self.lambda_service.caller_endpoint(function)
        if self.runs_state_machines:
            stepfunctions.route_tasks(self.aws.endpoint_url, self.lambda_service.endpoint_url)
            self.deployment.notes.append("Step Functions: executions run by moto's interpreter, tasks wired here")
        built = build_emulations(
            self.template, self.deployment, self.functions, self._function_by_name, self.lambda_service.invoke_async
        )
        # Last: what the others queue in a step (S3 events) runs in the same step.
        self.emulations = [*built, self.lambda_service]
        for mapping in self.mappings.values():
            mapping.start()  # LATEST means from now: before anything is produced

    def _watch_alarms(self) -> None:
        """Evaluate the template's alarms over what the functions emit and what the runtime sees (alarms.py)."""
        specs, refused = template_alarms(self.template)
        self.alarms = AlarmBoard(specs, refused, local_functions=[f.config.name for f in self.functions.values()],
                                 queue_depth=sqs_queue_depth(boto3.client("sqs")))  # fmt: skip
        listen_to_function_lines(self.alarms.observe_output_line)
        for function in self.functions.values():
            function.on_invoked = self.alarms.observe_invocation

    def _run_state_machines(self) -> str | None:
        """Turn moto's interpreter on when the template has state machines; why not, if this moto is refused."""
        types = {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}
        if not any(resource.type in types for resource in self.template.resources.values()):
            return None
        refused = stepfunctions.refusal()
        if refused is None:
            stepfunctions.run_executions()
            self.runs_state_machines = True
        return refused

    def outage(self, kind: str) -> contextlib.AbstractContextManager[None]:
        """Every request (or invocation) of fault `kind` fails while the block runs (tributary.runtime.faults)."""
        if self.faults is None:
            raise RuntimeError("outages need fault injection: start the runtime with a FaultPlan (it may be empty)")
        return self.faults.outage(kind)

    def stop(self) -> None:
        if self.runs_state_machines:
            stepfunctions.stop()
            self.runs_state_machines = False
        for mapping in self.mappings.values():
            mapping.close()
        self._fault_scope.close()
        if self.trace is not None:
            self.trace.close()
        route_function_output(None)  # the log file closes with the runtime
        listen_to_function_lines(None)
        if self.deployment.sms is not None:
            self.deployment.sms.stop()
        if self.lambda_service is not None:
            self.lambda_service.stop()
        self.aws.stop()
        os.environ.clear()  # the emulator's endpoint and dummy credentials leave with it
        os.environ.update(self._saved_environment)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------ mappings

    def _create_mappings(self) -> None:
        for logical_id, function in self.functions.items():
            spec_events = self._function_events(logical_id)
            for event_name, event in spec_events.items():
                if event.get("Type") not in _MAPPED_EVENT_TYPES:
                    if event.get("Type") != "S3":  # S3 events are an emulation: emulations/s3_notifications.py
                        self.unmapped_events.append(f"{logical_id}.{event_name} ({event.get('Type')})")
                    continue
                properties = event.get("Properties") or {}
                config = _checked_config(f"{logical_id}.{event_name}", function, properties, properties["Stream"])
                self.mappings[f"{logical_id}.{event_name}"] = self._mapping(config, function)
        for resource in self.template.resources.values():
            if resource.type == "AWS::Lambda::EventSourceMapping":
                self._create_raw_mapping(resource.logical_id, self.template.resolve(resource.properties))

    def _name_events_of_skipped_functions(self) -> None:
        for logical_id, reason in self.skipped_functions.items():
            for event_name, event in self._function_events(logical_id).items():
                self.unmapped_events.append(f"{logical_id}.{event_name} ({event.get('Type')}): {reason}")

    def _function_events(self, logical_id: str) -> dict:
        spec = next(spec for spec in self.template.functions() if spec.logical_id == logical_id)
        return self.template.resolve(spec.properties.get("Events") or {})

    def _create_raw_mapping(self, logical_id: str, properties: dict) -> None:
        function = self._function_by_name(str(properties.get("FunctionName", "")))
        if function is None:
            self.unmapped_events.append(f"{logical_id} (function {properties.get('FunctionName')} not run locally)")
            return
        config = _checked_config(logical_id, function, properties, properties["EventSourceArn"])
        self.mappings[logical_id] = self._mapping(config, function)

    def _mapping(self, config: esm.MappingConfig, function: LocalFunction) -> esm.EventSourceMapping:
        # Invocations are serialised anyway (see functions.py): one worker per mapping is enough.
        return esm.EventSourceMapping(config, function.invoke, trace=self.trace, max_workers=1,
                                      retry_delay_s=self.options.retry_delay_s,
                                      idle_read_interval_s=self.options.idle_read_interval_s)

    def retry_forever_warnings(self) -> list[str]:
        """Mappings on which one failing record blocks its shard for good (until it expires from the stream)."""
        return [
            f"{key}: MaximumRetryAttempts -1 and MaximumRecordAgeInSeconds -1 (the defaults): a record the "
            "function keeps failing is retried forever and holds up its shard; set either, and an OnFailure "
            "destination"
            for key, mapping in self.mappings.items()
            if mapping.config.enabled and mapping.config.maximum_retry_attempts == -1
            and mapping.config.maximum_record_age_s == -1
        ]

    def _function_by_name(self, name_or_arn: str) -> LocalFunction | None:
        name = name_or_arn.rsplit(":function:", 1)[-1].split(":")[0]
        return next((function for function in self.functions.values() if function.config.name == name), None)

    # ------------------------------------------------------------ running

    def step(self) -> bool:
        """Poll every mapping and emulation once; True if any did work."""
        worked = False
        for emulation in self.emulations:
            worked = emulation.poll() or worked
        for mapping in self.mappings.values():
            worked = mapping.poll() or worked
        return worked

    def drain(self, timeout_s: float, sleep: Callable[[float], None] = time.sleep,
              notify: Callable[[str], None] | None = None) -> None:
        """Step until every mapping and emulation is drained; TimeoutError naming the busy ones after `timeout_s`.

        `notify` hears once about each tumbling window the drain waits for.
        """
        esm.drain([*self.emulations, *self.mappings.values()], timeout_s=timeout_s, sleep=sleep, notify=notify)

    def longest_tumbling_window_s(self) -> int:
        return max((mapping.config.tumbling_window_s or 0 for mapping in self.mappings.values()), default=0)

    # ------------------------------------------------------------ observing

    def counters(self) -> dict[str, Any]:
        """A snapshot for live display: per mapping and per emulation."""
        mappings = {
            key: {
                "source": _short_arn(mapping.config.source_arn),
                "records_in": mapping.stats.records_in,
                "invocations": mapping.stats.invocations,
                "errors": mapping.stats.function_errors,
                "retries": mapping.stats.retries,
                "iterator_age_ms": mapping.stats.iterator_age_ms,
                "to_on_failure": mapping.stats.records_to_destination,
                "last_error": mapping.stats.last_error,
                "stuck": mapping.stuck(),
            }
            for key, mapping in self.mappings.items()
        }
        return {
            "mappings": mappings,
            "emulations": {item.name: item.counters() for item in self.emulations},
            "faults": dict(self.faults.injected) if self.faults else {},
            "alarms": self.alarms.evaluate().summary() if self.alarms else None,
        }

    def on_failure_records(self) -> list[dict]:
        """Every invocation record in the mappings' on-failure destinations, read back from the emulator."""
        destinations = {mapping.config.on_failure_destination_arn for mapping in self.mappings.values()}
        records: list[dict] = []
        for arn in sorted(destination for destination in destinations if destination):
            records += read_destination(arn, self._sns_deliveries(arn))
        return records

    def _sns_deliveries(self, arn: str) -> list[dict]:
        return [
            delivery
            for mapping in self.mappings.values()
            if mapping.config.on_failure_destination_arn == arn
            for delivery in mapping.stats.deliveries
        ]


def mapping_config(function: LocalFunction, properties: Mapping[str, Any], source_arn: str) -> esm.MappingConfig:
    """The engine's configuration from a SAM Kinesis/DynamoDB event or an AWS::Lambda::EventSourceMapping."""
    destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    filters = (properties.get("FilterCriteria") or {}).get("Filters") or []
    patterns = tuple(_filter_pattern(position, item.get("Pattern")) for position, item in enumerate(filters, 1))
    window = properties.get("TumblingWindowInSeconds")
    timestamp = properties.get("StartingPositionTimestamp")
    return esm.MappingConfig(
        function_name=function.config.name,
        function_arn=function.config.arn,
        source_arn=source_arn,
        batch_size=int(properties.get("BatchSize", 100)),
        maximum_batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
        starting_position=str(properties.get("StartingPosition", "LATEST")),
        starting_position_timestamp=float(timestamp) if timestamp is not None else None,
        maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
        maximum_record_age_s=int(properties.get("MaximumRecordAgeInSeconds", -1)),
        bisect_on_function_error=_flag(properties.get("BisectBatchOnFunctionError", False)),
        report_batch_item_failures="ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or []),
        parallelization_factor=int(properties.get("ParallelizationFactor", 1)),
        tumbling_window_s=int(window) if window is not None else None,
        filter_patterns=patterns,
        on_failure_destination_arn=destination,
        enabled=_flag(properties.get("Enabled", True)),
    )


def _filter_pattern(position: int, pattern: Any) -> dict[str, Any]:
    try:
        return parse_pattern(pattern)
    except FilterPatternError as error:
        raise FilterPatternError(f"FilterCriteria pattern {position}: {error}") from error


def _checked_config(name: str, function: LocalFunction, properties: Mapping[str, Any],
                    source_arn: str) -> esm.MappingConfig:
    """`mapping_config`; an invalid setting (out of AWS's range, a bad filter pattern) is a template error."""
    try:
        return mapping_config(function, properties, source_arn)
    except ValueError as error:
        raise TemplateError(f"{name}: {error}") from error


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _short_arn(arn: str) -> str:
    """The resource part (stream/NAME, stream/NAME/consumer/C:TIMESTAMP, table/T/stream/LABEL)."""
    return arn.split(":", 5)[-1]


def read_destination(arn: str, sns_deliveries: Sequence[dict] = ()) -> list[dict]:
    """Invocation records stored at an SQS queue or S3 bucket ARN (SNS keeps nothing: the engine's log)."""
    service = arn.split(":")[2]
    if service == "sqs":
        return _read_queue(arn.rsplit(":", 1)[-1])
    if service == "s3":
        return _read_bucket(arn.rsplit(":", 1)[-1])
    if service == "sns":
        return list(sns_deliveries)
    raise TemplateError(f"on-failure destination {arn} is not SQS, SNS or S3")


def _read_queue(queue_name: str) -> list[dict]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    bodies: dict[str, dict] = {}
    receipts: list[str] = []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
    ).get("Messages", []):
        for message in messages:
            bodies[message["MessageId"]] = json.loads(message["Body"])
            receipts.append(message["ReceiptHandle"])
    # Make them visible again: the consumer or the AWS CLI may want to read them after the demo.
    for receipt in receipts:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
    return list(bodies.values())


def _read_bucket(bucket: str) -> list[dict]:
    s3 = boto3.client("s3")
    records = []
    # Lambda writes under aws/lambda/; the redrive keeps quarantine/ and redriven/ in the same bucket.
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="aws/lambda/"):
        for item in page.get("Contents", []):
            records.append(json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()))
    return records
