"""EMULATION of AWS End User Messaging SMS opt-out lists, for the local runtime and tests only.

moto has no End User Messaging SMS (`pinpoint-sms-voice-v2`). This is a small HTTP server on
loopback speaking the service's JSON protocol (awsJson1_0: POST /, `X-Amz-Target:
PinpointSMSVoiceV2.<Operation>`) for the opt-out list operations Tributary uses:
CreateOptOutList, DescribeOptOutLists, PutOptedOutNumber, DeleteOptedOutNumber and
DescribeOptedOutNumbers. It follows the documented rules (API reference, 2022-03-31):

- numbers must be E.164 (ValidationException, FIELD_VALIDATION_FAILED);
- a list that does not exist: ResourceNotFoundException, ResourceType `opt-out-list`;
- deleting a number that is not on the list: ResourceNotFoundException, `opted-out-number`;
- DescribeOptedOutNumbers naming a number that is not on the list: no entry for it (the reference
  does not say whether the service answers so or with ResourceNotFoundException `opted-out-number`;
  the updater accepts both);
- "each destination phone number can only be deleted once every 30 days": the documentation
  names no error for this; the emulation answers ConflictException (RESOURCE_MODIFICATION_NOT_ALLOWED),
  the error DeleteOptedOutNumber declares for state conflicts. The clock is injectable.

Opt-out keywords are simulated, not received: `opt_out_by_keyword` puts a number on a list as the
service does when the recipient replies STOP, with `EndUserOptedOut` true (DescribeOptedOutNumbers
reports it; a later PutOptedOutNumber keeps it).

It is not the service: no authentication, no quotas, no sharing, no messages. A function
reaches it unchanged through botocore's service-specific endpoint variable
AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2 (service id "Pinpoint SMS Voice V2"), which `start()` sets.
"""

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from tributary.runtime.emulations.loopback import LoopbackRequestHandler, LoopbackService, ServiceError

ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2"
TARGET_PREFIX = "PinpointSMSVoiceV2."
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
DELETION_INTERVAL_S = 30 * 24 * 3600
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
LIST_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BODY_BYTES = 1024 * 1024
MAX_PAGE = 100


def validation_error(message: str, reason: str, field_name: str | None = None) -> ServiceError:
    fields = [{"Name": field_name, "Message": message}] if field_name else []
    return ServiceError(HTTPStatus.BAD_REQUEST, "ValidationException", message, Reason=reason, Fields=fields)


def not_found(resource_type: str, resource_id: str) -> ServiceError:
    return ServiceError(
        HTTPStatus.NOT_FOUND,
        "ResourceNotFoundException",
        f"{resource_type} {resource_id} does not exist",
        ResourceType=resource_type,
        ResourceId=resource_id,
    )


@dataclass
class OptedOutNumber:
    opted_out_at: float
    end_user_opted_out: bool = False


@dataclass
class OptOutListState:
    name: str
    arn: str
    created_at: float
    numbers: dict[str, OptedOutNumber] = field(default_factory=dict)
    last_deleted_at: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"OptOutListArn": self.arn, "OptOutListName": self.name, "CreatedTimestamp": self.created_at}


