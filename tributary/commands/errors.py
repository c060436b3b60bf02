"""What the `tributary` command says when a command ends in an exception: one line on stderr, and an exit status.

- a `UserError` (TemplateError, FaultSpecError, ...): its message, exit 2;
- the AWS client slips a newcomer makes first (no region, no credentials, no emulator on that port,
  the guard refusing real AWS) and a development requirement not installed: what is wrong and what
  to do, exit 2; an AWS error answer, exit 1;
- anything else is a bug: its type and message, and how to see the traceback (`--debug`), exit 1.

Ctrl-C and a closed stdout (`tributary consume | head`) are the command's own business (tributary.commands).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

EXIT_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command Ctrl-C ended
DEBUG_VARIABLE = "TRIBUTARY_DEBUG"
OWN_PACKAGES = ("tributary", "tributary_shared")  # a module of ours missing is a bug, not an install step
START_AN_EMULATOR = (
    "to use the local emulator, start `tributary up` in another terminal and export the AWS_ENDPOINT_URL it prints"
    " (or pass --endpoint-url)"
)


def debug_requested() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in {"", "0", "false", "no"}


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "(no message)"


def describe(error: Exception, command: str) -> tuple[str, int]:
    """The line to print (without the `tributary <command>: ` prefix) and the exit status."""
    from tributary.user_errors import UserError

    if isinstance(error, UserError):
        return one_line(str(error)), EXIT_USER_ERROR
    if isinstance(error, ModuleNotFoundError) and error.name and error.name.split(".")[0] not in OWN_PACKAGES:
        return (
            f"the Python module {error.name!r} is not installed: the local runtime and the producer need the"
            " development requirements (pip install -r requirements-dev.txt, or make setup)"
        ), EXIT_USER_ERROR
    return describe_aws(error) or (bug(error, command), EXIT_FAILED)


def describe_aws(error: Exception) -> tuple[str, int] | None:
    """The AWS client's slips, explained; None for anything else."""
    try:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

        from tributary.aws_guard import RealAwsRefused
    except ImportError:  # without botocore, no AWS client raised this
        return None
    if isinstance(error, RealAwsRefused):
        return f"{one_line(str(error))} (tributary talks only to a local emulator on 127.0.0.1)", EXIT_USER_ERROR
    if isinstance(error, NoRegionError):
        return f"no AWS region is set: {START_AN_EMULATOR}; for AWS itself, set AWS_DEFAULT_REGION", EXIT_USER_ERROR
    if isinstance(error, NoCredentialsError):
        return f"no AWS credentials found: {START_AN_EMULATOR}; for AWS itself, configure credentials", EXIT_USER_ERROR
    if isinstance(error, EndpointConnectionError):
        return no_answer(str(error.kwargs.get("endpoint_url", ""))), EXIT_USER_ERROR
    if isinstance(error, ClientError):
        return one_line(str(error)), EXIT_FAILED
    return None


def no_answer(endpoint_url: str) -> str:
    """Nothing listens at the endpoint: on loopback, that is a `tributary up` not running there."""
    from tributary.aws_guard import is_loopback_url

    if not endpoint_url or not is_loopback_url(endpoint_url):
        return f"cannot connect to {endpoint_url or 'the AWS endpoint'}: check the network, or {START_AN_EMULATOR}"
    parts = urlsplit(endpoint_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return (
        f"nothing answers at {origin}: no `tributary up` is running on port {parts.port}."
        f" Start one in another terminal (`tributary up --port {parts.port}`), or set AWS_ENDPOINT_URL"
        " (or --endpoint-url) to the endpoint a running `tributary up` printed"
    )


def bug(error: BaseException, command: str) -> str:
    return (
        f"unexpected {type(error).__name__}: {one_line(str(error))}. This is a bug in tributary:"
        f" rerun with --debug (`tributary --debug {command} ...`) for the traceback, and please report it"
    )
