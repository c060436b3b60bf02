"""The emulations that build what a deployed template needs, and wire them to its functions."""

from __future__ import annotations

from collections.abc import Mapping

from botocore.exceptions import ClientError

from tributary.runtime.emulations import Emulation
from tributary.runtime.emulations.firehose import FirehoseFromKinesis
from tributary.runtime.emulations.kinesis_for_dynamodb import KinesisStreamingForDynamoDB
from tributary.runtime.emulations.s3_notifications import AsyncInvoker, S3EventNotifications, subscriptions_by_bucket
from tributary.runtime.functions import FunctionLookup, LocalFunction
from tributary.runtime.resources import Deployment
from tributary.runtime.template import Template


def build_emulations(
    template: Template,
    deployment: Deployment,
    functions: Mapping[str, LocalFunction],
    lookup: FunctionLookup,
    invoke_async: AsyncInvoker,
) -> list[Emulation]:
    """Every emulation the deployed template needs (the Lambda emulation itself is the runtime's)."""
    emulated: list[Emulation] = [
        KinesisStreamingForDynamoDB(table, stream_arn)
        for table, stream_arn in deployment.kinesis_streaming_destinations.items()
    ]
    emulated += [
        S3EventNotifications(bucket, subscriptions, invoke_async)
        for bucket, subscriptions in subscriptions_by_bucket(template, deployment, functions, lookup).items()
    ]
    for name, properties in deployment.firehose_streams.items():
        if properties.get("DeliveryStreamType") != "KinesisStreamAsSource":
            deployment.notes.append(f"Firehose {name}: only Kinesis-sourced delivery streams are emulated")
            continue
        try:
            emulated.append(FirehoseFromKinesis(name, properties, lookup))
        except (ClientError, KeyError, ValueError) as error:  # named, and the rest of the template still runs
            deployment.notes.append(f"Firehose {name}: not emulated: {error!r}")
    return emulated
