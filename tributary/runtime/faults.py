"""Fault injection (`--faults`): AWS misbehaving towards the functions under test, as it does in production.

`tributary run|up|demo --faults dynamodb.throttle=0.1,lambda.crash=0.05 [--fault-seed N]` gives each
kind of fault a probability (`FaultInjector.outage(kind)` makes one certain for a while, drawing nothing:
the demo's redrive step takes the schema registry down so). A request a function makes meets at most one
fault: the kinds that apply to it are drawn in the order of `FAULTS`, and the first drawn happens (a kind
left out takes no draws). The draws come from one generator seeded with the fault seed, so a run repeats
the same faults as long as requests come in the same order; requests that race (a function's own thread
pool, batches timed by the clock) may take the draws in another order. Each fault is presented exactly as AWS presents
it to an SDK client, so the code under test takes its real error paths:

- dynamodb.throttle: the request is not applied; ProvisionedThroughputExceededException (HTTP 400).
- dynamodb.unprocessed: BatchWriteItem: a random non-empty subset of its items is not written and
  comes back in UnprocessedItems, the rest is written. TransactWriteItems: cancelled, nothing written,
  TransactionCanceledException whose CancellationReasons say ThrottlingError for a random non-empty
  subset of the items and None for the rest.
- dynamodb.lost-response: the request is applied, then the client gets a read timeout (ReadTimeoutError),
  as if the response was lost on the way back.
- dynamodb.error500: the request is not applied; InternalServerError (HTTP 500).
  (The DynamoDB faults apply to item operations: reads, writes, batches, transactions, PartiQL.)
- glue.unavailable: a Glue (schema registry) call fails, not applied: InternalServiceException (HTTP 500),
  ServiceUnavailable (HTTP 503) or a connection error, one of the three at random.
- kinesis.put-failure: PutRecords: a random non-empty subset of the entries fails with
  ProvisionedThroughputExceededException in the response (FailedRecordCount > 0) and is not written,
  the rest is; PutRecord: ProvisionedThroughputExceededException (HTTP 400), not written.
- lambda.crash: the handler runs to the end (its writes happen), then the invocation fails with
  Runtime.ExitError, as when the runtime process dies before returning the response.
- lambda.timeout: the same, reported as Lambda reports a timeout ("Task timed out after N seconds").
- lambda.cold-start: before the invocation the function's own modules (its CodeUri) are dropped, so
  its initialisation runs again: module-level clients, caches and configuration start afresh. Layer
  modules are loaded once for the whole process and keep their state.

Only the functions' own requests are faulted, never the runtime's (mapping polling, deployment,
on-failure destinations, emulations, the demo's producers and reports). A client is the function's
when function code creates it, on a function's thread (`function_output.current_function_name`): while an
injector is active (`injecting`), every botocore client creation is watched, and a function's
clients get a `before-send` handler (threads the function starts itself use the same clients).
That event runs for every attempt, botocore's own retries included, after the request is signed;
the handler answers in AWS's place, or sends the request itself (to apply it in part, or in full
before losing the response). Every injected fault is counted (`FaultInjector.injected`) and written
to the trace (``{"type": "fault", ...}``).
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import botocore.session
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.httpsession import URLLib3Session

from tributary.runtime.function_output import current_function_name
from tributary.runtime.template import ACCOUNT_ID
from tributary.runtime.trace import TraceWriter
from tributary.user_errors import UserError

# In draw order: a request meets the first kind drawn among those that apply to it.
FAULTS = (
    "dynamodb.throttle",
    "dynamodb.unprocessed",
    "dynamodb.lost-response",
    "dynamodb.error500",
    "glue.unavailable",
    "kinesis.put-failure",
    "lambda.crash",
    "lambda.timeout",
    "lambda.cold-start",
)

DYNAMODB_ITEM_OPERATIONS = frozenset(
    {
        "GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem", "BatchWriteItem", "TransactGetItems",
        "TransactWriteItems", "Query", "Scan", "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction",
    }
)  # fmt: skip
DYNAMODB_THROTTLED_MESSAGE = (
    "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API."
)
ITEM_THROTTLED_MESSAGE = "Throttling at the item level"
KINESIS_THROTTLED_MESSAGE = f"Rate exceeded for stream {{stream}} under account {ACCOUNT_ID}."
# (status, error code, message): how an unavailable Glue answers, when it answers at all.
GLUE_OUTAGE_ANSWERS = (
    (500, "InternalServiceException", "An internal service error occurred."),
    (503, "ServiceUnavailable", "Service Unavailable"),
)
FORWARD_TIMEOUT_S = 60  # for requests the injector sends itself, to the loopback emulator


class FaultSpecError(UserError, ValueError):
    """A `--faults` value that names an unknown fault or a probability outside [0, 1]."""


@dataclass(frozen=True)
class FaultPlan:
    """Each fault's probability, and the seed of the draws (the same seed repeats the same draws in order)."""

    probabilities: Mapping[str, float]
    seed: int

    def describe(self) -> str:
        kinds = ",".join(f"{kind}={probability:g}" for kind, probability in self.probabilities.items())
        return f"{kinds} (seed {self.seed}; --fault-seed {self.seed} repeats these draws)"


