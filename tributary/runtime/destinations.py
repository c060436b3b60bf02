"""On-failure destinations of a stream event source mapping: AWS's invocation record, sent to SQS, SNS or S3.

Format ("Retain discarded batch records for a Kinesis Data Streams event source in Lambda"): a JSON
document with ``requestContext`` (requestId, functionArn, condition, approximateInvokeCount),
``responseContext`` (statusCode, executedVersion, functionError; left out when the records were never
invoked, e.g. they expired before the first try), ``version`` "1.0", ``timestamp`` and
``KinesisBatchInfo`` / ``DDBStreamBatchInfo`` (shardId, start/endSequenceNumber, approximateArrivalOf
First/LastRecord, batchSize, streamArn). SQS and SNS get exactly that (no record data). S3 objects also
carry ``payload``: the whole invocation event as a JSON string (the AWS example shows
``"payload": "<Whole Event>"``), under the key
``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<Random UUID>``.
The Lambda emulation (emulations/lambda_service.py) sends asynchronous invocation records through it too:
no ``payload`` (the record carries ``requestPayload``), S3 key ``aws/lambda/async/<function-name>/...``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


def iso_millis(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def invocation_record(
    *,
    function_arn: str,
    condition: str,
    invoke_count: int,
    function_error: str | None,
    request_id: str,
    batch_info_key: str,
    batch_info: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
    }
    if invoke_count:
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if function_error:
            response["functionError"] = function_error
        record["responseContext"] = response
    record["version"] = "1.0"
    record["timestamp"] = iso_millis(now)
    record[batch_info_key] = batch_info
    return record


def s3_object_key(mapping_uuid: str, shard_id: str, now: float) -> str:
    moment = datetime.fromtimestamp(now, UTC)
    return (
        f"aws/lambda/{mapping_uuid}/{shard_id}/{moment:%Y/%m/%d}/"
        f"{moment:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
    )


class OnFailureDestination:
    """Sends invocation records to one destination ARN (sqs, sns or s3)."""

    def __init__(self, arn: str) -> None:
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[2] not in {"sqs", "sns", "s3"}:
            raise ValueError(f"unsupported on-failure destination {arn!r}: expected an SQS, SNS or S3 ARN")
        self.arn = arn
        self.service = parts[2]
        self._region = parts[3] or None
        self._account = parts[4]
        self._resource = parts[5]
        self._client: Any = None
        self._queue_url: str | None = None

    def send(self, record: dict[str, Any], event: dict[str, Any] | None, *, mapping_uuid: str, shard_id: str,
             now: float) -> str:
        """Deliver `record` (plus `event` as payload for S3, unless None); returns where it went."""
        if self._client is None:
            self._client = boto3.client(self.service, region_name=self._region)
        if self.service == "sqs":
            return self._send_sqs(record)
        if self.service == "sns":
            response = self._client.publish(TopicArn=self.arn, Message=json.dumps(record))
            return f"sns message {response['MessageId']}"
        key = s3_object_key(mapping_uuid, shard_id, now)
        body = json.dumps(record if event is None else {**record, "payload": json.dumps(event)})
        self._client.put_object(Bucket=self._resource, Key=key, Body=body.encode(),
                                ContentType="application/json")
        return f"s3://{self._resource}/{key}"

    def _send_sqs(self, record: dict[str, Any]) -> str:
        if self._queue_url is None:
            self._queue_url = self._client.get_queue_url(
                QueueName=self._resource, QueueOwnerAWSAccountId=self._account
            )["QueueUrl"]
        response = self._client.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(record))
        return f"sqs message {response['MessageId']}"