class SmsEmulation(LoopbackService):
    """The emulated opt-out lists and the loopback server in front of them."""

    endpoint_variable = ENDPOINT_VARIABLE
    service_name = "SMS"

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self.lists: dict[str, OptOutListState] = {}
        self._lock = threading.Lock()
        self._throttle_next = 0

    def request_handler(self) -> type[LoopbackRequestHandler]:
        return _handler_for(self)

    def reset(self) -> None:
        with self._lock:
            self.lists.clear()
            self._throttle_next = 0

    # ------------------------------------------------------------------ for the runtime host and tests
    def create_opt_out_list(self, name: str) -> OptOutListState:
        """What deploying an `AWS::SMSVOICE::OptOutList` does: Ref is `.name`, GetAtt Arn is `.arn`."""
        return self._create_list(name)

    def opted_out_numbers(self, list_name: str) -> set[str]:
        with self._lock:
            return set(self._list(list_name).numbers)

    def opt_out_by_keyword(self, list_name: str, number: str) -> None:
        """What the service does when the recipient of a message replies STOP (or another opt-out keyword)."""
        number = _e164(number)
        with self._lock:
            state = self._list(list_name)
            state.numbers[number] = OptedOutNumber(self.clock(), end_user_opted_out=True)

    def end_user_opted_out(self, list_name: str) -> set[str]:
        with self._lock:
            return {number for number, entry in self._list(list_name).numbers.items() if entry.end_user_opted_out}

    def throttle_next(self, requests: int) -> None:
        """Answer the next `requests` opt-out calls with ThrottlingException (tests of retries)."""
        with self._lock:
            self._throttle_next = requests

    # ------------------------------------------------------------------ operations
    def dispatch(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        handlers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "CreateOptOutList": self._create,
            "DescribeOptOutLists": self._describe_lists,
            "PutOptedOutNumber": self._put,
            "DeleteOptedOutNumber": self._delete,
            "DescribeOptedOutNumbers": self._describe_numbers,
        }
        handler = handlers.get(operation)
        if handler is None:
            raise ServiceError(HTTPStatus.BAD_REQUEST, "UnknownOperationException", f"{operation} is not emulated")
        return handler(request)

    def _create(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {**self._create_list(_required(request, "OptOutListName")).describe(), "Tags": []}

    def _create_list(self, name: str) -> OptOutListState:
        if not LIST_NAME.fullmatch(name):
            raise validation_error(f"invalid opt-out list name {name!r}", "FIELD_VALIDATION_FAILED", "OptOutListName")
        with self._lock:
            if name in self.lists:
                raise ServiceError(
                    HTTPStatus.CONFLICT,
                    "ConflictException",
                    f"opt-out list {name} already exists",
                    Reason="RESOURCE_ALREADY_EXISTS",
                    ResourceType="opt-out-list",
                    ResourceId=name,
                )
            arn = f"arn:aws:sms-voice:{self.region}:{self.account_id}:opt-out-list/{name}"
            state = OptOutListState(name, arn, self.clock())
            self.lists[name] = state
        return state

    def _describe_lists(self, request: Mapping[str, Any]) -> dict[str, Any]:
        names = request.get("OptOutListNames") or []
        with self._lock:
            if names:
                lists = [self._list(name).describe() for name in names]
            else:
                lists = [state.describe() for state in self.lists.values()]
        page, token = _page(lists, request)
        return {"OptOutLists": page, **({"NextToken": token} if token else {})}

    def _put(self, request: Mapping[str, Any]) -> dict[str, Any]:
        number = _e164(_required(request, "OptedOutNumber"))
        with self._lock:
            self._maybe_throttle()
            state = self._list(_required(request, "OptOutListName"))
            entry = state.numbers.setdefault(number, OptedOutNumber(self.clock()))
        return _number_response(state, number, entry)

    def _delete(self, request: Mapping[str, Any]) -> dict[str, Any]:
        number = _e164(_required(request, "OptedOutNumber"))
        with self._lock:
            self._maybe_throttle()
            state = self._list(_required(request, "OptOutListName"))
            entry = state.numbers.get(number)
            if entry is None:
                raise not_found("opted-out-number", number)
            now = self.clock()
            last = state.last_deleted_at.get(number)
            if last is not None and now - last < DELETION_INTERVAL_S:
                raise ServiceError(
                    HTTPStatus.CONFLICT,
                    "ConflictException",
                    f"{number} was deleted from the opt-out list less than 30 days ago",
                    Reason="RESOURCE_MODIFICATION_NOT_ALLOWED",
                    ResourceType="opted-out-number",
                    ResourceId=number,
                )
            del state.numbers[number]
            state.last_deleted_at[number] = now
        return _number_response(state, number, entry)

    def _describe_numbers(self, request: Mapping[str, Any]) -> dict[str, Any]:
        wanted = [_e164(number) for number in request.get("OptedOutNumbers") or []]
        end_user_filter = _end_user_filter(request.get("Filters") or [])
        with self._lock:
            state = self._list(_required(request, "OptOutListName"))
            entries = [
                {
                    "OptedOutNumber": number,
                    "OptedOutTimestamp": entry.opted_out_at,
                    "EndUserOptedOut": entry.end_user_opted_out,
                }
                for number, entry in sorted(state.numbers.items())
                if (not wanted or number in wanted)
                and (end_user_filter is None or entry.end_user_opted_out in end_user_filter)
            ]
        page, token = _page(entries, request)
        response = {"OptOutListArn": state.arn, "OptOutListName": state.name, "OptedOutNumbers": page}
        return {**response, **({"NextToken": token} if token else {})}

    def _list(self, name_or_arn: str) -> OptOutListState:
        name = name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn
        state = self.lists.get(name)
        if state is None or (name_or_arn.startswith("arn:") and state.arn != name_or_arn):
            raise not_found("opt-out-list", name_or_arn)
        return state

    def _maybe_throttle(self) -> None:
        if self._throttle_next > 0:
            self._throttle_next -= 1
            raise ServiceError(HTTPStatus.TOO_MANY_REQUESTS, "ThrottlingException", "Rate exceeded (emulated)")


def _required(request: Mapping[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise validation_error(f"{name} is required", "MISSING_PARAMETER", name)
    return value


def _e164(number: str) -> str:
    if not E164.fullmatch(number):
        raise validation_error(f"{number!r} is not an E.164 phone number", "FIELD_VALIDATION_FAILED", "OptedOutNumber")
    return number


def _end_user_filter(filters: list[Any]) -> set[bool] | None:
    wanted: set[bool] | None = None
    for entry in filters:
        if not isinstance(entry, dict) or entry.get("Name") != "end-user-opted-out":
            raise validation_error(f"unsupported filter {entry!r}", "INVALID_FILTER_VALUES", "Filters")
        wanted = {str(value).lower() == "true" for value in entry.get("Values") or []}
    return wanted


def _page(items: list[dict[str, Any]], request: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    size = min(int(request.get("MaxResults") or MAX_PAGE), MAX_PAGE)
    token = request.get("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError as error:
        raise validation_error("invalid NextToken", "INVALID_NEXT_TOKEN", "NextToken") from error
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def _number_response(state: OptOutListState, number: str, entry: OptedOutNumber) -> dict[str, Any]:
    return {
        "OptOutListArn": state.arn,
        "OptOutListName": state.name,
        "OptedOutNumber": number,
        "OptedOutTimestamp": entry.opted_out_at,
        "EndUserOptedOut": entry.end_user_opted_out,
    }


def _error_body(error: ServiceError) -> dict[str, Any]:
    """An error as awsJson1_0 carries it: `__type`, `message` and the error's members."""
    return {"__type": error.code, "message": error.members["Message"], **error.members}


def _handler_for(emulation: SmsEmulation) -> type[LoopbackRequestHandler]:
    class Handler(LoopbackRequestHandler):
        server_version = "TributarySmsEmulation/1"

        def do_POST(self) -> None:
            target = self.headers.get("X-Amz-Target", "")
            try:
                if not target.startswith(TARGET_PREFIX):
                    raise ServiceError(HTTPStatus.BAD_REQUEST, "UnknownOperationException", f"bad target {target!r}")
                response = emulation.dispatch(target.removeprefix(TARGET_PREFIX), self._request())
                self._reply(HTTPStatus.OK, response)
            except ServiceError as error:
                self._reply(error.status, _error_body(error))

        def _request(self) -> dict[str, Any]:
            length = self.content_length()
            if length > MAX_BODY_BYTES:
                raise validation_error("request body too large", "MAXIMUM_SIZE_EXCEEDED")
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as error:
                raise ServiceError(HTTPStatus.BAD_REQUEST, "SerializationException", str(error)) from error
            if not isinstance(request, dict):
                raise ServiceError(HTTPStatus.BAD_REQUEST, "SerializationException", "body is not an object")
            return request

        def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            self.send_body(status, json.dumps(body).encode(), content_type=JSON_CONTENT_TYPE,
                           request_id=f"emulated-{time.monotonic_ns()}")

    return Handler
