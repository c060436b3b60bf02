"""template.yaml: the settings the code relies on, security defaults, and SAM's own validate/build."""

import copy
import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from support import REPO_ROOT, RESOURCES, TEMPLATE, declared_mapping, environment

STREAM_PROCESSORS = {"StreamProcessorFunction": "WildrydesStream", "PaymentProcessorFunction": "PaymentsStream"}
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
}  # fmt: skip
SAM = REPO_ROOT / ".venv" / "bin" / "sam"


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


@pytest.mark.parametrize(("function", "stream"), STREAM_PROCESSORS.items())
def test_stream_processor_mapping_has_the_production_settings(function, stream):
    mapping = declared_mapping(function)
    assert mapping["Stream"] == {"Fn::GetAtt": [stream, "Arn"]}
    assert mapping["StartingPosition"] == "LATEST"
    assert mapping["BatchSize"] == 100
    assert mapping["MaximumBatchingWindowInSeconds"] == {"Ref": "BatchingWindowSeconds"}
    assert TEMPLATE["Parameters"]["BatchingWindowSeconds"]["Default"] == 1
    assert mapping["MaximumRetryAttempts"] == 2
    assert mapping["MaximumRecordAgeInSeconds"] == 3600
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ParallelizationFactor"] == {"Ref": "ParallelizationFactor"}
    destination = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {
        "Fn::If": [
            "FailuresToS3",
            {"Fn::GetAtt": ["FailedRecordsBucket", "Arn"]},
            {"Fn::GetAtt": ["FailedRecordsQueue", "Arn"]},
        ]
    }


def test_opt_in_updater_mapping_has_the_production_settings():
    mapping = declared_mapping("OptInUpdaterFunction")
    assert mapping["Stream"] == {"Fn::GetAtt": ["OptInCdcStream", "Arn"]}
    assert mapping["StartingPosition"] == "TRIM_HORIZON"  # DMS's full load comes before the mapping polls
    assert (mapping["BatchSize"], mapping["MaximumRetryAttempts"]) == (100, 5)
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["DestinationConfig"] == declared_mapping("StreamProcessorFunction")["DestinationConfig"]


