"""What the KPL tests share: a check that the stream processor keys its writes by user record.

Until `processor.py` passes `record.record_id` (not `record.sequence_number`) as each item's ref, two
user records of one key in one aggregate make the writer loop for ever; the tests that need it fail
with this check instead of hanging.
"""

import functools
import subprocess
import sys

import pytest
from support import REPO_ROOT

# Two user records of one aggregate, for one key, through the processor and its real writer.
TWO_USER_RECORDS_OF_ONE_KEY = """
import json, sys
sys.path[:0] = ["layers/shared", "tests", "."]
from support import FakeLambdaContext, kinesis_event
from tributary.kpl_aggregation import OutgoingUserRecord, encode_aggregate
from tributary_shared.dynamo_writer import BatchWriter
from tributary_shared.stream_processor.processor import StreamProcessor
from tributary_shared.stream_processor.settings import StreamProcessorSettings

class AcceptingDynamoDB:
    def transact_write_items(self, **request):
        return {}

settings = StreamProcessorSettings(table_name="Payments", key_attributes=("paymentId",))
writer = BatchWriter("Payments", ["paymentId"], AcceptingDynamoDB(), version_attribute=settings.version_attribute)
data = encode_aggregate([OutgoingUserRecord("p", json.dumps({"paymentId": "p", "v": v}).encode()) for v in (1, 2)])
print(StreamProcessor(settings, writer=writer).handle(kinesis_event([("p", data)]), FakeLambdaContext()))
"""


@functools.cache
def writes_are_keyed_by_user_record() -> bool:
    """Whether the processor gives the writer one ref per user record (`record.record_id`).

    The writer collapses items of one key by their refs: two user records of one aggregate sharing
    the aggregate's sequence number as their ref make it loop for ever. Checked in a child process,
    so a processor that still does fails these tests instead of hanging them.
    """
    try:
        run = subprocess.run([sys.executable, "-c", TWO_USER_RECORDS_OF_ONE_KEY], cwd=REPO_ROOT, timeout=20,
                             capture_output=True, text=True)  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return run.returncode == 0 and "'batchItemFailures': []" in run.stdout


def require_writes_keyed_by_user_record() -> None:
    if not writes_are_keyed_by_user_record():
        pytest.fail("processor.py must key its writes by record.record_id (one ref per user record), "
                    "not record.sequence_number: the writer never ends on two user records of one key")  # fmt: skip
