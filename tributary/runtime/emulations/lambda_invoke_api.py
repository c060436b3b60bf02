"""EMULATION of Lambda's Invoke operation on the wire (REST-JSON, API version 2015-03-31).

`POST /2015-03-31/functions/{FunctionName}/invocations` with `X-Amz-Invocation-Type` Event,
RequestResponse (the default) or DryRun, an optional `Qualifier` and, for a synchronous invocation, an
optional `X-Amz-Client-Context` (base64 JSON, at most 3,583 bytes, handed to the handler as
`context.client_context`); payloads over Lambda's limits
(6 MB synchronous, 1 MB asynchronous) are refused with RequestTooLargeException, a body that is not
JSON with InvalidRequestContentException. Errors carry Lambda's error shape (`Type`, `Message`) and
the `x-amzn-ErrorType` header; a function error answers 200 with the Python runtime's error object
and `X-Amz-Function-Error`. Every other operation or method: UnsupportedOperationException.
What an invocation does is the service's (lambda_service.py).

A path may start with `/caller/<function name>`: the endpoint the runtime gives each of its functions
(`AWS_ENDPOINT_URL_LAMBDA`), so that a function's synchronous call to another can run nested in its
invocation. Nothing in AWS's API; botocore keeps an endpoint's path in front of the operation's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from tributary.runtime.emulations.loopback import LoopbackRequestHandler, ServiceError
from tributary.runtime.functions import LocalFunction
from tributary.runtime.invocation import ClientContext, InvocationResult
from tributary.runtime.template import ACCOUNT_ID, REGION

INVOKE_PATH = re.compile(r"^(/caller/(?P<caller>[^/]+))?/2015-03-31/functions/(?P<function>[^/]+)/invocations$")
CALLER_PREFIX = "/caller/"
INVOCATION_TYPES = ("Event", "RequestResponse", "DryRun")
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024
MAX_CLIENT_CONTEXT_BYTES = 3583


class InvokeTarget(Protocol):
    """What the Invoke API needs of the Lambda service behind it."""

    def resolve(self, name_or_arn: str, qualifier: str | None = None) -> LocalFunction: ...

    def invoke_async(self, function: LocalFunction, payload: Any) -> str: ...

    def invoke_sync(self, function: LocalFunction, payload: Any, caller: str | None = None,
                    client_context: ClientContext | None = None) -> InvocationResult: ...  # fmt: skip


def function_not_found(name: str) -> ServiceError:
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
    return ServiceError(HTTPStatus.NOT_FOUND, "ResourceNotFoundException", f"Function not found: {arn}")


def response_payload(result: InvocationResult, request_id: str) -> Any:
    """What Invoke answers: the function's response, or the Python runtime's error object."""
    if result.function_error is None:
        return result.response
    message = result.error_message or ""
    error_type, separator, detail = message.partition(": ")
    if message.startswith("Task timed out"):
        return {"errorMessage": f"{request_id} {message}", "errorType": "Sandbox.Timedout"}
    if separator and re.fullmatch(r"[A-Za-z_][\w.]*", error_type):
        return {"errorMessage": detail, "errorType": error_type, "requestId": request_id, "stackTrace": []}
    return {"errorMessage": message, "errorType": "Runtime.Unknown", "requestId": request_id}


def handler_for(service: InvokeTarget) -> type[LoopbackRequestHandler]:
    class Handler(LoopbackRequestHandler):
        server_version = "TributaryLambdaEmulation/1"

        def do_POST(self) -> None:
            request_id = str(uuid.uuid4())
            try:
                self._invoke(request_id)
            except ServiceError as error:
                self._error(error, request_id)

        def do_GET(self) -> None:
            self._error(_unsupported(self.command, self.path), str(uuid.uuid4()))

        do_PUT = do_DELETE = do_GET

        def _invoke(self, request_id: str) -> None:
            url = urlsplit(self.path)
            match = INVOKE_PATH.fullmatch(url.path)
            if match is None:
                raise _unsupported(self.command, url.path)
            qualifier = (parse_qs(url.query).get("Qualifier") or [None])[0]
            function = service.resolve(unquote(match["function"]), qualifier)
            invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
            if invocation_type not in INVOCATION_TYPES:
                raise ServiceError(HTTPStatus.BAD_REQUEST, "InvalidParameterValueException",
                                   f"InvocationType {invocation_type!r} is not Event, RequestResponse or DryRun")
            limit = MAX_ASYNC_PAYLOAD_BYTES if invocation_type == "Event" else MAX_SYNC_PAYLOAD_BYTES
            payload = self._payload(limit)
            if invocation_type == "DryRun":
                self._reply(HTTPStatus.NO_CONTENT, b"", request_id)
            elif invocation_type == "Event":
                self._reply(HTTPStatus.ACCEPTED, b"", service.invoke_async(function, payload))
            else:
                caller = unquote(match["caller"]) if match["caller"] else None
                client_context = parse_client_context(self.headers.get("X-Amz-Client-Context"))
                result = service.invoke_sync(function, payload, caller, client_context)
                body = json.dumps(response_payload(result, request_id)).encode()
                headers = {"X-Amz-Executed-Version": "$LATEST"}
                if result.function_error:
                    headers["X-Amz-Function-Error"] = result.function_error
                self._reply(HTTPStatus.OK, body, request_id, headers)

        def _payload(self, limit: int) -> Any:
            length = self.content_length()
            if length > limit:
                raise ServiceError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RequestTooLargeException",
                                   f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
            body = self.rfile.read(length)
            if not body.strip():
                return {}
            try:
                return json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ServiceError(HTTPStatus.BAD_REQUEST, "InvalidRequestContentException",
                                   f"Could not parse request body into json: {error}") from error

        def _error(self, error: ServiceError, request_id: str) -> None:
            headers = {"x-amzn-ErrorType": error.code}
            if error.status == HTTPStatus.TOO_MANY_REQUESTS:
                headers["Retry-After"] = "1"
            body = {"Type": "User", **error.members}  # Lambda's error shape
            self._reply(error.status, json.dumps(body).encode(), request_id, headers)

        def _reply(self, status: HTTPStatus, body: bytes, request_id: str,
                   headers: Mapping[str, str] | None = None) -> None:
            self.send_body(status, body, content_type="application/json", request_id=request_id, headers=headers)

    return Handler


def parse_client_context(header: str | None) -> ClientContext | None:
    """Invoke's ClientContext header as the handler's `context.client_context`; 400 if it is not base64 JSON."""
    if not header:
        return None
    if len(header) > MAX_CLIENT_CONTEXT_BYTES:
        raise ServiceError(HTTPStatus.BAD_REQUEST, "InvalidParameterValueException",
                           f"Client context must be at most {MAX_CLIENT_CONTEXT_BYTES} bytes")
    try:
        document = json.loads(base64.b64decode(header, validate=True))
    except (ValueError, binascii.Error) as error:
        raise ServiceError(HTTPStatus.BAD_REQUEST, "InvalidRequestContentException",
                           f"Client context must be a valid Base64-encoded JSON object: {error}") from error
    if not isinstance(document, dict):
        raise ServiceError(HTTPStatus.BAD_REQUEST, "InvalidRequestContentException",
                           "Client context must be a valid Base64-encoded JSON object")
    return ClientContext(custom=document.get("custom"), env=document.get("env"), client=document.get("client"))


def _unsupported(method: str, path: str) -> ServiceError:
    return ServiceError(HTTPStatus.BAD_REQUEST, "UnsupportedOperationException",
                        f"{method} {path}: the local Lambda emulation serves Invoke only")