def test_csv_loader_is_triggered_by_csv_objects_only():
    (event,) = RESOURCES["CsvLoaderFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "S3"
    assert event["Properties"]["Bucket"] == {"Ref": "OrdersSourceBucket"}
    assert event["Properties"]["Events"] == "s3:ObjectCreated:*"
    assert event["Properties"]["Filter"] == {"S3Key": {"Rules": [{"Name": "suffix", "Value": ".csv"}]}}


def test_both_processors_run_the_same_code_with_their_own_table():
    uris = {RESOURCES[f]["Properties"]["CodeUri"] for f in STREAM_PROCESSORS}
    variables = [RESOURCES[f]["Properties"]["Environment"]["Variables"] for f in STREAM_PROCESSORS]
    tables = {json.dumps(v["TABLE_NAME"]) for v in variables}
    assert uris == {"functions/stream_processor"} and len(tables) == 2


def test_read_model_keys():
    def keys(table: str) -> list[tuple[str, str, str]]:
        props = RESOURCES[table]["Properties"]
        types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
        return [(k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in props["KeySchema"]]

    assert keys("UnicornSensorDataTable") == [("Name", "HASH", "S"), ("StatusTime", "RANGE", "S")]
    assert keys("PaymentsTable") == [("paymentId", "HASH", "S")]


def test_functions_use_python_313_on_arm64_with_the_shared_layer():
    function_globals = TEMPLATE["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Layers"] == [{"Ref": "SharedLayer"}]
    assert RESOURCES["SharedLayer"]["Metadata"]["BuildMethod"] == "python3.13"


def test_everything_that_stores_data_is_encrypted():
    for stream in resources_of("AWS::Kinesis::Stream").values():
        assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
    for table in resources_of("AWS::DynamoDB::Table").values():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    for queue in resources_of("AWS::SQS::Queue").values():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props
    for bucket in resources_of("AWS::S3::Bucket").values():
        assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_buckets_are_private_and_tls_only():
    policies = resources_of("AWS::S3::BucketPolicy").values()
    for name, bucket in resources_of("AWS::S3::Bucket").items():
        block = bucket["Properties"]["PublicAccessBlockConfiguration"]
        assert all(block[setting] is True for setting in block), name
        (policy,) = [p for p in policies if p["Properties"]["Bucket"] == {"Ref": name}]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        ), name


class NoManagedPolicies:
    """samtranslator asks for AWS's managed-policy map; a name it then looks up fails the test below."""

    def load(self) -> dict[str, str]:
        return {}


def transformed_template() -> dict[str, Any]:
    """The template as CloudFormation receives it after SAM's transform (offline; code URIs stubbed)."""
    template = copy.deepcopy(TEMPLATE)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/function.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            # The definition itself, as `sam deploy` would upload it: its substitutions are transformed too.
            path = REPO_ROOT / resource["Properties"].pop("DefinitionUri")
            resource["Properties"]["Definition"] = json.loads(path.read_text())
    with environment(AWS_DEFAULT_REGION="us-east-1"):
        return transform(template, {}, NoManagedPolicies())


def policy_statements(node: Any) -> list[dict[str, Any]]:
    """Every IAM statement under `node`, whichever branch of an Fn::If it sits in."""
    if isinstance(node, dict):
        found = [node] if "Effect" in node and "Action" in node else []
        return found + [s for value in node.values() for s in policy_statements(value)]
    if isinstance(node, list):
        return [s for value in node for s in policy_statements(value)]
    return []


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def attached_policies(arns: Any, role: str) -> list[str]:
    """Logical ids of the managed policies a role attaches, in either branch of an Fn::If."""
    if isinstance(arns, list):
        return [policy for arn in arns for policy in attached_policies(arn, role)]
    if isinstance(arns, dict) and "Fn::If" in arns:
        return attached_policies(arns["Fn::If"][1:], role)
    assert isinstance(arns, dict) and "Ref" in arns, f"{role} attaches a policy defined outside the template"
    return [] if arns["Ref"] == "AWS::NoValue" else [arns["Ref"]]


def test_every_role_names_its_resources():
    resources = transformed_template()["Resources"]
    roles = {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    functions = {name: r for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    assert all("Fn::GetAtt" in f["Properties"]["Role"] for f in functions.values()), "every function has its own role"
    for name, role in roles.items():
        documents = [role["Properties"].get("Policies", []), role["Properties"].get("AssumeRolePolicyDocument")]
        for policy in attached_policies(role["Properties"].get("ManagedPolicyArns", []), name):
            documents.append(resources[policy]["Properties"]["PolicyDocument"])
        for statement in policy_statements(documents):
            if "Principal" in statement:
                continue
            if "*" in as_list(statement["Resource"]):
                actions = as_list(statement["Action"])
                # X-Ray takes no resource ARNs; neither does a Glue schema lookup by version UUID (the
                # Glue developer guide's deserializer policy grants glue:GetSchemaVersion on "*"), nor
                # CloudWatch Logs' vended log delivery a state machine's logging needs (Step Functions
                # developer guide, "IAM policies for logging to CloudWatch Logs").
                allowed = [a for a in actions
                           if a.startswith("xray:") or a in {"glue:GetSchemaVersion", *LOG_DELIVERY_ACTIONS}]
                assert allowed == actions, f"{name} grants {actions} on every resource"


@pytest.mark.parametrize("function", STREAM_PROCESSORS)
def test_key_attributes_match_the_table_key_schema(function):
    variables = RESOURCES[function]["Properties"]["Environment"]["Variables"]
    table = variables["TABLE_NAME"]["Ref"]
    key_schema = RESOURCES[table]["Properties"]["KeySchema"]
    assert variables["KEY_ATTRIBUTES"].split(",") == [key["AttributeName"] for key in key_schema]


def test_s3_failure_destination_gets_put_object_and_list_bucket():
    statements = policy_statements(RESOURCES["DiscardedBatchDeliveryPolicy"]["Properties"]["PolicyDocument"])
    actions = {action for statement in statements for action in as_list(statement["Action"])}
    assert {"s3:PutObject", "s3:ListBucket", "sqs:SendMessage"} <= actions


def sam(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{SAM.parent}:{os.environ['PATH']}"}
    return subprocess.run([str(SAM), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_sam_validate_with_lint():
    result = sam("validate", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.mark.slow
def test_sam_build_produces_every_function_and_the_layer(tmp_path):
    result = sam("build", "--build-dir", str(tmp_path / "build"), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = tmp_path / "build"
    layer = built / "SharedLayer" / "python"
    assert (layer / "tributary_shared" / "stream_processor" / "processor.py").is_file()
    assert list((layer / "fastavro").glob("*aarch64*.so")), "layer dependencies must be built for arm64"
    for name in resources_of("AWS::Serverless::Function"):
        assert (built / name / "app.py").is_file(), name


def test_samconfig_environments_override_only_declared_parameters():
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    for stage in ("dev", "prod"):
        overrides = config[stage]["deploy"]["parameters"]["parameter_overrides"].split()
        pairs = dict(override.split("=", 1) for override in overrides)
        assert pairs["Stage"] == stage
        assert set(pairs) <= set(TEMPLATE["Parameters"]), f"{stage} overrides an undeclared parameter"
        allowed = TEMPLATE["Parameters"]["Stage"]["AllowedValues"]
        assert pairs["Stage"] in allowed


@pytest.mark.parametrize("role", ["StreamProcessorRole", "PaymentProcessorRole", "AggregatorRole"])
def test_functions_reading_avro_get_both_registries(role):
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["CONFLUENT_REGISTRY_URL"] == {"Ref": "ConfluentRegistryUrl"}
    assert variables["CONFLUENT_REGISTRY_AUTH_SECRET"] == {"Ref": "ConfluentRegistryAuthSecret"}
    assert TEMPLATE["Parameters"]["ConfluentRegistryUrl"]["Default"] == ""
    assert {"Ref": "SchemaRegistryReadPolicy"} in RESOURCES[role]["Properties"]["ManagedPolicyArns"]
    policy = RESOURCES["SchemaRegistryReadPolicy"]["Properties"]["PolicyDocument"]
    secrets = [s for s in policy_statements(policy) if s["Action"] == "secretsmanager:GetSecretValue"]
    assert [s["Resource"]["Fn::Sub"] for s in secrets] == [
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${ConfluentRegistryAuthSecret}-??????"
    ]
