"""X-Ray tracing of a handler, loaded only where tracing is on.

Powertools' `Tracer` imports the X-Ray SDK as soon as it is created, even with
`POWERTOOLS_TRACE_DISABLED=true`, and that import is the largest single part of a handler's cold
start (100-200 ms). The template's `Tracing` parameter sets both Lambda's tracing mode and
`POWERTOOLS_TRACE_DISABLED`, so a function deployed without tracing never loads the SDK.
"""

from collections.abc import Callable
from typing import Any

from tributary_shared.settings import optional_env

Handler = Callable[[Any, Any], Any]
DISABLED_VALUES = frozenset({"true", "1"})


def tracing_enabled() -> bool:
    """Powertools' own switch: tracing is on unless POWERTOOLS_TRACE_DISABLED says otherwise."""
    return optional_env("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() not in DISABLED_VALUES


def traced(handler: Handler) -> Handler:
    """`handler` under Powertools' Tracer when tracing is on; `handler` itself, SDK not loaded, when off."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer  # here, not at the top: this import loads the X-Ray SDK

    return Tracer().capture_lambda_handler(handler)
