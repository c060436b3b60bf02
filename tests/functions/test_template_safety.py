"""template.yaml's safety nets: retained state, the optional customer-managed key, access logs, Firehose error
logs, reserved concurrency, stream capacity modes and the aggregator's enhanced fan-out."""

import pytest
from support import RESOURCES, TEMPLATE
from template_variants import EVERY_OPTION_ON, KEY_ARN, deployed, function_properties, properties, resolved_of_type

STATEFUL_TYPES = (
    "AWS::Kinesis::Stream",
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::Logs::LogGroup",
    "AWS::Logs::LogStream",
    "AWS::SMSVOICE::OptOutList",
)
# Roles that read or write the streams, tables, queue or buckets: they need the key when it is the customer's.
ROLES_USING_THE_KEY = {
    "StreamProcessorRole",
    "PaymentProcessorRole",
    "AggregatorRole",
    "OptInUpdaterRole",
    "CsvLoaderRole",
    "OrdersDeliveryStreamRole",
    "RedriveRole",
    "RedriveStateMachineRole",
}


def test_every_stateful_resource_outlives_the_stack():
    stateful = {name: r for name, r in RESOURCES.items() if r["Type"] in STATEFUL_TYPES}
    assert len(stateful) >= 5 + 5 + 4 + 1 + 7  # streams, tables, buckets, queue, log groups
    for name, resource in stateful.items():
        assert (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) == ("Retain", "Retain"), name


def test_by_default_everything_is_encrypted_with_aws_managed_keys():
    template = deployed()
    assert {p["StreamEncryption"]["KeyId"] for p in resolved_of_type(template, "AWS::Kinesis::Stream").values()} == {
        "alias/aws/kinesis"
    }
    for table in resolved_of_type(template, "AWS::DynamoDB::Table").values():
        assert table["SSESpecification"] == {"SSEEnabled": True}  # the AWS-managed key, alias/aws/dynamodb
    assert properties(template, "FailedRecordsQueue")["SqsManagedSseEnabled"] is True
    assert "KmsMasterKeyId" not in properties(template, "FailedRecordsQueue")
    for name, bucket in resolved_of_type(template, "AWS::S3::Bucket").items():
        rules = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules == [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}], name
    assert all("KmsKeyId" not in group for group in resolved_of_type(template, "AWS::Logs::LogGroup").values())
    assert all("KmsKeyArn" not in function for function in function_properties(template).values())
    assert "CustomerManagedKeyUsePolicy" not in template.resources