def parse_faults(spec: str, seed: int | None = None) -> FaultPlan:
    """`kind=probability,...` as `--faults` takes it; `FaultSpecError` naming the problem and the known faults."""
    probabilities: dict[str, float] = {}
    for entry in spec.split(","):
        kind, separator, value = (part.strip() for part in entry.partition("="))
        if not separator or not kind:
            raise _spec_error(f"{entry.strip()!r} is not FAULT=PROBABILITY")
        if kind not in FAULTS:
            raise _spec_error(f"unknown fault {kind!r}")
        if kind in probabilities:
            raise _spec_error(f"{kind} is given twice")
        probabilities[kind] = _probability(kind, value)
    return FaultPlan(probabilities, seed if seed is not None else random.SystemRandom().randrange(1, 2**31))


def _probability(kind: str, text: str) -> float:
    try:
        probability = float(text)
    except ValueError:
        raise _spec_error(f"{kind}={text}: the probability is not a number") from None
    if not 0 <= probability <= 1:  # NaN fails this too
        raise _spec_error(f"{kind}={text}: the probability must be between 0 and 1")
    return probability


def _spec_error(problem: str) -> FaultSpecError:
    return FaultSpecError(f"--faults: {problem}; known faults: {', '.join(FAULTS)}")


class _Body:
    """The raw stream of an answer the injector gives in AWS's place."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


@dataclass
class FaultInjector:
    """Draws faults for the functions' requests and invocations, applies them, counts and traces them."""

    plan: FaultPlan
    trace: TraceWriter | None = None
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.plan.seed)
        self._lock = threading.Lock()
        self._http = URLLib3Session(timeout=FORWARD_TIMEOUT_S)
        self._outages: set[str] = set()

    @contextlib.contextmanager
    def outage(self, kind: str) -> Iterator[None]:
        """`kind` meets every request (or invocation) it applies to while the block runs, with no draw taken."""
        if kind not in FAULTS:
            raise _spec_error(f"unknown fault {kind!r}")
        self._outages.add(kind)  # one set operation: atomic
        try:
            yield
        finally:
            self._outages.discard(kind)

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ clients

    def attach(self, client: Any, function: str) -> None:
        """Fault the requests of `client`, created by `function`, from now on."""
        client.meta.events.register("before-send", partial(self._before_send, function=function))

    def _before_send(self, request: AWSPreparedRequest, event_name: str, function: str, **_: Any) -> AWSResponse | None:
        _, service, operation = event_name.split(".", 2)
        if service == "dynamodb" and operation in DYNAMODB_ITEM_OPERATIONS:
            return self._dynamodb(request, operation, function)
        if service == "glue" and self._drawn("glue.unavailable"):
            return self._glue_outage(request, operation, function)
        if service == "kinesis" and operation in ("PutRecord", "PutRecords") and self._drawn("kinesis.put-failure"):
            return self._kinesis_put_failure(request, operation, function)
        return None

    def _dynamodb(self, request: AWSPreparedRequest, operation: str, function: str) -> AWSResponse | None:
        if self._drawn("dynamodb.throttle"):
            self._record("dynamodb.throttle", function, operation, "ProvisionedThroughputExceededException")
            return _error_response(request, 400, "ProvisionedThroughputExceededException", DYNAMODB_THROTTLED_MESSAGE)
        if operation == "BatchWriteItem" and self._drawn("dynamodb.unprocessed"):
            return self._unprocessed_batch(request, function)
        if operation == "TransactWriteItems" and self._drawn("dynamodb.unprocessed"):
            return self._cancelled_transaction(request, function)
        if self._drawn("dynamodb.lost-response"):
            status, _ = self._forward(request, request.body)
            self._record("dynamodb.lost-response", function, operation, f"applied (HTTP {status}), response lost")
            raise ReadTimeoutError(endpoint_url=request.url)
        if self._drawn("dynamodb.error500"):
            self._record("dynamodb.error500", function, operation, "InternalServerError")
            return _error_response(request, 500, "InternalServerError", "Internal server error")
        return None

    def _unprocessed_batch(self, request: AWSPreparedRequest, function: str) -> AWSResponse | None:
        body = json.loads(request.body)
        items = [(table, entry) for table, entries in (body.get("RequestItems") or {}).items() for entry in entries]
        if not items:
            return None  # DynamoDB refuses an empty batch itself
        held = self._subset(len(items))
        unprocessed: dict[str, list[Any]] = {}
        sent: dict[str, list[Any]] = {}
        for position, (table, entry) in enumerate(items):
            (unprocessed if position in held else sent).setdefault(table, []).append(entry)
        answer: dict[str, Any] = {}
        if sent:
            status, answer = self._forward(request, _json_bytes({**body, "RequestItems": sent}))
            if status != 200:  # the rest alone is refused: so was the whole request; nothing was injected
                return _json_response(request, status, answer)
        for table, entries in (answer.get("UnprocessedItems") or {}).items():
            unprocessed.setdefault(table, []).extend(entries)
        self._record(
            "dynamodb.unprocessed", function, "BatchWriteItem", f"{len(held)} of {len(items)} items unprocessed"
        )
        return _json_response(request, 200, {**answer, "UnprocessedItems": unprocessed})

    def _cancelled_transaction(self, request: AWSPreparedRequest, function: str) -> AWSResponse | None:
        count = len(json.loads(request.body).get("TransactItems") or [])
        if not count:
            return None  # DynamoDB refuses an empty transaction itself
        throttled = self._subset(count)
        throttling = {"Code": "ThrottlingError", "Message": ITEM_THROTTLED_MESSAGE}
        reasons = [throttling if position in throttled else {"Code": "None"} for position in range(count)]
        codes = ", ".join(reason["Code"] for reason in reasons)
        self._record(
            "dynamodb.unprocessed",
            function,
            "TransactWriteItems",
            f"cancelled, {len(throttled)} of {count} items ThrottlingError",
        )
        return _error_response(
            request,
            400,
            "TransactionCanceledException",
            f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
            CancellationReasons=reasons,
        )

    def _glue_outage(self, request: AWSPreparedRequest, operation: str, function: str) -> AWSResponse:
        with self._lock:
            answer = self._rng.randrange(len(GLUE_OUTAGE_ANSWERS) + 1)
        if answer == len(GLUE_OUTAGE_ANSWERS):
            self._record("glue.unavailable", function, operation, "connection error")
            raise EndpointConnectionError(endpoint_url=request.url)
        status, code, message = GLUE_OUTAGE_ANSWERS[answer]
        self._record("glue.unavailable", function, operation, f"{code} (HTTP {status})")
        return _error_response(request, status, code, message)

    def _kinesis_put_failure(self, request: AWSPreparedRequest, operation: str, function: str) -> AWSResponse | None:
        body = json.loads(request.body)
        message = KINESIS_THROTTLED_MESSAGE.format(stream=body.get("StreamName") or body.get("StreamARN"))
        if operation == "PutRecord":
            self._record("kinesis.put-failure", function, operation, "ProvisionedThroughputExceededException")
            return _error_response(request, 400, "ProvisionedThroughputExceededException", message)
        entries = body.get("Records") or []
        if not entries:
            return None  # Kinesis refuses an empty PutRecords itself
        failed = self._subset(len(entries))
        kept = [entry for position, entry in enumerate(entries) if position not in failed]
        answer: dict[str, Any] = {"FailedRecordCount": 0, "Records": []}
        if kept:
            status, answer = self._forward(request, _json_bytes({**body, "Records": kept}))
            if status != 200:
                return _json_response(request, status, answer)
        results = iter(answer["Records"])
        merged = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": message}
            if position in failed
            else next(results)
            for position in range(len(entries))
        ]
        self._record("kinesis.put-failure", function, operation, f"{len(failed)} of {len(entries)} entries failed")
        return _json_response(
            request,
            200,
            {
                **answer,
                "Records": merged,
                "FailedRecordCount": sum("ErrorCode" in result for result in merged),
            },
        )

    def _forward(self, request: AWSPreparedRequest, body: bytes) -> tuple[int, dict[str, Any]]:
        """Send `request` with `body` to the emulator; its status and JSON answer."""
        headers = {name: value for name, value in request.headers.items() if name.lower() != "content-length"}
        headers["Content-Length"] = str(len(body))
        response = self._http.send(AWSPreparedRequest(request.method, request.url, headers, body, False))
        return response.status_code, json.loads(response.content or b"{}")

    # ------------------------------------------------------------ invocations

    def cold_start(self, function: str) -> bool:
        """Whether this invocation of `function` starts a new execution environment."""
        if not self._drawn("lambda.cold-start"):
            return False
        self._record("lambda.cold-start", function, "Invoke", "own modules imported afresh")
        return True

    def failure_after_handler(self, function: str, timeout_s: float) -> str | None:
        """The error to report instead of the handler's response, if one is drawn for this invocation."""
        if self._drawn("lambda.crash"):
            self._record("lambda.crash", function, "Invoke", "Runtime.ExitError after the handler returned")
            return "Runtime.ExitError: Runtime exited with error: signal: killed"
        if self._drawn("lambda.timeout"):
            self._record("lambda.timeout", function, "Invoke", "timed out after the handler returned")
            return f"Task timed out after {timeout_s:.2f} seconds"
        return None

    # ------------------------------------------------------------ draws and records

    def _drawn(self, kind: str) -> bool:
        if kind in self._outages:
            return True
        probability = self.plan.probabilities.get(kind, 0.0)
        if probability <= 0:
            return False  # no draw: a kind left out does not shift the others' draws
        with self._lock:
            return self._rng.random() < probability

    def _subset(self, count: int) -> set[int]:
        """A random non-empty subset of range(count)."""
        with self._lock:
            return set(self._rng.sample(range(count), self._rng.randint(1, count)))

    def _record(self, kind: str, function: str, operation: str, detail: str) -> None:
        with self._lock:
            self.injected[kind] += 1
        if self.trace is not None:
            self.trace.fault(fault=kind, function=function, operation=operation, detail=detail)


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _error_response(request: AWSPreparedRequest, status: int, code: str, message: str, **fields: Any) -> AWSResponse:
    return _json_response(request, status, {"__type": code, "message": message, **fields})


