"""Failure classes every function uses to tell Lambda's retry machinery what went wrong.

A *permanent* failure (poison record) will fail the same way on every retry: the event source
mapping must isolate it (bisect) and deliver it to the on-failure destination. A *transient*
failure (throttling, an outage, running out of time) may succeed later: the batch is retried
from the failed record.
"""


class RecordError(Exception):
    """A record could not be processed; `permanent` says whether a retry can help."""

    permanent: bool = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PoisonRecordError(RecordError):
    """The record itself is bad: undecodable, invalid or too large. Retrying cannot help."""

    permanent = True


class TransientError(RecordError):
    """A dependency failed in a way that may pass: throttling, timeouts, service outages."""

    permanent = False


class ConfigurationError(RuntimeError):
    """The function's settings are missing or invalid: the deployment's fault, never a record's.

    Raised at cold start where it can be; raised later (a setting first read on a record that needs
    it) it fails the invocation, so Lambda retries the batch instead of dead-lettering its records
    as poison one by one.
    """
