"""What one invocation of a local function returned: the one shape every caller of a function sees.

The function host (functions.py) produces it; the event source mappings (esm/), the Lambda
emulation and Firehose's transformation judge it. It lives here, apart from all of them, so that
none imports it from another. So does what a caller may hand the function beside its event: Invoke's
`ClientContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InvocationResult:
    """``function_error``: "Unhandled" when the handler raised or timed out, or a description of malformed
    output; any non-None value is a function error (``error_message`` then says what happened)."""

    response: Any = None
    function_error: str | None = None
    error_message: str | None = None
    # Lambda's error response fields: errorType ("ValueError", "Sandbox.Timedout", "Runtime.ExitError"),
    # stackTrace (the handler's frames, as traceback.format_list writes them), requestId.
    error_type: str | None = None
    stack_trace: tuple[str, ...] = ()
    request_id: str | None = None

    def error_response(self) -> dict[str, Any]:
        """The failed invocation's response as Lambda writes it (and `sam local invoke` prints it)."""
        message = (self.error_message or "").removeprefix(f"{self.error_type}: ")  # the type has a field of its own
        return {"errorMessage": message, "errorType": self.error_type, "requestId": self.request_id,
                "stackTrace": list(self.stack_trace)}  # fmt: skip


Invoker = Callable[[dict], InvocationResult]
"""Invokes a function with an event; reports the function's own failures in its result, never raises them."""


@dataclass(frozen=True)
class ClientContext:
    """Invoke's ClientContext as Lambda's Python runtime hands it to the handler (`context.client_context`):
    the caller's `custom` and `env` objects and `client` (what AWS's mobile SDKs say about the app)."""

    custom: Mapping[str, Any] | None = None
    env: Mapping[str, Any] | None = None
    client: Any = None