def _json_response(request: AWSPreparedRequest, status: int, payload: Mapping[str, Any]) -> AWSResponse:
    content = _json_bytes(payload)
    headers = {
        "Content-Type": request.headers.get("Content-Type", "application/x-amz-json-1.0"),
        "Content-Length": str(len(content)),
        "x-amzn-RequestId": str(uuid.uuid4()),
        "x-amz-crc32": str(zlib.crc32(content)),  # DynamoDB signs its answers so; botocore checks it
    }
    return AWSResponse(request.url, status, headers, _Body(content))


# ---------------------------------------------------------------- which clients are the functions'

_active: FaultInjector | None = None
_original_create_client: Callable[..., Any] = botocore.session.Session.create_client


def _create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
    client = _original_create_client(self, *args, **kwargs)
    injector, function = _active, current_function_name()
    if injector is not None and function is not None:
        injector.attach(client, function)
    return client


@contextlib.contextmanager
def injecting(injector: FaultInjector) -> Iterator[FaultInjector]:
    """While active, every botocore client that function code creates is faulted by `injector`."""
    global _active
    if _active is not None:
        raise RuntimeError("a fault injector is already active in this process")
    _active = injector
    botocore.session.Session.create_client = _create_client  # type: ignore[method-assign]
    try:
        yield injector
    finally:
        botocore.session.Session.create_client = _original_create_client  # type: ignore[method-assign]
        _active = None
        injector.close()