def test_a_customer_managed_key_encrypts_every_store_but_the_access_logs():
    template = deployed(KmsKeyArn=KEY_ARN, OnFailureDestination="s3")
    for stream in resolved_of_type(template, "AWS::Kinesis::Stream").values():
        assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": KEY_ARN}
    for table in resolved_of_type(template, "AWS::DynamoDB::Table").values():
        assert table["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": KEY_ARN}
    queue = properties(template, "FailedRecordsQueue")
    assert queue["KmsMasterKeyId"] == KEY_ARN and "SqsManagedSseEnabled" not in queue
    buckets = resolved_of_type(template, "AWS::S3::Bucket")
    for name, bucket in buckets.items():
        (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        # S3 delivers server access logs only to a bucket encrypted with SSE-S3.
        expected = {"SSEAlgorithm": "AES256"} if name == "AccessLogsBucket" else {
            "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN
        }  # fmt: skip
        assert rule["ServerSideEncryptionByDefault"] == expected, name
    assert len(buckets) == 4
    for group in resolved_of_type(template, "AWS::Logs::LogGroup").values():
        assert group["KmsKeyId"] == KEY_ARN
    assert {f["KmsKeyArn"] for f in function_properties(template).values()} == {KEY_ARN}
    assert properties(template, "AlarmTopic")["KmsMasterKeyId"] == KEY_ARN
    assert "AlarmTopicKey" not in template.resources


@pytest.mark.parametrize("parameters", [{}, {"KmsKeyArn": KEY_ARN}], ids=["aws-managed", "customer-managed"])
def test_only_a_customer_managed_key_is_granted_and_only_to_roles_that_touch_data(parameters):
    template = deployed(**parameters)
    key_policy = template.ref("CustomerManagedKeyUsePolicy") if parameters else None
    granted = {
        name for name, role in resolved_of_type(template, "AWS::IAM::Role").items()
        if key_policy is not None and key_policy in role.get("ManagedPolicyArns", [])
    }  # fmt: skip
    assert granted == (ROLES_USING_THE_KEY if parameters else set())
    if parameters:
        (statement,) = properties(template, "CustomerManagedKeyUsePolicy")["PolicyDocument"]["Statement"]
        assert statement["Resource"] == KEY_ARN
        assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
        services = statement["Condition"]["StringEquals"]["kms:ViaService"]
        assert {service.split(".")[0] for service in services} == {"kinesis", "dynamodb", "sqs", "s3"}


def test_every_bucket_but_the_log_bucket_logs_access_to_it():
    template = deployed(OnFailureDestination="s3")
    logging = {
        name: bucket.get("LoggingConfiguration")
        for name, bucket in resolved_of_type(template, "AWS::S3::Bucket").items()
    }  # fmt: skip
    assert logging.pop("AccessLogsBucket") is None
    log_bucket = template.ref("AccessLogsBucket")
    assert {config["DestinationBucketName"] for config in logging.values()} == {log_bucket}
    prefixes = [config["LogFilePrefix"] for config in logging.values()]
    assert len(set(prefixes)) == len(prefixes) == 3
    statements = properties(template, "AccessLogsBucketPolicy")["PolicyDocument"]["Statement"]
    (delivery,) = [s for s in statements if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": template.ref("AWS::AccountId")}}


def test_firehose_logs_its_errors_to_a_retained_log_group_it_may_write():
    template = deployed()
    destination = properties(template, "OrdersDeliveryStream")["ExtendedS3DestinationConfiguration"]
    logging = destination["CloudWatchLoggingOptions"]
    assert logging["Enabled"] is True
    assert logging["LogGroupName"] == template.ref("OrdersDeliveryLogGroup")
    assert logging["LogStreamName"] == template.ref("OrdersDeliveryLogStream")
    assert properties(template, "OrdersDeliveryLogStream")["LogGroupName"] == logging["LogGroupName"]
    statements = properties(template, "OrdersDeliveryStreamRole")["Policies"][0]["PolicyDocument"]["Statement"]
    (put_logs,) = [s for s in statements if s["Sid"] == "LogDeliveryErrors"]
    assert put_logs["Resource"] == template.get_att("OrdersDeliveryLogGroup", "Arn")


def test_each_function_has_its_own_reserved_concurrency_parameter_unset_by_default():
    functions = function_properties(deployed())
    assert all("ReservedConcurrentExecutions" not in function for function in functions.values())
    for function in functions:
        parameter = function.removesuffix("Function") + "ReservedConcurrency"
        assert TEMPLATE["Parameters"][parameter]["Default"] == -1
        reserved = {
            name: declared.get("ReservedConcurrentExecutions")
            for name, declared in function_properties(deployed(**{parameter: "7"})).items()
        }  # fmt: skip
        assert reserved == {name: "7" if name == function else None for name in functions}


def test_streams_are_provisioned_by_default_and_on_demand_on_request():
    for stream in resolved_of_type(deployed(ShardCount="2"), "AWS::Kinesis::Stream").values():
        assert (stream["StreamModeDetails"], stream["ShardCount"]) == ({"StreamMode": "PROVISIONED"}, "2")
    for stream in resolved_of_type(deployed(StreamMode="ON_DEMAND"), "AWS::Kinesis::Stream").values():
        assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and "ShardCount" not in stream


def aggregator_source(template) -> str:
    (event,) = function_properties(template)["AggregatorFunction"]["Events"].values()
    return event["Properties"]["Stream"]


def consumer_grants(template) -> list[dict]:
    statements = properties(template, "AggregatorRole")["Policies"][0]["PolicyDocument"]["Statement"]
    return [s for s in statements if "kinesis:SubscribeToShard" in s["Action"]]


def test_the_aggregator_reads_wildrydes_directly_unless_enhanced_fan_out_is_on():
    shared = deployed()
    assert aggregator_source(shared) == shared.get_att("WildrydesStream", "Arn")
    assert "WildrydesAggregatorConsumer" not in shared.resources and consumer_grants(shared) == []

    enhanced = deployed(AggregatorFanOut="enhanced")
    consumer_arn = enhanced.get_att("WildrydesAggregatorConsumer", "ConsumerARN")
    assert aggregator_source(enhanced) == consumer_arn
    wildrydes = enhanced.get_att("WildrydesStream", "Arn")
    assert properties(enhanced, "WildrydesAggregatorConsumer")["StreamARN"] == wildrydes
    (grant,) = consumer_grants(enhanced)
    assert (sorted(grant["Action"]), grant["Resource"]) == (
        ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"], consumer_arn
    )  # fmt: skip
    (processor_event,) = function_properties(enhanced)["StreamProcessorFunction"]["Events"].values()
    assert processor_event["Properties"]["Stream"] == wildrydes


@pytest.mark.parametrize("parameters", [{}, EVERY_OPTION_ON], ids=["defaults", "every-option-on"])
def test_no_resource_refers_to_one_its_parameters_leave_out(parameters):
    template = deployed(**parameters)
    for logical_id in template.resources:
        properties(template, logical_id)
    function_properties(template)
    assert template.warnings == []  # e.g. "Ref FailedRecordsBucket: its condition is false"
