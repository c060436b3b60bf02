"""Physical names and ARNs: what CloudFormation would name a resource, in the one local account.

A resource's physical name is its template's name property or, like CloudFormation, generated
from the stack name and logical id. References to a resource not yet created are predicted from
that name; what only exists once the resource does (a queue's URL, a table's stream ARN) is filled
in by `tributary.runtime.resources` through `Template.record_attributes`.
"""

from __future__ import annotations

import hashlib
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
DEFAULT_STACK_NAME = "tributary"

# Name property of each type whose physical name the template may choose (path for nested ones).
NAME_PROPERTIES: dict[str, tuple[str, ...]] = {
    "AWS::Kinesis::Stream": ("Name",),
    "AWS::Kinesis::StreamConsumer": ("ConsumerName",),
    "AWS::DynamoDB::Table": ("TableName",),
    "AWS::SQS::Queue": ("QueueName",),
    "AWS::SNS::Topic": ("TopicName",),
    "AWS::S3::Bucket": ("BucketName",),
    "AWS::KinesisFirehose::DeliveryStream": ("DeliveryStreamName",),
    "AWS::Glue::Registry": ("Name",),
    "AWS::Glue::Schema": ("Name",),
    "AWS::Glue::Database": ("DatabaseInput", "Name"),
    "AWS::Glue::Table": ("TableInput", "Name"),
    "AWS::Serverless::Function": ("FunctionName",),
    "AWS::Lambda::Function": ("FunctionName",),
    "AWS::Serverless::LayerVersion": ("LayerName",),
    "AWS::Lambda::LayerVersion": ("LayerName",),
    "AWS::IAM::Role": ("RoleName",),
    "AWS::Athena::NamedQuery": ("Name",),
    "AWS::Athena::WorkGroup": ("Name",),
    "AWS::Serverless::StateMachine": ("Name",),
    "AWS::StepFunctions::StateMachine": ("StateMachineName",),
    "AWS::SMSVOICE::OptOutList": ("OptOutListName",),
}
_LOWERCASE_NAME_TYPES = {"AWS::S3::Bucket", "AWS::Glue::Database", "AWS::Glue::Table"}

_ARN_FORMATS: dict[str, str] = {
    "AWS::Kinesis::Stream": "arn:aws:kinesis:{r}:{a}:stream/{n}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{r}:{a}:table/{n}",
    "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:{n}",
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:{n}",
    "AWS::S3::Bucket": "arn:aws:s3:::{n}",
    "AWS::KinesisFirehose::DeliveryStream": "arn:aws:firehose:{r}:{a}:deliverystream/{n}",
    "AWS::Glue::Registry": "arn:aws:glue:{r}:{a}:registry/{n}",
    "AWS::Serverless::Function": "arn:aws:lambda:{r}:{a}:function:{n}",
    "AWS::Lambda::Function": "arn:aws:lambda:{r}:{a}:function:{n}",
    "AWS::IAM::Role": "arn:aws:iam::{a}:role/{n}",
    "AWS::Serverless::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{n}",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{r}:{a}:stateMachine:{n}",
}


def generated_name(stack_name: str, logical_id: str, resource_type: str) -> str:
    """The name CloudFormation gives a resource whose template names none."""
    digest = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).hexdigest()[:12].upper()
    name = f"{stack_name}-{logical_id}-{digest}"
    if resource_type in _LOWERCASE_NAME_TYPES:
        name = name.lower()
    return name[:63] if resource_type == "AWS::S3::Bucket" else name


def predicted_ref(resource_type: str, name: str) -> str:
    if resource_type == "AWS::SNS::Topic":
        return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{name}"
    if resource_type in {"AWS::Glue::Registry", "AWS::Glue::Schema"}:
        return predicted_attribute(resource_type, name, "Arn")
    if resource_type in {"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"}:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}:1"
    if resource_type == "AWS::SQS::Queue":
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}"
    return name


def predicted_attribute(resource_type: str, name: str, attribute: str) -> Any:
    arn = _ARN_FORMATS.get(resource_type, "arn:aws:{s}:{r}:{a}:{n}").format(
        r=REGION, a=ACCOUNT_ID, n=name, s=resource_type.split("::")[1].lower() if "::" in resource_type else "x"
    )
    if attribute in {"Arn", "TopicArn"}:
        return arn
    if attribute == "StreamArn" and resource_type == "AWS::DynamoDB::Table":
        return f"{arn}/stream/pending"
    if attribute in {"QueueName", "TopicName", "Name"}:
        return name
    if attribute == "QueueUrl":
        return predicted_ref(resource_type, name)
    if attribute in {"DomainName", "RegionalDomainName"}:
        return f"{name}.s3.amazonaws.com"
    return f"{name}.{attribute}"

