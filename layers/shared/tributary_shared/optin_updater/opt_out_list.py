"""An AWS End User Messaging SMS opt-out list, kept in step with opt-in changes.

A number on the list cannot be sent SMS or voice messages. Opting out is `PutOptedOutNumber`
(idempotent); opting back in is `DeleteOptedOutNumber`. How each service answer is treated:

- throttling, internal errors, lost connections: retried here through the toolkit's retry policy
  (exponential backoff and full jitter, bounded by attempts and by the invocation's deadline),
  then `TransientError`;
- the list itself missing (any ResourceNotFoundException but one of type `opted-out-number`) or
  access denied: a deployment problem no record can fix, but no
  opt-out may be dropped either: `TransientError`, so the batch is retried and, after the event
  source mapping's retries, lands on the on-failure destination;
- a number the service cannot parse: `PoisonRecordError` (the record goes to the on-failure
  destination);
- opting a number back in: first `DescribeOptedOutNumbers` for it. A number the end user opted
  out themselves (`EndUserOptedOut`: they texted STOP or another opt-out keyword) is never removed
  by a database change: `Outcome.REFUSED`, since only the person can take that back. A number not
  on the list (absent from the answer, or ResourceNotFoundException of type `opted-out-number`)
  is opted in already: a success with no deletion, so repeating an opt-in never spends the
  number's one deletion per 30 days;
- a deletion the service refuses by its rules (a number can be deleted only once every 30 days):
  an expected outcome, `Outcome.REFUSED` with the reason; the number stays opted out, which is the
  safe side, and retrying would only be refused again;
- an opt-out the service refuses: `OptOutRefused`, a permanent failure, because an opt-out that
  did not happen must reach an operator;
- too little time left for one more call (connect plus read timeout) before the invocation's
  deadline: `TransientError` without calling, so no call is cut off by the function's timeout.
"""

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from tributary_shared import aws_clients
from tributary_shared.errors import PoisonRecordError, TransientError
from tributary_shared.optin_updater.dms_records import OptInChange
from tributary_shared.retries import RetryPolicy

# E.164: "+", a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
RETRYABLE_ERRORS = frozenset(
    {"ThrottlingException", "InternalServerException", "ServiceUnavailable", "RequestLimitExceeded"}
)
CONFIGURATION_ERRORS = frozenset({"AccessDeniedException"})
REFUSAL_ERRORS = frozenset({"ValidationException", "ConflictException"})
# ValidationException reasons that mean the number itself is malformed.
UNPARSABLE_NUMBER_REASONS = frozenset({"CANNOT_PARSE", "FIELD_VALIDATION_FAILED", "INVALID_PARAMETER"})
NOT_ON_LIST_TYPE = "opted-out-number"
SUPERSEDED_REASON = "a newer change of this number came first"
# Four calls at most, the first retry after up to 0.1 s, none past the deadline.
OPT_OUT_RETRY = RetryPolicy(base_s=0.1, cap_s=2.0, max_attempts=4)


class Outcome(StrEnum):
    OPTED_OUT = "opted-out"
    OPTED_IN = "opted-in"
    NOT_ON_LIST = "not-on-list"
    REFUSED = "refused"
    SKIPPED = "skipped"
    UNCHANGED = "unchanged"
    # A newer change of the number came first (`versions`): this one must not act on it.
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Applied:
    """What happened to one number; `reason` explains a refusal or a skip."""

    phone: str
    outcome: Outcome
    reason: str = ""


class OptOutRefused(PoisonRecordError):
    """The service refused to add a number to the opt-out list: permanent, and must be seen."""


def require_e164(phone: str | None) -> str:
    if phone is None or not E164.fullmatch(phone):
        raise PoisonRecordError(f"phone number {phone!r} is not E.164 (+ and 2 to 15 digits)")
    return phone


def is_e164(phone: str | None) -> bool:
    return phone is not None and E164.fullmatch(phone) is not None


