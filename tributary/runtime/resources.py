"""Create in the emulator (moto) what a template declares, as far as moto supports it.

Each creator turns resolved CloudFormation properties into the service's API calls and records
the resource's real attributes (queue URL, table stream ARN, schema ARN...) on the template so
later references resolve to them. What the emulator cannot create, or a local run does not need
(IAM, policies, KMS, log groups), is named in `Deployment.skipped` with the reason; deployment
carries on. What moto stores but does not act on (S3 → Lambda notifications, Kinesis streaming
destinations of tables, Firehose delivery from a Kinesis source) is recorded for
`tributary.runtime.emulations`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tributary.runtime.emulations.sms import SmsEmulation
from tributary.runtime.emulations.stepfunctions import create_state_machine
from tributary.runtime.glue_resources import GLUE_CREATORS
from tributary.runtime.template import Template, TemplateError


@dataclass
class Deployment:
    created: list[str] = field(default_factory=list)
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> name (and ARN) in the emulator
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    s3_lambda_notifications: dict[str, list[dict]] = field(default_factory=dict)  # bucket name -> configs
    kinesis_streaming_destinations: dict[str, str] = field(default_factory=dict)  # table name -> stream ARN
    firehose_streams: dict[str, dict] = field(default_factory=dict)  # delivery stream name -> properties
    named_queries: dict[str, dict] = field(default_factory=dict)  # query name -> {Database, QueryString}
    sms: SmsEmulation | None = None  # started when the template declares an SMS opt-out list

    def summary_lines(self) -> list[str]:
        lines = [f"created {len(self.created)} resources:"]
        lines += [f"  {logical_id}: {self.physical.get(logical_id, '')}" for logical_id in self.created]
        lines += [f"skipped {logical_id}: {reason}" for logical_id, reason in self.skipped]
        return lines + self.notes


Creator = Callable[["_Deployer", str, dict], None]

# Local runs do not need these: no IAM or KMS is enforced by the emulator, functions run in-process.
NOT_NEEDED_LOCALLY = {
    "AWS::IAM::Role": "IAM is not enforced locally",
    "AWS::IAM::Policy": "IAM is not enforced locally",
    "AWS::IAM::ManagedPolicy": "IAM is not enforced locally",
    "AWS::SQS::QueuePolicy": "resource policies are not enforced locally",
    "AWS::S3::BucketPolicy": "resource policies are not enforced locally",
    "AWS::SNS::TopicPolicy": "resource policies are not enforced locally",
    "AWS::KMS::Key": "encryption at rest is not emulated",
    "AWS::KMS::Alias": "encryption at rest is not emulated",
    "AWS::Logs::LogGroup": "function output goes to the function log file (--logs, or .tributary/logs/)",
    "AWS::Lambda::Permission": "IAM is not enforced locally",
    "AWS::Serverless::Function": "runs in-process",
    "AWS::Serverless::LayerVersion": "its ContentUri is on each function's import path",
    "AWS::Lambda::EventSourceMapping": "driven by the event-source-mapping engine",
    "AWS::Logs::LogStream": "function output goes to the function log file (--logs, or .tributary/logs/)",
    "AWS::CloudWatch::Alarm": "evaluated by the runtime over what it observes (alarms.py); its actions are not run",
    "AWS::CloudWatch::Dashboard": "dashboards are not emulated",
    "AWS::Events::Rule": "EventBridge rules and schedules are not emulated (start executions by hand)",
}

# Named at start-up by what runs them: functions as functions, alarms with what is evaluated.
_LISTED_ELSEWHERE = {"AWS::Serverless::Function", "AWS::Serverless::LayerVersion", "AWS::CloudWatch::Alarm"}


class _Deployer:
    def __init__(self, template: Template, session: boto3.session.Session | None) -> None:
        self.template = template
        self.session = session or boto3.session.Session()
        self.deployment = Deployment()
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def record(self, logical_id: str, **attributes: Any) -> None:
        self.template.record_attributes(logical_id, attributes)
        self.deployment.created.append(logical_id)
        self.deployment.physical[logical_id] = _physical_description(attributes)

    def deploy(self) -> Deployment:
        ordered = sorted(self.template.resources.values(), key=lambda resource: _ORDER.get(resource.type, 99))
        for resource in ordered:
            creator = _CREATORS.get(resource.type)
            if creator is None:
                reason = NOT_NEEDED_LOCALLY.get(resource.type, f"{resource.type} is not supported by the local runtime")
                if resource.type not in _LISTED_ELSEWHERE:
                    self.deployment.skipped.append((resource.logical_id, reason))
                continue
            try:
                creator(self, resource.logical_id, self.template.resolve(resource.properties))
            except (ClientError, BotoCoreError, TemplateError, KeyError, TypeError, ValueError) as error:
                self.deployment.skipped.append((resource.logical_id, f"could not create: {error}"))
        for logical_id in self.template.skipped_by_condition:
            self.deployment.skipped.append((logical_id, "its Condition is false"))
        return self.deployment


def _physical_description(attributes: dict[str, Any]) -> str:
    """What to point the producer or the AWS CLI at: the name (an SQS Ref is its URL), and the ARN."""
    name = str(attributes.get("QueueName") or attributes.get("TopicName") or attributes.get("Ref") or "")
    arn = attributes.get("Arn")
    return f"{name}  {arn}" if arn and arn != name else name


def deploy(template: Template, session: boto3.session.Session | None = None) -> Deployment:
    """Create the template's resources in the emulator the session's clients point at."""
    return _Deployer(template, session).deploy()


# ---------------------------------------------------------------- creators


def _kinesis_stream(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    kinesis = deployer.client("kinesis")
    name = deployer.template.physical_name(logical_id)
    mode = (properties.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    else:
        kinesis.create_stream(StreamName=name, ShardCount=int(properties.get("ShardCount", 1)))
    retention = int(properties.get("RetentionPeriodHours", 24))
    if retention > 24:
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=retention)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    deployer.record(logical_id, Ref=name, Arn=arn)


def _kinesis_stream_consumer(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    # Ref is the consumer's ARN, as in CloudFormation; moto's ARN has no ":<creation time>" suffix.
    consumer = deployer.client("kinesis").register_stream_consumer(
        StreamARN=properties["StreamARN"], ConsumerName=deployer.template.physical_name(logical_id)
    )["Consumer"]
    deployer.record(
        logical_id,
        Ref=consumer["ConsumerARN"],
        ConsumerARN=consumer["ConsumerARN"],
        ConsumerName=consumer["ConsumerName"],
        ConsumerStatus=consumer["ConsumerStatus"],
        ConsumerCreationTimestamp=str(int(consumer["ConsumerCreationTimestamp"].timestamp())),
        StreamARN=properties["StreamARN"],
    )


_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


def _dynamodb_table(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    dynamodb = deployer.client("dynamodb")
    name = deployer.template.physical_name(logical_id)
    arguments: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    if arguments["BillingMode"] == "PROVISIONED":
        arguments["ProvisionedThroughput"] = _throughput(properties.get("ProvisionedThroughput"))
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if properties.get(key):
            arguments[key] = [_index(index, arguments["BillingMode"]) for index in properties[key]]
    stream_spec = properties.get("StreamSpecification")
    kinesis_destination = (properties.get("KinesisStreamSpecification") or {}).get("StreamArn")
    if kinesis_destination:
        # Emulation of Kinesis Data Streams for DynamoDB reads item images from the table's stream.
        if stream_spec and stream_spec.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
            deployer.deployment.notes.append(
                f"{logical_id}: StreamViewType set to NEW_AND_OLD_IMAGES for the Kinesis streaming emulation"
            )
        stream_spec = {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    if stream_spec:
        arguments["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_spec["StreamViewType"]}
    table = dynamodb.create_table(**arguments)["TableDescription"]
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    if kinesis_destination:
        deployer.deployment.kinesis_streaming_destinations[name] = kinesis_destination
    attributes = {"Ref": name, "Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    deployer.record(logical_id, **attributes)


def _throughput(value: dict | None) -> dict:
    value = value or {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 5)),
    }


def _index(index: dict, billing_mode: str) -> dict:
    result = {key: index[key] for key in _GSI_KEYS if key in index}
    if billing_mode == "PROVISIONED" and "KeySchema" in result:
        result["ProvisionedThroughput"] = _throughput(index.get("ProvisionedThroughput"))
    return result


_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "KmsMasterKeyId",
    "SqsManagedSseEnabled",
)


def _sqs_queue(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    sqs = deployer.client("sqs")
    name = deployer.template.physical_name(logical_id)
    fifo = str(properties.get("FifoQueue", "false")).lower() == "true"
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    attributes = {key: _attribute_string(properties[key]) for key in _QUEUE_ATTRIBUTES if key in properties}
    if "RedrivePolicy" in properties:
        attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    deployer.record(logical_id, Ref=url, Arn=arn, QueueName=name, QueueUrl=url)


def _attribute_string(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _sns_topic(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    sns = deployer.client("sns")
    name = deployer.template.physical_name(logical_id)
    attributes = {"FifoTopic": "true"} if str(properties.get("FifoTopic", "")).lower() == "true" else {}
    arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    for subscription in properties.get("Subscription") or []:
        _subscribe(deployer, arn, subscription["Protocol"], subscription["Endpoint"])
    deployer.record(logical_id, Ref=arn, TopicArn=arn, TopicName=name)


def _sns_subscription(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    _subscribe(deployer, properties["TopicArn"], properties["Protocol"], properties["Endpoint"])
    deployer.record(logical_id, Ref=f"{properties['TopicArn']}:{logical_id}")


def _subscribe(deployer: _Deployer, topic_arn: str, protocol: str, endpoint: str) -> None:
    if protocol == "lambda":
        deployer.deployment.notes.append(f"SNS → Lambda subscription to {endpoint} is not emulated")
        return
    deployer.client("sns").subscribe(TopicArn=topic_arn, Protocol=protocol, Endpoint=endpoint)


def _s3_bucket(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    s3 = deployer.client("s3")
    name = deployer.template.physical_name(logical_id)
    s3.create_bucket(Bucket=name)
    if (properties.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    notifications = properties.get("NotificationConfiguration") or {}
    if notifications.get("LambdaConfigurations"):
        deployer.deployment.s3_lambda_notifications[name] = list(notifications["LambdaConfigurations"])
    moto_notifications = {
        key: notifications[key] for key in ("QueueConfigurations", "TopicConfigurations") if notifications.get(key)
    }
    if moto_notifications:
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=moto_notifications)
    deployer.record(
        logical_id,
        Ref=name,
        Arn=f"arn:aws:s3:::{name}",
        DomainName=f"{name}.s3.amazonaws.com",
        RegionalDomainName=f"{name}.s3.us-east-1.amazonaws.com",
    )


_FIREHOSE_ARGUMENTS = (
    "DeliveryStreamType",
    "KinesisStreamSourceConfiguration",
    "ExtendedS3DestinationConfiguration",
    "S3DestinationConfiguration",
)


def _firehose(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    name = deployer.template.physical_name(logical_id)
    arguments = {key: properties[key] for key in _FIREHOSE_ARGUMENTS if key in properties}
    try:
        arn = deployer.client("firehose").create_delivery_stream(DeliveryStreamName=name, **arguments)[
            "DeliveryStreamARN"
        ]
    except (ClientError, BotoCoreError) as error:
        deployer.deployment.notes.append(f"{logical_id}: moto refused the delivery stream ({error}); emulated only")
        arn = deployer.template.get_att(logical_id, "Arn")
    deployer.deployment.firehose_streams[name] = properties
    deployer.record(logical_id, Ref=name, Arn=arn)


def _athena_named_query(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    name = deployer.template.physical_name(logical_id)
    query = {"Database": properties.get("Database", "default"), "QueryString": properties["QueryString"]}
    query_id = deployer.client("athena").create_named_query(Name=name, **query)["NamedQueryId"]
    deployer.deployment.named_queries[name] = query
    deployer.record(logical_id, Ref=query_id)


def _sms_opt_out_list(deployer: _Deployer, logical_id: str, properties: dict) -> None:
    # moto has no End User Messaging SMS: the runtime serves the SMS emulation (emulations/sms.py).
    deployment = deployer.deployment
    if deployment.sms is None:
        deployment.sms = SmsEmulation().start()
        deployment.notes.append(f"SMS opt-out lists: emulation at {deployment.sms.endpoint_url}")
    opt_out_list = deployment.sms.create_opt_out_list(deployer.template.physical_name(logical_id))
    deployer.record(logical_id, Ref=opt_out_list.name, Arn=opt_out_list.arn)


_CREATORS: dict[str, Creator] = {
    "AWS::Kinesis::Stream": _kinesis_stream,
    "AWS::Kinesis::StreamConsumer": _kinesis_stream_consumer,
    "AWS::S3::Bucket": _s3_bucket,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::SNS::Subscription": _sns_subscription,
    "AWS::DynamoDB::Table": _dynamodb_table,
    **GLUE_CREATORS,
    "AWS::KinesisFirehose::DeliveryStream": _firehose,
    "AWS::Athena::NamedQuery": _athena_named_query,
    "AWS::SMSVOICE::OptOutList": _sms_opt_out_list,
    "AWS::Serverless::StateMachine": create_state_machine,
    "AWS::StepFunctions::StateMachine": create_state_machine,
}
# Referenced resources first: a consumer's stream, a table's Kinesis destination, a schema's registry, a table's
# database.
_ORDER = {resource_type: position for position, resource_type in enumerate(_CREATORS)}
