"""EMULATIONS of AWS services and features that moto lacks or stores without performing.

Each module here stands in for one named AWS service or feature, locally and approximately, and
follows that service's documented rules as far as a local run needs them; none of them is AWS, and
each says so in its docstring (what it emulates, what it does not):

    lambda_service.py        the Lambda service for the runtime's functions: Invoke (synchronous,
                             asynchronous with retries and destinations); moto cannot run functions
    lambda_invoke_api.py     Lambda's Invoke operation on the wire (REST-JSON), served on loopback
    sms.py                   AWS End User Messaging SMS opt-out lists (pinpoint-sms-voice-v2), served
                             on loopback; moto has no such service
    kinesis_for_dynamodb.py  Kinesis Data Streams for DynamoDB: table changes published to Kinesis
    s3_notifications.py      Amazon S3 event notifications to Lambda (asynchronous invocations)
    firehose.py              Amazon Data Firehose from a Kinesis stream to S3: buffering, the
                             transformation Lambda, dynamic partitioning, error output
    firehose_parquet.py      Firehose's record format conversion to Parquet with a Glue table's schema
    firehose_prefixes.py     Firehose's custom S3 prefix expressions
    stepfunctions.py         AWS Step Functions: moto's ASL interpreter, its tasks wired to the runtime's
                             functions (Lambda) and to the embedded AWS (SDK integrations)
    loopback.py              what the services served on loopback share: the server, the endpoint
                             variable botocore reads, one `ServiceError`
    wiring.py                which emulations a deployed template needs

The runtime polls every emulation on its single polling thread (`Emulation` below); the Lambda
emulation's HTTP server and the SMS one answer on their own threads.
"""

from typing import Protocol


class Emulation(Protocol):
    """What the runtime polls: `poll()` does one step of work and says whether it did any; `is_drained()`
    says nothing is pending; `counters()` is what the live display shows."""

    name: str

    def poll(self) -> bool: ...

    def is_drained(self) -> bool: ...

    def counters(self) -> dict[str, int]: ...