class OptOutList:
    """Opt numbers out and back in on one list, with bounded retries of transient errors."""

    def __init__(self, name: str, client: Any = None, *, retry: RetryPolicy = OPT_OUT_RETRY) -> None:
        self.name = name
        self._client = client
        self.retry = retry

    @property
    def client(self) -> Any:
        # Created on first use: the SMS service's model is large, and a cold start need not load it.
        if self._client is None:
            self._client = aws_clients.client("pinpoint-sms-voice-v2")
        return self._client

    def apply(self, change: OptInChange, deadline: float, superseded: Collection[str] = frozenset()) -> list[Applied]:
        """Apply one row change: the old number (if it changed) first, then the current one.

        The old number is opted out even when the new one turns out to be invalid: nobody can say
        who holds it now, and opting out is the safe side. Numbers in `superseded` hold a newer
        change already and are left alone.
        """
        applied = []
        if change.previous_phone is not None:
            if change.previous_phone in superseded:
                applied.append(Applied(change.previous_phone, Outcome.SUPERSEDED, SUPERSEDED_REASON))
            else:
                applied.append(self._opt_out_previous(change.previous_phone, deadline))
        if change.phone is None:
            return [*applied, Applied("", Outcome.SKIPPED, "row has no phone number")]
        if change.phone in superseded:
            return [*applied, Applied(change.phone, Outcome.SUPERSEDED, SUPERSEDED_REASON)]
        if change.already_opted_in:
            return [*applied, Applied(require_e164(change.phone), Outcome.UNCHANGED)]
        action = self.opt_in if change.opted_in else self.opt_out
        return [*applied, action(change.phone, deadline)]

    def _opt_out_previous(self, phone: str, deadline: float) -> Applied:
        if not is_e164(phone):
            return Applied(phone, Outcome.SKIPPED, "previous number is not E.164, so it was never messageable")
        return self.opt_out(phone, deadline)

    def opt_out(self, phone: str, deadline: float) -> Applied:
        number = require_e164(phone)
        try:
            self._call(self.client.put_opted_out_number, number, deadline, OptedOutNumber=number)
        except ClientError as error:
            code, reason = aws_clients.error_code(error), _error_reason(error)
            if code in REFUSAL_ERRORS and reason not in UNPARSABLE_NUMBER_REASONS:
                raise OptOutRefused(f"PutOptedOutNumber refused {number}: {code} {reason}") from error
            raise self._unexpected(error, "PutOptedOutNumber", number) from error
        return Applied(number, Outcome.OPTED_OUT)

    def opt_in(self, phone: str, deadline: float) -> Applied:
        number = require_e164(phone)
        entry = self._listed(number, deadline)
        if entry is None:
            return Applied(number, Outcome.NOT_ON_LIST)
        if entry.get("EndUserOptedOut"):
            return Applied(number, Outcome.REFUSED, "the end user opted out by keyword (EndUserOptedOut); not removed")
        try:
            self._call(self.client.delete_opted_out_number, number, deadline, OptedOutNumber=number)
        except ClientError as error:
            code, reason = aws_clients.error_code(error), _error_reason(error)
            if _is_number_not_on_list(error):
                return Applied(number, Outcome.NOT_ON_LIST)
            if code in REFUSAL_ERRORS and reason not in UNPARSABLE_NUMBER_REASONS:
                return Applied(number, Outcome.REFUSED, f"{code} {reason}: {_error_message(error)}")
            raise self._unexpected(error, "DeleteOptedOutNumber", number) from error
        return Applied(number, Outcome.OPTED_IN)

    def _listed(self, number: str, deadline: float) -> dict[str, Any] | None:
        """The list's entry for `number`, or None when it is not on the list."""
        try:
            response = self._call(self.client.describe_opted_out_numbers, number, deadline, OptedOutNumbers=[number])
        except ClientError as error:
            if _is_number_not_on_list(error):
                return None
            raise self._unexpected(error, "DescribeOptedOutNumbers", number) from error
        entries = [entry for entry in response.get("OptedOutNumbers") or [] if entry.get("OptedOutNumber") == number]
        return entries[0] if entries else None

    def _call(self, operation: Callable[..., Any], number: str, deadline: float, **params: Any) -> dict[str, Any]:
        calls = 0
        while True:
            if not self.retry.call_fits(deadline):
                raise TransientError(f"{number}: not enough time left for another call before the deadline")
            calls += 1
            try:
                return operation(OptOutListName=self.name, **params)
            except (ClientError, EndpointUnreachable, ReadTimeoutError) as error:
                if not _retryable(error):
                    raise
                failure = error
            if not self.retry.wait_before_retry(calls, deadline):
                raise TransientError(f"{number}: still failing after retries: {failure}") from failure

    def _unexpected(self, error: ClientError, operation: str, number: str) -> Exception:
        code, reason = aws_clients.error_code(error), _error_reason(error)
        if code == "ResourceNotFoundException":
            missing = error.response.get("ResourceType") or "resource"
            return TransientError(
                f"{operation} {number}: {missing} not found (opt-out list {self.name!r}): check the deployment"
            )
        if code in CONFIGURATION_ERRORS:
            return TransientError(f"{operation} on {self.name!r} denied: {reason or _error_message(error)}")
        if code == "ValidationException" and reason in UNPARSABLE_NUMBER_REASONS and not _names_the_list(error):
            return PoisonRecordError(f"{operation}: the service cannot use {number}: {_error_message(error)}")
        return TransientError(f"{operation} {number} failed: {code} {reason} {_error_message(error)}".strip())


def _retryable(error: Exception) -> bool:
    if not isinstance(error, ClientError):
        return True
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return aws_clients.error_code(error) in RETRYABLE_ERRORS or status >= 500


def _error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


def _error_reason(error: ClientError) -> str:
    # botocore puts an error's modeled members (Reason, ResourceType, ...) beside "Error".
    return str(error.response.get("Reason", ""))


def _is_number_not_on_list(error: ClientError) -> bool:
    # Only this type means "number not on the list"; a missing list (or a type the service may add)
    # must not pass for an opt-in that is done.
    not_found = aws_clients.error_code(error) == "ResourceNotFoundException"
    return not_found and error.response.get("ResourceType") == NOT_ON_LIST_TYPE


def _names_the_list(error: ClientError) -> bool:
    # A list name the service rejects is a deployment problem, not a bad record.
    return any(entry.get("Name") == "OptOutListName" for entry in error.response.get("Fields") or [])
